// Package looptest attaches loop devices backed by sparse files for tests that need real block
// devices, and detaches them when the test ends, also on failure.
package looptest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Available reports why loop devices can't be used here, or "" when they can.
func Available() string {
	if os.Geteuid() != 0 {
		return "needs root for loop devices"
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		return "no /dev/loop-control"
	}
	if _, err := exec.LookPath("losetup"); err != nil {
		return "no losetup (util-linux)"
	}
	return ""
}

// New attaches a loop device with partition scanning over a sparse file of size bytes in the
// test's temp dir and returns its path (/dev/loopN). It skips the test when loop devices are not
// available.
func New(t testing.TB, size int64) string {
	t.Helper()
	if why := Available(); why != "" {
		t.Skip(why)
	}
	file := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--show", "--partscan", file).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v: %s", dev, err, out)
		}
	})
	return dev
}

// Slice attaches a loop device over size bytes of backing (a file or a block device) starting at
// offset. Tests use it to stand in for partition nodes where the kernel parses no partition
// tables (the project's host kernel is built without CONFIG_EFI_PARTITION).
func Slice(t testing.TB, backing string, offset, size int64) string {
	t.Helper()
	out, err := exec.Command("losetup", "--find", "--show", "--offset", strconv.FormatInt(offset, 10),
		"--sizelimit", strconv.FormatInt(size, 10), backing).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup slice of %s: %v: %s", backing, err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v: %s", dev, err, out)
		}
	})
	return dev
}
