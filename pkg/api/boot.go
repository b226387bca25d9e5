package api

// Boot actions of a BootDecision.
const (
	BootActionHammer = "hammer"
	BootActionDisk   = "disk"
)

// BootDecision tells the boot service what the machine owning a MAC should boot.
type BootDecision struct {
	// MachineID is empty for a MAC metal-api does not know yet (it boots the hammer).
	MachineID string `json:"machineID,omitempty"`
	Action    string `json:"action"`
	Kernel    string `json:"kernel,omitempty"`
	Initrd    string `json:"initrd,omitempty"`
	Cmdline   string `json:"cmdline,omitempty"`
}

// InstallSpec is everything the hammer needs to install an allocated machine.
type InstallSpec struct {
	Machine    Machine           `json:"machine"`
	Image      Image             `json:"image"`
	Layout     *FilesystemLayout `json:"layout,omitempty"`
	DNSServers []string          `json:"dnsServers,omitempty"`
	NTPServers []string          `json:"ntpServers,omitempty"`
	// PhoneHomeToken lets the installed OS report "Phoned Home" for this machine and nothing else.
	PhoneHomeToken string `json:"phoneHomeToken,omitempty"`
}

// InstallReport is the hammer's result of an install.
type InstallReport struct {
	Success  bool      `json:"success"`
	Message  string    `json:"message,omitempty"`
	BootInfo *BootInfo `json:"bootInfo,omitempty"`
}
