// Package osinit is PID 1 of the initrd of metalforge's small machine image: it mounts the kernel
// file systems, loads the few modules the root device needs from its own copy (modules.dep order),
// finds root=UUID=... by reading ext4 superblocks itself (no udev, no blkid), mounts it and
// switches root into the image's /sbin/init (MS_MOVE + chroot + exec).
//
// cmd/metal-osinit is the binary; hack/images/build.sh puts it into /boot/initrd.img-<version>.
//
// The same binary does the first-boot configuration of a firewall image (`metal-osinit firewall`,
// SetupFirewall): from the allocation the hammer wrote (/etc/metalforge/install.json) it derives
// the firewall-controller's api.FirewallConfig, FRR's configuration (pkg/frr's firewall variant)
// and the systemd-networkd files of the firewall's VRF devices. The interface naming convention
// is documented at VRFPrefix, the kubeconfig convention at KubeconfigPath.
package osinit

import (
	"fmt"
	"strings"
)

// Cmdline is what osinit reads from the kernel command line.
type Cmdline struct {
	// Root is the root= value: UUID=<uuid> or a /dev path.
	Root string
	// RootFSType is rootfstype= (default ext4), RootFlags rootflags= (extra mount data).
	RootFSType string
	RootFlags  string
	// ReadOnly is true for "ro" (the last of ro/rw wins; the default is rw).
	ReadOnly bool
	// Init is the program to exec in the new root (init=, default /sbin/init).
	Init string
}

// ParseCmdline parses a kernel command line. Values may be double-quoted.
func ParseCmdline(s string) (Cmdline, error) {
	c := Cmdline{RootFSType: "ext4", Init: "/sbin/init"}
	for _, f := range fields(s) {
		k, v, hasValue := strings.Cut(f, "=")
		switch {
		case k == "ro" && !hasValue:
			c.ReadOnly = true
		case k == "rw" && !hasValue:
			c.ReadOnly = false
		case k == "root":
			c.Root = v
		case k == "rootfstype":
			c.RootFSType = v
		case k == "rootflags":
			c.RootFlags = v
		case k == "init" && v != "":
			c.Init = v
		}
	}
	if c.Root == "" {
		return c, fmt.Errorf("kernel command line has no root=")
	}
	if !strings.HasPrefix(c.Root, "UUID=") && !strings.HasPrefix(c.Root, "/dev/") {
		return c, fmt.Errorf("root=%s: want UUID=<uuid> or /dev/<name>", c.Root)
	}
	return c, nil
}

// fields splits on spaces outside double quotes and drops the quotes.
func fields(s string) []string {
	var out []string
	var cur strings.Builder
	quoted, started := false, false
	for _, r := range s {
		switch {
		case r == '"':
			quoted, started = !quoted, true
		case !quoted && (r == ' ' || r == '\t' || r == '\n'):
			if started {
				out = append(out, cur.String())
				cur.Reset()
				started = false
			}
		default:
			cur.WriteRune(r)
			started = true
		}
	}
	if started {
		out = append(out, cur.String())
	}
	return out
}
