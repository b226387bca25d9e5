package disk

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/metalforge/metalforge/hammer/looptest"
	"github.com/metalforge/metalforge/pkg/api"
)

func TestGUID(t *testing.T) {
	g, err := ParseGUID("C12A7328-F81F-11D2-BA4B-00A0C93EC93B")
	if err != nil {
		t.Fatal(err)
	}
	if want := (GUID{0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b}); g != want {
		t.Errorf("on-disk bytes % x, want % x", g, want)
	}
	if g.String() != "C12A7328-F81F-11D2-BA4B-00A0C93EC93B" {
		t.Errorf("String = %s", g)
	}
	if _, err := ParseGUID("not-a-guid"); err == nil {
		t.Error("bad guid: want error")
	}
	if a, b := newGUID(), newGUID(); a == b || a.String()[14] != '4' {
		t.Errorf("random guids %s %s", a, b)
	}
}

func TestPlanWriteRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "disk.img")
	const size = 1 << 30
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	tab, err := Plan(512, size/512, []PlanPartition{
		{Number: 1, SizeMiB: 512, Type: "ef00", Name: "efi"},
		{Number: 2, SizeMiB: 128, Type: "swap", Name: "swap"},
		{Number: 3, Type: "0FC63DAF-8483-4772-8E79-3D69D8477DE4", Name: "root"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tab.Write(f); err != nil {
		t.Fatal(err)
	}
	got, err := ReadTable(f, 512)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(tab, got); d != "" {
		t.Errorf("read back (-want +got):\n%s", d)
	}
	wantSpans := [][2]uint64{{2048, 2048 + 512*2048 - 1}, {2048 + 512*2048, 2048 + 640*2048 - 1}, {2048 + 640*2048, size/512 - 34}}
	for i, p := range got.Partitions {
		if [2]uint64{p.First, p.End} != wantSpans[i] {
			t.Errorf("partition %d spans %d-%d, want %v", p.Number, p.First, p.End, wantSpans[i])
		}
	}
	// An independent implementation must agree that the table is sound.
	if _, err := exec.LookPath("sgdisk"); err != nil {
		t.Log("sgdisk not installed: skipping the cross-check")
		return
	}
	out, err := exec.Command("sgdisk", "-v", path).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "No problems found") {
		t.Errorf("sgdisk -v: %v\n%s", err, out)
	}
	out, err = exec.Command("sgdisk", "-i", "1", path).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "EFI system partition") || !strings.Contains(string(out), "'efi'") {
		t.Errorf("sgdisk -i 1: %v\n%s", err, out)
	}
}

func TestPlanErrors(t *testing.T) {
	for name, parts := range map[string][]PlanPartition{
		"too big":          {{Number: 1, SizeMiB: 2048}},
		"rest not last":    {{Number: 1}, {Number: 2, SizeMiB: 1}},
		"duplicate number": {{Number: 1, SizeMiB: 1}, {Number: 1, SizeMiB: 1}},
		"number 0":         {{Number: 0, SizeMiB: 1}},
		"bad type":         {{Number: 1, SizeMiB: 1, Type: "zz99"}},
		"long label":       {{Number: 1, SizeMiB: 1, Name: strings.Repeat("x", 37)}},
	} {
		if _, err := Plan(512, (1<<30)/512, parts); err == nil {
			t.Errorf("%s: want error", name)
		}
	}
	if _, err := Plan(512, 100, nil); err == nil {
		t.Error("tiny device: want error")
	}
}

