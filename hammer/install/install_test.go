package install

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/phonehome"
)

func spec() api.InstallSpec {
	return api.InstallSpec{
		Machine: api.Machine{Meta: api.Meta{ID: "m1"}, Allocation: &api.MachineAllocation{
			ProjectID: "p1", Hostname: "worker-1", ImageID: "debian-12",
			SSHPubKeys: []string{"ssh-ed25519 AAAA alice", " ssh-ed25519 BBBB bob \n"},
			UserData:   "#cloud-config\n",
			Networks: []api.MachineNetwork{
				{NetworkID: "underlay", Underlay: true, IPs: []string{"10.0.0.5"}},
				{NetworkID: "tenant", Private: true, IPs: []string{"10.128.0.7"}, VRF: 42, ASN: 4200000001},
			},
		}},
		DNSServers:     []string{"1.1.1.1", "8.8.8.8"},
		NTPServers:     []string{"0.pool.ntp.org", "1.pool.ntp.org"},
		PhoneHomeToken: "phone-secret",
	}
}

func TestWrite(t *testing.T) {
	target := t.TempDir()
	outside := t.TempDir()
	// An image may have resolv.conf as a symlink; make it point outside to prove writes stay in.
	if err := os.MkdirAll(filepath.Join(target, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "resolv.conf"), filepath.Join(target, "etc/resolv.conf")); err != nil {
		t.Fatal(err)
	}
	s := spec()
	if err := Write(Config{Target: target, Spec: s, API: "10.0.2.2:50051", Fstab: "UUID=x / ext4 defaults 0 1\n"}); err != nil {
		t.Fatal(err)
	}
	files := map[string]struct {
		mode    os.FileMode
		content string
	}{
		"etc/hostname":              {0o644, "worker-1\n"},
		"etc/resolv.conf":           {0o644, "# written by the metalforge hammer\nnameserver 1.1.1.1\nnameserver 8.8.8.8\n"},
		NTPPath:                     {0o644, "# written by the metalforge hammer\n[Time]\nNTP=0.pool.ntp.org 1.pool.ntp.org\n"},
		"root/.ssh/authorized_keys": {0o600, "ssh-ed25519 AAAA alice\nssh-ed25519 BBBB bob\n"},
		UserDataPath:                {0o600, "#cloud-config\n"},
		"etc/fstab":                 {0o644, "UUID=x / ext4 defaults 0 1\n"},
	}
	for name, want := range files {
		fi, err := os.Lstat(filepath.Join(target, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if fi.Mode() != want.mode {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode(), want.mode)
		}
		b, _ := os.ReadFile(filepath.Join(target, name))
		if string(b) != want.content {
			t.Errorf("%s = %q, want %q", name, b, want.content)
		}
	}
	if fi, err := os.Stat(filepath.Join(target, "root/.ssh")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("root/.ssh: %v %v", fi, err)
	}
	hostsFile, _ := os.ReadFile(filepath.Join(target, "etc/hosts"))
	for _, want := range []string{"127.0.0.1\tlocalhost\n", "10.128.0.7\tworker-1\n", "127.0.1.1\tworker-1\n"} {
		if !strings.Contains(string(hostsFile), want) {
			t.Errorf("hosts lacks %q:\n%s", want, hostsFile)
		}
	}
	var ph phonehome.File
	readJSON(t, filepath.Join(target, PhoneHomePath), &ph, 0o600)
	if ph != (phonehome.File{API: "10.0.2.2:50051", MachineID: "m1", Token: "phone-secret"}) {
		t.Errorf("phonehome = %+v", ph)
	}
	var alloc api.MachineAllocation
	readJSON(t, filepath.Join(target, InstallPath), &alloc, 0o600)
	if d := cmp.Diff(*s.Machine.Allocation, alloc); d != "" {
		t.Errorf("install.json (-want +got):\n%s", d)
	}
	var nets []api.MachineNetwork
	readJSON(t, filepath.Join(target, NetworksPath), &nets, 0o644)
	if d := cmp.Diff(s.Machine.Allocation.Networks, nets); d != "" {
		t.Errorf("networks.json (-want +got):\n%s", d)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("wrote %d files outside the target", len(ents))
	}
}

func readJSON(t *testing.T, path string, v any, mode os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != mode {
		t.Errorf("%s: mode %v, want %v", path, fi.Mode(), mode)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func TestWriteErrors(t *testing.T) {
	s := spec()
	s.Machine.Allocation = nil
	if err := Write(Config{Target: t.TempDir(), Spec: s}); err == nil {
		t.Error("no allocation: want error")
	}
	if err := Write(Config{Target: "/nonexistent", Spec: spec()}); err == nil {
		t.Error("missing target: want error")
	}
}

func touch(t *testing.T, root string, names ...string) {
	t.Helper()
	for _, n := range names {
		p := filepath.Join(root, n)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFindBootInfo(t *testing.T) {
	opts := BootOptions{RootUUID: "1234", Args: []string{"console=ttyS0", "mf.api=10.0.2.2:1"}, ImageID: "debian-12", PrimaryDisk: "/dev/vda", OSPartition: "/dev/vda2"}
	t.Run("newest kernel with initrd", func(t *testing.T) {
		dir := t.TempDir()
		touch(t, dir, "boot/vmlinuz-6.1.0-9-amd64", "boot/initrd.img-6.1.0-9-amd64",
			"boot/vmlinuz-6.1.0-28-amd64", "boot/initrd.img-6.1.0-28-amd64",
			"boot/vmlinuz-6.12.0-1-amd64", // newest, but without an initrd
			"boot/config-6.1.0-28-amd64")
		got, err := FindBootInfo(dir, opts)
		if err != nil {
			t.Fatal(err)
		}
		want := api.BootInfo{ImageID: "debian-12", PrimaryDisk: "/dev/vda", OSPartition: "/dev/vda2",
			Kernel: "/boot/vmlinuz-6.1.0-28-amd64", Initrd: "/boot/initrd.img-6.1.0-28-amd64",
			Cmdline: "root=UUID=1234 rw console=ttyS0 mf.api=10.0.2.2:1"}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("boot info (-want +got):\n%s", d)
		}
	})
	t.Run("top-level links", func(t *testing.T) {
		dir := t.TempDir()
		touch(t, dir, "boot/k", "boot/i")
		for link, to := range map[string]string{"vmlinuz": "boot/k", "initrd.img": "/boot/i"} {
			if err := os.Symlink(to, filepath.Join(dir, link)); err != nil {
				t.Fatal(err)
			}
		}
		got, err := FindBootInfo(dir, opts)
		if err != nil {
			t.Fatal(err)
		}
		if got.Kernel != "/boot/k" || got.Initrd != "/boot/i" {
			t.Errorf("boot info = %+v", got)
		}
	})
	t.Run("nothing to boot", func(t *testing.T) {
		if _, err := FindBootInfo(t.TempDir(), opts); err == nil {
			t.Error("want error")
		}
	})
	t.Run("no root uuid", func(t *testing.T) {
		if _, err := FindBootInfo(t.TempDir(), BootOptions{}); err == nil {
			t.Error("want error")
		}
	})
}

func TestCompareVersions(t *testing.T) {
	for _, tt := range [][2]string{{"6.1.0-9-amd64", "6.1.0-28-amd64"}, {"6.1.0-28-amd64", "6.12.0-1-amd64"}, {"5.10.0", "5.10.0-1"}} {
		if compareVersions(tt[0], tt[1]) >= 0 || compareVersions(tt[1], tt[0]) <= 0 {
			t.Errorf("%s should sort before %s", tt[0], tt[1])
		}
	}
}
