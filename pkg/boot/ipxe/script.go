// Package ipxe renders the iPXE scripts of the boot service and serves them over HTTP: the chain
// script every iPXE client gets from DHCP, the per-host script built from metal-api's boot decision
// (boot the hammer, or the installed disk), and scripts that wait and retry when metal-api cannot
// answer.
package ipxe

import (
	"fmt"
	"strings"
	"time"

	"github.com/metalforge/metalforge/pkg/api"
)

// Hammer is what the hammer's kernel command line carries besides the partition's cmdline.
type Hammer struct {
	// API is metal-api's gRPC address as the hammer reaches it (mf.api).
	API string
	// PartitionID is the partition (mf.partition).
	PartitionID string
	// Token is the partition boot secret (mf.token); omitted when empty.
	Token string
}

// initrdName is the name the initrd gets in iPXE and on the kernel command line. UEFI kernels
// (the EFI stub) find their initrd by the initrd= argument; BIOS kernels ignore it.
const initrdName = "initrd.magic"

// Chain is the script of /boot.ipxe: fetch the per-host script for the booting NIC's MAC, or the
// default one when that fails.
func Chain(base string) string {
	return fmt.Sprintf("#!ipxe\nchain %s/host/${mac:hexhyp}.ipxe || chain %s/default.ipxe\n", base, base)
}

// Retry is a script that says why, waits delay, and chains target again. --replace keeps
// endless retries from piling up images in iPXE's memory.
func Retry(reason, target string, delay time.Duration) string {
	secs := seconds(delay)
	return fmt.Sprintf("#!ipxe\necho metalforge: %s, retrying in %d seconds\nsleep %d\nchain --replace --autofree %s\n",
		clean(reason), secs, secs, target)
}

func seconds(d time.Duration) int {
	return max(1, int(d.Round(time.Second)/time.Second))
}

// HammerScript renders the script that boots the hammer of a boot decision. Kernel and initrd URLs
// without a scheme are resolved against base (see Resolve). A failing step falls through to a
// retry of the whole chain.
func HammerScript(d api.BootDecision, base string, h Hammer, delay time.Duration) string {
	var b strings.Builder
	b.WriteString("#!ipxe\n")
	id := d.MachineID
	if id == "" {
		id = "unknown"
	}
	fmt.Fprintf(&b, "echo metalforge: machine %s boots the hammer\n", clean(id))
	args := []string{Resolve(base, d.Kernel), "initrd=" + initrdName}
	if c := clean(d.Cmdline); c != "" {
		args = append(args, c)
	}
	args = append(args, "mf.api="+word(h.API), "mf.partition="+word(h.PartitionID))
	if h.Token != "" {
		args = append(args, "mf.token="+word(h.Token))
	}
	fmt.Fprintf(&b, "kernel %s || goto retry\n", strings.Join(args, " "))
	fmt.Fprintf(&b, "initrd --name %s %s || goto retry\n", initrdName, Resolve(base, d.Initrd))
	b.WriteString("boot || goto retry\n")
	secs := seconds(delay)
	fmt.Fprintf(&b, ":retry\necho metalforge: hammer boot failed, retrying in %d seconds\nsleep %d\nchain --replace --autofree %s/boot.ipxe\n",
		secs, secs, base)
	return b.String()
}

// DiskScript boots the installed OS of machineID from the local disk.
//
// On BIOS, `sanboot --no-describe --drive 0x80` boots the first hard disk through INT 13h at
// once, without describing a SAN disk to the OS (no iBFT). Measured in QEMU (SeaBIOS, the iPXE
// ROM of Debian's ipxe-qemu, TCG; see TestQEMUBoot): the boot sector runs 2.4 s after power-on,
// against 4.4 s with `exit`, where iPXE first tries every other network device and waits for
// Ctrl-B before SeaBIOS boots its next entry; on machines with several NICs, that next entry may
// well be another PXE ROM. When sanboot fails (the firmware mapped no drive 0x80), and always on
// UEFI, where drive numbers do not exist, `exit` hands the machine back to the firmware's boot
// order.
func DiskScript(machineID string) string {
	return fmt.Sprintf("#!ipxe\necho metalforge: machine %s boots its disk\n"+
		"iseq ${platform} pcbios && sanboot --no-describe --drive 0x80 || exit\n", clean(machineID))
}

// Resolve makes a kernel or initrd location of the partition's boot config absolute: a URL with
// a scheme stays as is, an absolute path is a path on this server, and anything else names a
// file in the assets directory (served under /assets/).
func Resolve(base, loc string) string {
	loc = word(loc)
	switch {
	case strings.Contains(loc, "://"):
		return loc
	case strings.HasPrefix(loc, "/"):
		return base + loc
	default:
		return base + "/assets/" + loc
	}
}

// clean makes s safe for one line of a script: control characters become spaces.
func clean(s string) string {
	return strings.TrimSpace(strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s))
}

// word makes s one word of a script line.
func word(s string) string {
	return strings.Join(strings.Fields(clean(s)), "")
}
