package disk

import (
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/metalforge/metalforge/pkg/api"
)

// raidLVMLayout is RAID1 over a partition of each of two disks, carrying a volume group with a
// swap LV and a root LV over the rest, and an EFI partition outside the array.
func raidLVMLayout() api.FilesystemLayout {
	return api.FilesystemLayout{
		Meta: api.Meta{ID: "raid-lvm"},
		Disks: []api.Disk{
			{Device: "/dev/vda", Partitions: []api.DiskPartition{{Number: 1, Size: 64, GPTType: "ef00"}, {Number: 2, GPTType: "fd00"}}},
			{Device: "/dev/vdb", Partitions: []api.DiskPartition{{Number: 1, GPTType: "fd00"}}},
		},
		Raid:           []api.Raid{{ArrayName: "/dev/md0", Devices: []string{"/dev/vda2", "/dev/vdb1"}, Level: "1"}},
		VolumeGroups:   []api.VolumeGroup{{Name: "vg-0", Devices: []string{"/dev/md0"}}},
		LogicalVolumes: []api.LogicalVolume{{Name: "swap", VolumeGroup: "vg-0", Size: 128}, {Name: "root", VolumeGroup: "vg-0"}},
		Filesystems: []api.Filesystem{
			{Device: "/dev/vg-0/root", Format: FormatExt4, Path: "/"},
			{Device: "/dev/vg-0/swap", Format: FormatSwap},
			{Device: "/dev/vda1", Format: FormatVFAT, Path: "/boot/efi"},
		},
	}
}

func TestValidateVolumes(t *testing.T) {
	if err := Validate(raidLVMLayout()); err != nil {
		t.Fatalf("raid+lvm layout: %v", err)
	}
	fsOnMD := raidLVMLayout()
	fsOnMD.VolumeGroups, fsOnMD.LogicalVolumes = nil, nil
	fsOnMD.Filesystems = []api.Filesystem{{Device: "/dev/md0", Format: FormatExt4, Path: "/"}}
	if err := Validate(fsOnMD); err != nil {
		t.Fatalf("file system on an array: %v", err)
	}
	mod := func(f func(*api.FilesystemLayout)) api.FilesystemLayout {
		l := raidLVMLayout()
		f(&l)
		return l
	}
	tests := []struct {
		name        string
		layout      api.FilesystemLayout
		unsupported bool
	}{
		{"unknown level", mod(func(l *api.FilesystemLayout) { l.Raid[0].Level = "raid7" }), true},
		{"array name", mod(func(l *api.FilesystemLayout) { l.Raid[0].ArrayName = "md0" }), false},
		{"array number", mod(func(l *api.FilesystemLayout) { l.Raid[0].ArrayName = "/dev/md200" }), false},
		{"duplicate array", mod(func(l *api.FilesystemLayout) { l.Raid = append(l.Raid, l.Raid[0]) }), false},
		{"too few devices", mod(func(l *api.FilesystemLayout) { l.Raid[0].Devices = l.Raid[0].Devices[:1] }), false},
		{"raid5 of two", mod(func(l *api.FilesystemLayout) { l.Raid[0].Level = "5" }), false},
		{"unknown member", mod(func(l *api.FilesystemLayout) { l.Raid[0].Devices[1] = "/dev/vdc1" }), false},
		{"member twice", mod(func(l *api.FilesystemLayout) { l.Raid[0].Devices[1] = "/dev/vda2" }), false},
		{"member formatted", mod(func(l *api.FilesystemLayout) { l.Filesystems[2].Device = "/dev/vda2" }), false},
		{"unknown pv", mod(func(l *api.FilesystemLayout) { l.VolumeGroups[0].Devices = []string{"/dev/md1"} }), false},
		{"pv in use", mod(func(l *api.FilesystemLayout) {
			l.VolumeGroups = append(l.VolumeGroups, api.VolumeGroup{Name: "vg1", Devices: []string{"/dev/md0"}})
		}), false},
		{"vg name", mod(func(l *api.FilesystemLayout) { l.VolumeGroups[0].Name = "-vg" }), false},
		{"vg without devices", mod(func(l *api.FilesystemLayout) { l.VolumeGroups[0].Devices = nil }), false},
		{"unknown vg", mod(func(l *api.FilesystemLayout) { l.LogicalVolumes[0].VolumeGroup = "vg1" }), false},
		{"duplicate lv", mod(func(l *api.FilesystemLayout) { l.LogicalVolumes[1].Name = "swap" }), false},
		{"rest not last", mod(func(l *api.FilesystemLayout) { l.LogicalVolumes[0].Size = 0 }), false},
		{"lv name", mod(func(l *api.FilesystemLayout) { l.LogicalVolumes[0].Name = "snapshot1" }), false},
		{"unknown lv", mod(func(l *api.FilesystemLayout) { l.Filesystems[0].Device = "/dev/vg-0/home" }), false},
		{"lv formatted twice", mod(func(l *api.FilesystemLayout) { l.Filesystems[1].Device = "/dev/vg-0/root" }), false},
	}
	for _, tt := range tests {
		err := Validate(tt.layout)
		if err == nil {
			t.Errorf("%s: want error", tt.name)
			continue
		}
		if errors.Is(err, ErrUnsupported) != tt.unsupported {
			t.Errorf("%s: %v, unsupported = %v", tt.name, err, tt.unsupported)
		}
	}
}

