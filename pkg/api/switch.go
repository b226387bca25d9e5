package api

import "time"

// Switch is a leaf switch of a partition.
type Switch struct {
	Meta
	PartitionID  string             `json:"partitionID"`
	RackID       string             `json:"rackID"`
	OS           SwitchOS           `json:"os"`
	ManagementIP string             `json:"managementIP,omitempty"`
	Ports        []SwitchPort       `json:"ports"`
	Connections  []SwitchConnection `json:"connections,omitempty"`
	LastSync     *SwitchSync        `json:"lastSync,omitempty"`
}

// SwitchOS names the network operating system.
type SwitchOS struct {
	Vendor  string `json:"vendor"`
	Version string `json:"version,omitempty"`
}

// SwitchPort is one front port.
type SwitchPort struct {
	Name         string `json:"name"`
	MAC          string `json:"mac"`
	VRF          string `json:"vrf,omitempty"`
	DesiredState string `json:"desiredState,omitempty"`
	ActualState  string `json:"actualState,omitempty"`
	BGPState     string `json:"bgpState,omitempty"`
}

// SwitchConnection links a switch port to a machine NIC, learnt from LLDP.
type SwitchConnection struct {
	Port      string `json:"port"`
	MachineID string `json:"machineID"`
	NICMAC    string `json:"nicMAC"`
}

// SwitchSync is the result of the switch agent's last apply.
type SwitchSync struct {
	Time     time.Time     `json:"time"`
	Duration time.Duration `json:"duration"`
	Error    string        `json:"error,omitempty"`
}
