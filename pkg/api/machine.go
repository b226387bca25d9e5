package api

import "time"

// Machine states set by an operator.
const (
	StateAvailable = ""
	StateTainted   = "TAINTED"
	StateLocked    = "LOCKED"
)

// Machine roles of an allocation.
const (
	RoleMachine  = "machine"
	RoleFirewall = "firewall"
)

// Liveliness of a machine, derived from its event log.
const (
	LivelinessAlive   = "Alive"
	LivelinessDead    = "Dead"
	LivelinessUnknown = "Unknown"
)

// Machine is one server.
type Machine struct {
	Meta
	PartitionID string             `json:"partitionID"`
	RackID      string             `json:"rackID,omitempty"`
	SizeID      string             `json:"sizeID"`
	Hardware    MachineHardware    `json:"hardware"`
	BIOS        MachineBIOS        `json:"bios"`
	BMC         MachineBMC         `json:"bmc"`
	State       MachineState       `json:"state"`
	LED         MachineLED         `json:"led"`
	Tags        []string           `json:"tags,omitempty"`
	Allocation  *MachineAllocation `json:"allocation,omitempty"`
	// Waiting is true while the hammer of an unallocated machine waits for an allocation.
	Waiting bool `json:"waiting"`
	// PreAllocated is true between allocation and the hammer picking the allocation up.
	PreAllocated bool `json:"preAllocated"`
	// Liveliness is Alive, Dead (unallocated, silent for 5 min) or Unknown (allocated, silent).
	Liveliness string `json:"liveliness"`
	// LastEvent is the newest provisioning event, with the crash-loop and failed-reclaim flags.
	LastEvent            *ProvisioningEvent `json:"lastEvent,omitempty"`
	CrashLoop            bool               `json:"crashLoop"`
	FailedMachineReclaim bool               `json:"failedMachineReclaim"`
	// LastWipe is the wipe record the hammer reported when the machine was last freed.
	LastWipe *WipeRecord `json:"lastWipe,omitempty"`
}

// MachineHardware is what the hammer found.
type MachineHardware struct {
	CPUs   []MachineCPU         `json:"cpus,omitempty"`
	Memory uint64               `json:"memory"`
	Disks  []MachineBlockDevice `json:"disks,omitempty"`
	NICs   []MachineNIC         `json:"nics,omitempty"`
	GPUs   []MachineGPU         `json:"gpus,omitempty"`
}

// Cores sums the cores of all CPUs.
func (h MachineHardware) Cores() uint64 {
	var n uint64
	for _, c := range h.CPUs {
		n += uint64(c.Cores)
	}
	return n
}

// MachineCPU is one CPU socket.
type MachineCPU struct {
	Vendor  string `json:"vendor,omitempty"`
	Model   string `json:"model,omitempty"`
	Cores   int    `json:"cores"`
	Threads int    `json:"threads"`
}

// MachineBlockDevice is one disk. Size is bytes.
type MachineBlockDevice struct {
	Name       string `json:"name"`
	Size       uint64 `json:"size"`
	Model      string `json:"model,omitempty"`
	Serial     string `json:"serial,omitempty"`
	Rotational bool   `json:"rotational"`
}

// MachineNIC is one network interface with the LLDP neighbours seen on it.
type MachineNIC struct {
	Name      string         `json:"name"`
	MAC       string         `json:"mac"`
	Neighbors []LLDPNeighbor `json:"neighbors,omitempty"`
}

// LLDPNeighbor is a switch port seen by LLDP.
type LLDPNeighbor struct {
	ChassisID  string `json:"chassisID"`
	SystemName string `json:"systemName,omitempty"`
	PortID     string `json:"portID"`
}

// MachineGPU is one GPU.
type MachineGPU struct {
	Vendor string `json:"vendor,omitempty"`
	Model  string `json:"model"`
}

// MachineBIOS is the DMI firmware information.
type MachineBIOS struct {
	Vendor  string `json:"vendor,omitempty"`
	Version string `json:"version,omitempty"`
	Date    string `json:"date,omitempty"`
}

// MachineBMC is the baseboard management controller. The password is never returned by the API.
type MachineBMC struct {
	Address    string `json:"address,omitempty"`
	MAC        string `json:"mac,omitempty"`
	User       string `json:"user,omitempty"`
	Password   string `json:"password,omitempty"`
	Vendor     string `json:"vendor,omitempty"`
	PowerState string `json:"powerState,omitempty"`
	// PowerReported is when the BMC agent last reported the power state.
	PowerReported *time.Time `json:"powerReported,omitempty"`
}

// MachineState is set by an operator: TAINTED machines are not allocated, LOCKED ones can't be freed.
type MachineState struct {
	Value       string `json:"value"`
	Description string `json:"description,omitempty"`
}

// MachineLED is the identify LED.
type MachineLED struct {
	Value       string `json:"value"`
	Description string `json:"description,omitempty"`
}

// MachineAllocation is what a tenant gets.
type MachineAllocation struct {
	Created            time.Time        `json:"created"`
	Creator            string           `json:"creator,omitempty"`
	ProjectID          string           `json:"projectID"`
	Name               string           `json:"name"`
	Hostname           string           `json:"hostname"`
	Description        string           `json:"description,omitempty"`
	ImageID            string           `json:"imageID"`
	FilesystemLayoutID string           `json:"filesystemLayoutID,omitempty"`
	Networks           []MachineNetwork `json:"networks"`
	SSHPubKeys         []string         `json:"sshPubKeys,omitempty"`
	UserData           string           `json:"userData,omitempty"`
	Role               string           `json:"role"`
	Reinstall          bool             `json:"reinstall"`
	BootInfo           *BootInfo        `json:"bootInfo,omitempty"`
	// Succeeded is set when the installed OS phoned home.
	Succeeded bool `json:"succeeded"`
}

// MachineNetwork is one network of an allocation with the addresses the machine got in it.
type MachineNetwork struct {
	NetworkID           string   `json:"networkID"`
	NetworkType         string   `json:"networkType"`
	Prefixes            []string `json:"prefixes"`
	IPs                 []string `json:"ips"`
	DestinationPrefixes []string `json:"destinationPrefixes,omitempty"`
	VRF                 uint32   `json:"vrf"`
	ASN                 uint32   `json:"asn"`
	Private             bool     `json:"private"`
	Underlay            bool     `json:"underlay"`
	NAT                 bool     `json:"nat"`
}

// BootInfo is what the hammer reports after install so the machine can boot (or kexec) the new OS.
type BootInfo struct {
	ImageID      string `json:"imageID"`
	PrimaryDisk  string `json:"primaryDisk"`
	OSPartition  string `json:"osPartition"`
	Kernel       string `json:"kernel"`
	Initrd       string `json:"initrd"`
	Cmdline      string `json:"cmdline"`
	BootloaderID string `json:"bootloaderID,omitempty"`
}

// WipeRecord proves that the disks of a freed machine were scrubbed.
type WipeRecord struct {
	Time  time.Time  `json:"time"`
	Disks []DiskWipe `json:"disks"`
}

// DiskWipe is the wipe of one device.
type DiskWipe struct {
	Device string `json:"device"`
	Method string `json:"method"`
	Bytes  uint64 `json:"bytes"`
	// Verified is true when the sampled blocks read back as zero.
	Verified bool `json:"verified"`
	Samples  int  `json:"samples"`
}
