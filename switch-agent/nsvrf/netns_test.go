package nsvrf

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/vishvananda/netns"
)

func TestNetnsLifecycle(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces and bind mounts")
	}
	path := filepath.Join(t.TempDir(), "vrf1")
	if err := CreateNetns(path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = DeleteNetns(path) })
	if err := CreateNetns(path); err == nil {
		t.Error("created a namespace over an existing one")
	}
	self, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	var inside netns.NsHandle
	if err := Do(path, func() error { inside, err = netns.Get(); return err }); err != nil {
		t.Fatal(err)
	}
	defer inside.Close()
	if inside.Equal(self) {
		t.Error("Do ran in the caller's namespace")
	}
	if now, _ := netns.Get(); !now.Equal(self) {
		t.Error("Do leaked its namespace into the caller's thread")
	}
	if err := sysctls(inside, routing()); err != nil {
		t.Fatal(err)
	}
	if err := Do(path, func() error {
		b, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
		if err == nil && string(b) != "1\n" {
			t.Errorf("ip_forward in the namespace is %q", b)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := DeleteNetns(path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("%s still exists", path)
	}
	if err := DeleteNetns(path); err != nil {
		t.Errorf("deleting a missing namespace: %v", err)
	}
}
