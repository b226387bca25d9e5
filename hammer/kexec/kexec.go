// Package kexec boots into another kernel without going through the firmware: Load with
// kexec_file_load(2), then Exec reboots into the loaded kernel.
package kexec

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Load loads kernel and initrd (paths on the running system) with the command line. The kernel
// verifies and copies them, so the files may be unmounted afterwards.
func Load(kernel, initrd, cmdline string) error {
	k, err := os.Open(kernel)
	if err != nil {
		return fmt.Errorf("kexec load: %w", err)
	}
	defer k.Close()
	i, err := os.Open(initrd)
	if err != nil {
		return fmt.Errorf("kexec load: %w", err)
	}
	defer i.Close()
	if err := unix.KexecFileLoad(int(k.Fd()), int(i.Fd()), cmdline, 0); err != nil {
		return fmt.Errorf("kexec load %s: %w", kernel, err)
	}
	return nil
}

// Exec reboots into the loaded kernel. It returns only on failure.
func Exec() error {
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_KEXEC); err != nil {
		return fmt.Errorf("kexec: %w", err)
	}
	return nil
}
