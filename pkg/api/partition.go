package api

// Partition is a failure domain: one CLOS fabric with its own boot and management services.
type Partition struct {
	Meta
	Boot BootConfig `json:"boot"`
	// MgmtServiceAddress is where partition components reach metal-api's gRPC service.
	MgmtServiceAddress string            `json:"mgmtServiceAddress,omitempty"`
	DNSServers         []string          `json:"dnsServers,omitempty"`
	NTPServers         []string          `json:"ntpServers,omitempty"`
	Labels             map[string]string `json:"labels,omitempty"`
}

// BootConfig tells the boot service what a machine of the partition boots into before it is installed.
type BootConfig struct {
	KernelURL string `json:"kernelURL,omitempty"`
	InitrdURL string `json:"initrdURL,omitempty"`
	Cmdline   string `json:"cmdline,omitempty"`
}

// Project owns every non-admin object. Quotas nil means unlimited.
type Project struct {
	Meta
	Tenant string            `json:"tenant,omitempty"`
	Quotas Quotas            `json:"quotas"`
	Labels map[string]string `json:"labels,omitempty"`
}

// Quotas limit what a project may hold; nil is unlimited.
type Quotas struct {
	Machines *int `json:"machines,omitempty"`
	IPs      *int `json:"ips,omitempty"`
	Networks *int `json:"networks,omitempty"`
}
