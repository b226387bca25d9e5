package api

import "time"

// Image features and classifications.
const (
	FeatureMachine  = "machine"
	FeatureFirewall = "firewall"

	ClassificationPreview    = "preview"
	ClassificationSupported  = "supported"
	ClassificationDeprecated = "deprecated"
)

// Image is an operating system image the hammer streams to disk.
type Image struct {
	Meta
	URL            string     `json:"url"`
	SHA256         string     `json:"sha256"`
	OS             string     `json:"os"`
	OSVersion      string     `json:"osVersion"`
	Features       []string   `json:"features"`
	Classification string     `json:"classification,omitempty"`
	ExpirationDate *time.Time `json:"expirationDate,omitempty"`
}

// FilesystemLayout describes how the hammer prepares the disks of a machine.
type FilesystemLayout struct {
	Meta
	Constraints    LayoutConstraints `json:"constraints"`
	Disks          []Disk            `json:"disks,omitempty"`
	Raid           []Raid            `json:"raid,omitempty"`
	VolumeGroups   []VolumeGroup     `json:"volumeGroups,omitempty"`
	LogicalVolumes []LogicalVolume   `json:"logicalVolumes,omitempty"`
	Filesystems    []Filesystem      `json:"filesystems"`
}

// LayoutConstraints say which sizes and images a layout is for. Images maps an OS name to a
// version glob ("*" for any version).
type LayoutConstraints struct {
	Sizes  []string          `json:"sizes"`
	Images map[string]string `json:"images"`
}

// Disk is one block device to partition.
type Disk struct {
	Device          string          `json:"device"`
	Partitions      []DiskPartition `json:"partitions,omitempty"`
	WipeOnReinstall bool            `json:"wipeOnReinstall,omitempty"`
}

// DiskPartition is one GPT partition. Size is MiB; 0 takes the rest of the disk (last partition only).
type DiskPartition struct {
	Number  int    `json:"number"`
	Label   string `json:"label,omitempty"`
	Size    uint64 `json:"size"`
	GPTType string `json:"gptType,omitempty"`
}

// Raid is a software RAID array.
type Raid struct {
	ArrayName string   `json:"arrayName"`
	Devices   []string `json:"devices"`
	Level     string   `json:"level"`
}

// VolumeGroup is an LVM volume group.
type VolumeGroup struct {
	Name    string   `json:"name"`
	Devices []string `json:"devices"`
}

// LogicalVolume is an LVM logical volume. Size is MiB; 0 takes the rest.
type LogicalVolume struct {
	Name        string `json:"name"`
	VolumeGroup string `json:"volumeGroup"`
	Size        uint64 `json:"size"`
}

// Filesystem formats a device and mounts it.
type Filesystem struct {
	Device        string   `json:"device"`
	Format        string   `json:"format"`
	Label         string   `json:"label,omitempty"`
	Path          string   `json:"path,omitempty"`
	MountOptions  []string `json:"mountOptions,omitempty"`
	CreateOptions []string `json:"createOptions,omitempty"`
}