func TestVolumeCommands(t *testing.T) {
	l := raidLVMLayout()
	l.Raid = append(l.Raid, api.Raid{ArrayName: "/dev/md1", Devices: []string{"/dev/vda1", "/dev/vdb1"}, Level: "raid10"})
	node := func(d string) string { return strings.Replace(d, "/dev/vd", "/dev/loop", 1) }
	build, teardown := volumeCommands(l, node)
	cfg := lvmConfig([]string{"/dev/md0"})
	want := []Command{
		{"mdadm", "--zero-superblock", "--force", "/dev/loopa2"},
		{"mdadm", "--zero-superblock", "--force", "/dev/loopb1"},
		{"mdadm", "--create", "/dev/md0", "--run", "--metadata=1.2", "--homehost=any", "--level=1", "--raid-devices=2", "/dev/loopa2", "/dev/loopb1"},
		{"mdadm", "--zero-superblock", "--force", "/dev/loopa1"},
		{"mdadm", "--zero-superblock", "--force", "/dev/loopb1"},
		{"mdadm", "--create", "/dev/md1", "--run", "--metadata=1.2", "--homehost=any", "--level=10", "--raid-devices=2", "/dev/loopa1", "/dev/loopb1"},
		{"lvm", "pvcreate", "--config", cfg, "-ff", "-y", "--zero", "y", "/dev/md0"},
		{"lvm", "vgcreate", "--config", cfg, "-y", "vg-0", "/dev/md0"},
		{"lvm", "lvcreate", "--config", cfg, "-y", "-W", "y", "-Z", "y", "-n", "swap", "-L", "128m", "vg-0"},
		{"lvm", "lvcreate", "--config", cfg, "-y", "-W", "y", "-Z", "y", "-n", "root", "-l", "100%FREE", "vg-0"},
	}
	if d := cmp.Diff(want, build); d != "" {
		t.Errorf("build (-want +got):\n%s", d)
	}
	wantDown := []Command{
		{"lvm", "vgchange", "--config", cfg, "-an", "vg-0"},
		{"mdadm", "--stop", "/dev/md1"},
		{"mdadm", "--stop", "/dev/md0"},
	}
	if d := cmp.Diff(wantDown, teardown); d != "" {
		t.Errorf("teardown (-want +got):\n%s", d)
	}
	if got, want := build[8].short(), "lvm lvcreate -y -W y -Z y -n swap -L 128m vg-0"; got != want {
		t.Errorf("short = %q, want %q", got, want)
	}
	if got, want := mapperNode("vg-0", "my-root"), "/dev/mapper/vg--0-my--root"; got != want {
		t.Errorf("mapperNode = %s, want %s", got, want)
	}
}

func TestLVMConfig(t *testing.T) {
	cfg := lvmConfig([]string{"/dev/md0", "/dev/vda2"})
	if !strings.Contains(cfg, `filter = [ "a|^/dev/md0$|", "a|^/dev/vda2$|", "r|.*|" ]`) ||
		!strings.Contains(cfg, "udev_sync = 0 udev_rules = 0") {
		t.Errorf("config = %s", cfg)
	}
	lvm, err := exec.LookPath("lvm")
	if err != nil {
		t.Skip("lvm (lvm2) is not installed: the config syntax is checked only by the string test above")
	}
	// lvm parses --config before anything else and refuses bad syntax; "config" prints the merged
	// settings without touching any device.
	out, err := exec.Command(lvm, "config", "--config", cfg, "--typeconfig", "current", "activation/udev_rules", "devices/filter").CombinedOutput()
	if err != nil {
		t.Fatalf("lvm config: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "udev_rules=0") || !strings.Contains(string(out), `a|^/dev/vda2$|`) {
		t.Errorf("lvm config:\n%s", out)
	}
}
