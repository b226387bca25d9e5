package api

import "time"

// Provisioning events, as the hammer, the boot service and the installed OS send them.
const (
	EventPXEBooting       = "PXE Booting"
	EventPreparing        = "Preparing"
	EventRegistering      = "Registering"
	EventWaiting          = "Waiting"
	EventInstalling       = "Installing"
	EventBootingNewKernel = "Booting New Kernel"
	EventPhonedHome       = "Phoned Home"
	EventPlannedReboot    = "Planned Reboot"
	EventMachineReclaim   = "Machine Reclaim"
	EventAlive            = "Alive"
	EventCrashed          = "Crashed"
)

// ProvisioningEvent is one entry of a machine's event log.
type ProvisioningEvent struct {
	Time    time.Time `json:"time"`
	Event   string    `json:"event"`
	Message string    `json:"message,omitempty"`
	// Unexpected is set when the event does not follow from the previous one in the lifecycle table.
	Unexpected bool `json:"unexpected,omitempty"`
}

// MachineEventLog is the provisioning history of a machine, newest last.
// Its ID is the machine's.
type MachineEventLog struct {
	Meta
	Events                       []ProvisioningEvent `json:"events"`
	IncompleteProvisioningCycles int                 `json:"incompleteProvisioningCycles"`
	CrashLoop                    bool                `json:"crashLoop"`
	FailedMachineReclaim         bool                `json:"failedMachineReclaim"`
	Liveliness                   string              `json:"liveliness"`
}

// EventRequest adds a provisioning event.
type EventRequest struct {
	Event   string `json:"event"`
	Message string `json:"message,omitempty"`
}