func TestValidate(t *testing.T) {
	ok := Default("/dev/vda")
	if err := Validate(ok); err != nil {
		t.Fatalf("default layout: %v", err)
	}
	mod := func(f func(*api.FilesystemLayout)) api.FilesystemLayout {
		l := Default("/dev/vda")
		l.Disks = append([]api.Disk(nil), l.Disks...)
		l.Filesystems = append([]api.Filesystem(nil), l.Filesystems...)
		f(&l)
		return l
	}
	tests := []struct {
		name        string
		layout      api.FilesystemLayout
		unsupported bool
	}{
		{"raid level", mod(func(l *api.FilesystemLayout) { l.Raid = []api.Raid{{ArrayName: "/dev/md0", Level: "7"}} }), true},
		{"raid without devices", mod(func(l *api.FilesystemLayout) { l.Raid = []api.Raid{{ArrayName: "/dev/md0", Level: "1"}} }), false},
		{"lvm without devices", mod(func(l *api.FilesystemLayout) { l.VolumeGroups = []api.VolumeGroup{{Name: "vg0"}} }), false},
		{"xfs", mod(func(l *api.FilesystemLayout) { l.Filesystems[0].Format = "xfs" }), true},
		{"no root", mod(func(l *api.FilesystemLayout) { l.Filesystems[0].Path = "/data" }), false},
		{"duplicate path", mod(func(l *api.FilesystemLayout) { l.Filesystems[1].Path = "/" }), false},
		{"relative path", mod(func(l *api.FilesystemLayout) { l.Filesystems[1].Path = "boot" }), false},
		{"swap with path", mod(func(l *api.FilesystemLayout) { l.Filesystems[1].Format = FormatSwap }), false},
		{"unknown device", mod(func(l *api.FilesystemLayout) { l.Filesystems[1].Device = "/dev/vdb1" }), false},
		{"disk not in dev", mod(func(l *api.FilesystemLayout) { l.Disks[0].Device = "vda" }), false},
		{"tmpfs without path", mod(func(l *api.FilesystemLayout) {
			l.Filesystems = append(l.Filesystems, api.Filesystem{Format: FormatTmpfs})
		}), false},
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

func TestPartitionDevice(t *testing.T) {
	for disk, want := range map[string]string{"/dev/sda": "/dev/sda2", "/dev/nvme0n1": "/dev/nvme0n1p2", "/dev/loop7": "/dev/loop7p2", "/dev/vda": "/dev/vda2"} {
		if got := PartitionDevice(disk, 2); got != want {
			t.Errorf("PartitionDevice(%s) = %s, want %s", disk, got, want)
		}
	}
}

// TestApplyLoop partitions, formats and mounts a loop device with the mkfs binaries of the host.
func TestApplyLoop(t *testing.T) {
	dev := looptest.New(t, 256<<20)
	for _, tool := range []string{"mke2fs", "mkfs.vfat", "mkswap", "blkid"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	l := api.FilesystemLayout{
		Meta: api.Meta{ID: "test"},
		Disks: []api.Disk{{Device: dev, Partitions: []api.DiskPartition{
			{Number: 1, Label: "efi", Size: 64, GPTType: "ef00"},
			{Number: 2, Label: "swap", Size: 32, GPTType: "8200"},
			{Number: 3, Label: "root"},
		}}},
		// Mount points listed before the root (as layouts often list the EFI partition first):
		// Unmount must still go deepest first.
		Filesystems: []api.Filesystem{
			{Format: FormatTmpfs, Path: "/tmp", MountOptions: []string{"size=1g"}},
			{Device: PartitionDevice(dev, 1), Format: FormatVFAT, Label: "efi", Path: "/boot/efi"},
			{Device: PartitionDevice(dev, 2), Format: FormatSwap, Label: "swap"},
			{Device: PartitionDevice(dev, 3), Format: FormatExt4, Label: "root", Path: "/", MountOptions: []string{"noatime"}},
		},
	}
	// The project's host kernel has no vfat: then the EFI partition is made but not mounted.
	fsTypes, _ := os.ReadFile("/proc/filesystems")
	vfat := strings.Contains(string(fsTypes), "\tvfat\n")
	if !vfat {
		t.Log("kernel without vfat: the efi file system is made but not mounted")
		l.Filesystems[1].Path = ""
	}
	target := t.TempDir()
	// The host kernel may parse no GPTs: stand in for the partition nodes with loop slices.
	slices := func(_ context.Context, disk string, tab Table) (map[string]string, error) {
		nodes := map[string]string{}
		for _, p := range tab.Partitions {
			nodes[PartitionDevice(disk, p.Number)] = looptest.Slice(t, disk, int64(p.First*tab.SectorSize), int64((p.End-p.First+1)*tab.SectorSize))
		}
		return nodes, nil
	}
	res, err := Apply(context.Background(), l, Options{Target: target, Partitions: slices})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := res.Unmount(); err != nil {
			t.Error(err)
		}
	})
	if vfat {
		if err := os.WriteFile(filepath.Join(target, "boot/efi/marker"), []byte("x"), 0o644); err != nil {
			t.Fatalf("efi partition not writable: %v", err)
		}
	}
	if _, err := os.Stat(filepath.Join(target, "lost+found")); err != nil {
		t.Errorf("root is not the ext4 file system: %v", err)
	}
	for _, m := range res.Filesystems {
		if m.Format == FormatTmpfs {
			continue
		}
		out, err := exec.Command("blkid", "-o", "value", "-s", "UUID", m.Node).Output()
		if err != nil || strings.TrimSpace(string(out)) != m.UUID {
			t.Errorf("%s: blkid uuid %q, want %q (%v)", m.Device, out, m.UUID, err)
		}
		if m.Disk != dev {
			t.Errorf("%s: disk %q, want %s", m.Device, m.Disk, dev)
		}
	}
	root := res.Root()
	if root.Device != PartitionDevice(dev, 3) || root.Dir != target {
		t.Errorf("root = %+v", root)
	}
	fstab := res.Fstab()
	want := []string{
		"UUID=" + root.UUID + " / ext4 noatime 0 1",
		"UUID=" + res.Filesystems[2].UUID + " none swap sw 0 0",
		"tmpfs /tmp tmpfs size=1g 0 0",
	}
	if vfat {
		want = append(want, "UUID="+res.Filesystems[1].UUID+" /boot/efi vfat defaults 0 2")
	}
	for _, want := range want {
		if !strings.Contains(fstab, want+"\n") {
			t.Errorf("fstab lacks %q:\n%s", want, fstab)
		}
	}
	if err := res.Unmount(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(target, "lost+found")); err == nil {
		t.Error("target still mounted after Unmount")
	}
}

func TestFstabKept(t *testing.T) {
	r := &Result{Filesystems: []Mounted{
		{Filesystem: api.Filesystem{Device: "/dev/sda2", Format: FormatExt4, Path: "/"}, UUID: "u1"},
		{Filesystem: api.Filesystem{Device: "/dev/sdb1", Format: FormatExt4, Path: "/data"}, Kept: true},
		{Filesystem: api.Filesystem{Device: "/dev/sdb2", Format: FormatSwap}, Kept: true},
		{Filesystem: api.Filesystem{Device: "/dev/sdc1", Format: FormatNone}},
	}}
	want := "# written by the metalforge hammer\n# <file system> <mount point> <type> <options> <dump> <pass>\n" +
		"UUID=u1 / ext4 defaults,errors=remount-ro 0 1\n/dev/sdb1 /data ext4 defaults,nofail 0 2\n/dev/sdb2 none swap sw 0 0\n"
	if d := cmp.Diff(want, r.Fstab()); d != "" {
		t.Errorf("fstab (-want +got):\n%s", d)
	}
	if err := (&Result{}).Unmount(); err != nil {
		t.Error(err)
	}
	if _, err := Apply(context.Background(), api.FilesystemLayout{Raid: []api.Raid{{ArrayName: "/dev/md0", Level: "3"}}}, Options{}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("raid level 3: %v", err)
	}
}
