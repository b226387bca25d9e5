package api

// Network types.
const (
	NetworkSuper         = "super"
	NetworkUnderlay      = "underlay"
	NetworkExternal      = "external"
	NetworkPrivate       = "private"
	NetworkPrivateShared = "private-shared"
)

// Network is an IP network. Super networks are the partition's pool for private tenant networks.
type Network struct {
	Meta
	Type                string   `json:"type"`
	Prefixes            []string `json:"prefixes"`
	DestinationPrefixes []string `json:"destinationPrefixes,omitempty"`
	PartitionID         string   `json:"partitionID,omitempty"`
	ProjectID           string   `json:"projectID,omitempty"`
	ParentNetworkID     string   `json:"parentNetworkID,omitempty"`
	VRF                 uint32   `json:"vrf,omitempty"`
	NAT                 bool     `json:"nat"`
	// ChildPrefixLength is the default prefix length of private networks allocated from a super network.
	ChildPrefixLength int               `json:"childPrefixLength,omitempty"`
	Labels            map[string]string `json:"labels,omitempty"`
}

// NetworkAllocateRequest allocates a private network for a project from the partition's super network.
type NetworkAllocateRequest struct {
	Name         string            `json:"name,omitempty"`
	Description  string            `json:"description,omitempty"`
	ProjectID    string            `json:"projectID"`
	PartitionID  string            `json:"partitionID"`
	Shared       bool              `json:"shared,omitempty"`
	PrefixLength int               `json:"prefixLength,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
}

// NetworkUsage counts the addresses of a network.
type NetworkUsage struct {
	NetworkID string `json:"networkID"`
	// Available is the number of usable addresses (saturated at 2^63-1 for IPv6).
	Available uint64 `json:"available"`
	Used      uint64 `json:"used"`
	// AvailablePrefixes and UsedPrefixes count child prefixes of a super network.
	UsedPrefixes uint64 `json:"usedPrefixes"`
}

// IP types.
const (
	IPEphemeral = "ephemeral"
	IPStatic    = "static"
)

// IP is an address allocated in a network. Its ID is the address.
type IP struct {
	Meta
	Address   string   `json:"address"`
	NetworkID string   `json:"networkID"`
	ProjectID string   `json:"projectID"`
	Type      string   `json:"type"`
	Tags      []string `json:"tags,omitempty"`
	// MachineID is set for addresses that belong to a machine allocation.
	MachineID string `json:"machineID,omitempty"`
}

// IPAllocateRequest allocates an address: Address names a specific one, empty takes the next free one.
type IPAllocateRequest struct {
	Name        string   `json:"name,omitempty"`
	Description string   `json:"description,omitempty"`
	NetworkID   string   `json:"networkID"`
	ProjectID   string   `json:"projectID"`
	Type        string   `json:"type,omitempty"`
	Address     string   `json:"address,omitempty"`
	Tags        []string `json:"tags,omitempty"`
}
