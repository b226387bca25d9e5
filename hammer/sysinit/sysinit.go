// Package sysinit does what an init system does before anything else can run: mount /proc,
// /sys, /dev (devtmpfs), /run and /tmp, set a PATH, read the kernel command line, and reboot.
package sysinit

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Mount mounts the pseudo file systems; already mounted ones (EBUSY) are fine. It also sets
// PATH for the mkfs binaries and creates /etc for resolv.conf.
func Mount() error {
	mounts := [...]struct{ source, target, fstype, data string }{
		{"proc", "/proc", "proc", ""},
		{"sysfs", "/sys", "sysfs", ""},
		{"devtmpfs", "/dev", "devtmpfs", "mode=0755"},
		{"devpts", "/dev/pts", "devpts", "ptmxmode=0666"},
		{"tmpfs", "/run", "tmpfs", "mode=0755"},
		{"tmpfs", "/tmp", "tmpfs", "mode=1777"},
	}
	for _, m := range mounts {
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			return fmt.Errorf("mount %s: %w", m.target, err)
		}
		err := unix.Mount(m.source, m.target, m.fstype, unix.MS_NOSUID, m.data)
		if err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount %s: %w", m.target, err)
		}
	}
	if err := os.MkdirAll("/etc", 0o755); err != nil {
		return fmt.Errorf("mkdir /etc: %w", err)
	}
	return os.Setenv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
}

// Cmdline returns the kernel command line parameters: "k=v" as k: v, a bare "k" as k: "".
func Cmdline(path string) (map[string]string, error) {
	if path == "" {
		path = "/proc/cmdline"
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read kernel command line: %w", err)
	}
	return ParseCmdline(string(b)), nil
}

// ParseCmdline splits a kernel command line; double quotes group a value with spaces.
func ParseCmdline(s string) map[string]string {
	out := map[string]string{}
	var fields []string
	var cur strings.Builder
	quoted, any := false, false
	for _, r := range s {
		switch {
		case r == '"':
			quoted, any = !quoted, true
		case (r == ' ' || r == '\n' || r == '\t') && !quoted:
			if any {
				fields = append(fields, cur.String())
			}
			cur.Reset()
			any = false
		default:
			cur.WriteRune(r)
			any = true
		}
	}
	if any {
		fields = append(fields, cur.String())
	}
	for _, f := range fields {
		k, v, _ := strings.Cut(f, "=")
		out[k] = v
	}
	return out
}

// Reboot syncs and restarts the machine after delay. It returns only on failure.
func Reboot(delay time.Duration) error {
	time.Sleep(delay)
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART); err != nil {
		return fmt.Errorf("reboot: %w", err)
	}
	return nil
}
