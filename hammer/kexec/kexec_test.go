package kexec

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadErrors covers the failure paths; a real kexec is exercised by the hammer's QEMU test.
func TestLoadErrors(t *testing.T) {
	if err := Load("/nonexistent/vmlinuz", "/nonexistent/initrd", ""); err == nil || !strings.Contains(err.Error(), "kexec load") {
		t.Errorf("missing kernel: %v", err)
	}
	k := filepath.Join(t.TempDir(), "vmlinuz")
	if err := os.WriteFile(k, []byte("not a kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Load(k, "/nonexistent/initrd", ""); err == nil {
		t.Error("missing initrd: want error")
	}
	if os.Geteuid() == 0 {
		// Not a bzImage: the kernel refuses it (or has no kexec_file_load at all).
		if err := Load(k, k, "console=ttyS0"); err == nil {
			t.Error("garbage kernel loaded")
		}
	}
}
