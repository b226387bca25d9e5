package bmc

import (
	"time"

	"github.com/metalforge/metalforge/pkg/bmc/vendor"
)

// Quirks are the vendor differences the BMC implementations honour. The zero value plus
// CipherSuite 3 is plain IPMI 2.0 / Redfish behaviour.
type Quirks struct {
	// CipherSuite is the RMCP+ cipher suite for IPMI over LAN. 3 (RAKP-HMAC-SHA1, HMAC-SHA1-96,
	// AES-CBC-128) is what every IPMI 2.0 BMC we know accepts; ipmi_sim needs it.
	CipherSuite int
	// EFIBoot sets the "EFI boot" bit in the IPMI boot flags and BootSourceOverrideMode=UEFI in
	// Redfish: machines of these vendors ship in UEFI mode and ignore a legacy-BIOS PXE override.
	EFIBoot bool
	// NoBootOverride: the BMC rejects Set System Boot Options. BootOnce then succeeds without
	// doing anything, which is only right because such machines boot from the network first
	// (the boot server decides between the hammer and the local disk).
	NoBootOverride bool
	// NoIdentify: the BMC has no identify LED; LED returns ErrUnsupported.
	NoIdentify bool
	// OffTimeout bounds how long a power off may take to show in the power state, where a power
	// cycle has to be done as off, wait, on (Redfish services without ResetType PowerCycle).
	OffTimeout time.Duration
	// Note says where the entry comes from.
	Note string
}

// QuirksFor returns the quirks of a vendor (any spelling package vendor normalizes); unknown
// vendors get the defaults.
func QuirksFor(v string) Quirks {
	q := Quirks{CipherSuite: 3, OffTimeout: 30 * time.Second}
	switch vendor.Normalize(v) {
	case vendor.OpenIPMI:
		// Measured against Debian 12's ipmi_sim with QEMU connected over the VM serial protocol:
		// on, off, cycle, reset and status work; boot options and chassis identify answer
		// "invalid data field" unless a chassis_control program is configured, which would take
		// power control away from startcmd. The lab's machines boot from the network first.
		q.NoBootOverride, q.NoIdentify = true, true
		q.Note = "OpenIPMI ipmi_sim (lab): measured"
	case vendor.Supermicro:
		q.EFIBoot = true
		q.Note = "X11 and later boards boot UEFI; a legacy PXE override is ignored"
	case vendor.Dell:
		q.EFIBoot = true
		q.Note = "iDRAC 9: UEFI boot mode by default; IPMI over LAN must be enabled in the iDRAC"
	case vendor.HPE:
		q.EFIBoot = true
		q.Note = "iLO 5: Gen10 Plus and later boot UEFI only; IPMI/DCMI over LAN is disabled by default, prefer Redfish"
	case vendor.Lenovo:
		q.EFIBoot = true
		q.Note = "XClarity Controller: UEFI boot mode"
	}
	return q
}
