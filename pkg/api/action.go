package api

import "time"

// MachineAllocateRequest allocates a machine, either the one named by MachineID or any waiting machine
// of the size in the partition.
type MachineAllocateRequest struct {
	MachineID          string `json:"machineID,omitempty"`
	Name               string `json:"name,omitempty"`
	Hostname           string `json:"hostname,omitempty"`
	Description        string `json:"description,omitempty"`
	ProjectID          string `json:"projectID"`
	PartitionID        string `json:"partitionID,omitempty"`
	SizeID             string `json:"sizeID,omitempty"`
	ImageID            string `json:"imageID"`
	FilesystemLayoutID string `json:"filesystemLayoutID,omitempty"`
	Role               string `json:"role,omitempty"`
	// Networks are the networks to attach; a machine needs exactly one private network of its project
	// (allocated on the fly when none is named and AutoNetwork is set). A firewall takes its project's
	// private network in the partition when none is named, always gets the partition's underlay
	// network and needs at least one external network: it gets one address in each (or the named
	// ones), its egress (SNAT) addresses.
	Networks    []AllocationNetwork `json:"networks,omitempty"`
	AutoNetwork bool                `json:"autoNetwork,omitempty"`
	SSHPubKeys  []string            `json:"sshPubKeys,omitempty"`
	UserData    string              `json:"userData,omitempty"`
	Tags        []string            `json:"tags,omitempty"`
	// SpreadTag, when set, spreads over racks only the project's machines that carry this tag (e.g.
	// a cluster's tag, so each cluster is spread on its own); by default all of the project's
	// machines in the partition count.
	SpreadTag string `json:"spreadTag,omitempty"`
}

// AllocationNetwork names a network, optionally with specific addresses the project already owns.
type AllocationNetwork struct {
	NetworkID string   `json:"networkID"`
	IPs       []string `json:"ips,omitempty"`
}

// MachineFindRequest filters machines; every set field must match.
type MachineFindRequest struct {
	ID          string   `json:"id,omitempty"`
	Name        string   `json:"name,omitempty"`
	PartitionID string   `json:"partitionID,omitempty"`
	SizeID      string   `json:"sizeID,omitempty"`
	RackID      string   `json:"rackID,omitempty"`
	ProjectID   string   `json:"projectID,omitempty"`
	Hostname    string   `json:"hostname,omitempty"`
	ImageID     string   `json:"imageID,omitempty"`
	NetworkID   string   `json:"networkID,omitempty"`
	IP          string   `json:"ip,omitempty"`
	MAC         string   `json:"mac,omitempty"`
	Role        string   `json:"role,omitempty"`
	State       *string  `json:"state,omitempty"`
	Allocated   *bool    `json:"allocated,omitempty"`
	Waiting     *bool    `json:"waiting,omitempty"`
	Liveliness  string   `json:"liveliness,omitempty"`
	Tags        []string `json:"tags,omitempty"`
	Limit       int      `json:"limit,omitempty"`
	Cursor      string   `json:"cursor,omitempty"`
}

// MachineTagsRequest replaces the tags of a machine (e.g. the cluster a node belongs to).
type MachineTagsRequest struct {
	Tags []string `json:"tags"`
}

// MachineStateRequest sets the operator state (lock/taint/clear).
type MachineStateRequest struct {
	Value       string `json:"value"`
	Description string `json:"description"`
}

// MachineReinstallRequest installs another image, keeping data disks.
type MachineReinstallRequest struct {
	ImageID string `json:"imageID"`
}

// BMC commands queued for the partition's BMC agent.
const (
	PowerOn    = "on"
	PowerOff   = "off"
	PowerCycle = "cycle"
	PowerReset = "reset"
	BootPXE    = "pxe"
	BootDisk   = "disk"
	LEDOn      = "led-on"
	LEDOff     = "led-off"
)

// BMCCommand is a queued BMC action for a machine.
type BMCCommand struct {
	Meta
	MachineID   string `json:"machineID"`
	PartitionID string `json:"partitionID"`
	Command     string `json:"command"`
	// BMC is how to reach the machine's BMC; filled in for the BMC agent, never stored.
	BMC   *MachineBMC `json:"bmc,omitempty"`
	Done  *time.Time  `json:"done,omitempty"`
	Error string      `json:"error,omitempty"`
}

// BMCCommandDone acknowledges a BMC command.
type BMCCommandDone struct {
	Error string `json:"error,omitempty"`
}

// BMCReport is the power state the BMC agent saw.
type BMCReport struct {
	PowerState string `json:"powerState"`
	LED        string `json:"led,omitempty"`
}

// Token roles.
const (
	RoleAdmin   = "admin"
	RoleOwner   = "owner"
	RoleEditor  = "editor"
	RoleViewer  = "viewer"
	RoleService = "service"
)

// Token is an API credential. The secret is only returned once, on creation; the store keeps a hash.
type Token struct {
	Meta
	Role        string `json:"role"`
	ProjectID   string `json:"projectID,omitempty"`
	PartitionID string `json:"partitionID,omitempty"`
	// MachineID scopes a machine token (issued by metal-api for an installed OS to phone home).
	MachineID string     `json:"machineID,omitempty"`
	Expires   *time.Time `json:"expires,omitempty"`
	Secret    string     `json:"secret,omitempty"`
}
