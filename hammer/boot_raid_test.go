package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/metalforge/metalforge/pkg/api"
)

// TestQEMUInstallRaidLVM installs on two virtio disks with a layout of RAID1 over a partition of
// each, an LVM volume group on the array and the root file system (ext4) on a logical volume,
// and checks that the hammer reports success and kexecs with root=UUID of that file system.
func TestQEMUInstallRaidLVM(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to build the initramfs")
	}
	const id = "6f7e8d9c-2b3c-4d5e-9fa0-1b2c3d4e5f60"
	qemu, dir, fake, port, httpPort, img := qemuInstallSetup(t)

	tmp := t.TempDir()
	const diskSize = 1 << 30
	args := []string{"-accel", "tcg", "-cpu", "max", "-m", "1024", "-nographic", "-no-reboot",
		"-uuid", id, "-kernel", filepath.Join(dir, "vmlinuz"), "-initrd", filepath.Join(dir, "hammer-initrd.gz"),
		"-append", "console=ttyS0 mf.api=10.0.2.2:" + port + " mf.token=boot-secret mf.partition=p1",
		"-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0"}
	for _, name := range []string{"a.raw", "b.raw"} {
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(p, diskSize); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-drive", "file="+p+",if=virtio,format=raw,discard=unmap")
	}
	console, err := os.Create(filepath.Join(tmp, "console.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer console.Close()
	cmd := exec.Command(qemu, args...)
	cmd.Stdout, cmd.Stderr = console, console
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // by PID
		<-exited
		if t.Failed() {
			b, _ := os.ReadFile(console.Name())
			t.Logf("console:\n%s", b)
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 180*time.Second)
	defer cancel()
	if err := fake.AwaitWaiters(ctx, id, 1); err != nil {
		t.Fatalf("the hammer did not register and wait: %v", err)
	}
	m, err := fake.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Hardware.Disks) != 2 {
		t.Fatalf("registered disks = %+v, want 2", m.Hardware.Disks)
	}
	if w := fake.Wipes(id); len(w) != 1 || len(w[0].Disks) != 2 || !w[0].Disks[0].Verified || !w[0].Disks[1].Verified {
		t.Errorf("wipe records = %+v, want both disks wiped and verified", w)
	}

	layout := api.FilesystemLayout{
		Meta: api.Meta{ID: "raid1-lvm"},
		Disks: []api.Disk{
			{Device: "/dev/vda", WipeOnReinstall: true, Partitions: []api.DiskPartition{{Number: 1, Label: "raid", GPTType: "fd00"}}},
			{Device: "/dev/vdb", WipeOnReinstall: true, Partitions: []api.DiskPartition{{Number: 1, Label: "raid", GPTType: "fd00"}}},
		},
		Raid:           []api.Raid{{ArrayName: "/dev/md0", Devices: []string{"/dev/vda1", "/dev/vdb1"}, Level: "1"}},
		VolumeGroups:   []api.VolumeGroup{{Name: "vg0", Devices: []string{"/dev/md0"}}},
		LogicalVolumes: []api.LogicalVolume{{Name: "swap", VolumeGroup: "vg0", Size: 64}, {Name: "root", VolumeGroup: "vg0"}},
		Filesystems: []api.Filesystem{
			{Device: "/dev/vg0/root", Format: "ext4", Label: "root", Path: "/"},
			{Device: "/dev/vg0/swap", Format: "swap"},
		},
	}
	sum := sha256.Sum256(img)
	spec := api.InstallSpec{
		Machine: api.Machine{Allocation: &api.MachineAllocation{ProjectID: "p", Hostname: "qemu-raid", ImageID: "test", SSHPubKeys: []string{"ssh-ed25519 AAAA t"}}},
		Image:   api.Image{Meta: api.Meta{ID: "test"}, URL: "http://10.0.2.2:" + httpPort + "/os.tar.zst", SHA256: hex.EncodeToString(sum[:])},
		Layout:  &layout,
	}
	if err := fake.Allocate(id, spec); err != nil {
		t.Fatal(err)
	}
	var rootUUID string
	for rootUUID == "" {
		if ctx.Err() != nil {
			t.Fatalf("no kexec into the installed kernel; events %v, reports %+v", fake.Events(id), fake.Reports(id))
		}
		b, _ := os.ReadFile(console.Name())
		if i := bytes.Index(b, []byte("Command line: root=UUID=")); i >= 0 {
			rootUUID = strings.Fields(string(b[i+len("Command line: root=UUID="):]))[0]
		}
		select {
		case <-exited:
			t.Fatalf("qemu exited early: %v; reports %+v", waitErr, fake.Reports(id))
		case <-time.After(500 * time.Millisecond):
		}
	}
	r := fake.Reports(id)
	if len(r) != 1 || !r[0].Success || r[0].BootInfo == nil || !strings.HasPrefix(r[0].BootInfo.Cmdline, "root=UUID="+rootUUID+" ") ||
		r[0].BootInfo.OSPartition != "/dev/vg0/root" || r[0].BootInfo.PrimaryDisk != "/dev/vda" {
		t.Errorf("reports = %+v", r)
	}
	// The kernel shows the mirror assembled from both members and stopped again by the hammer
	// before the kexec; the hammer logs the UUID it gave the root LV's file system.
	b, _ := os.ReadFile(console.Name())
	for _, want := range []string{"md/raid1:md0: active with 2 out of 2 mirrors", "md: md0 stopped.", `msg="raid and lvm built"`,
		"device=/dev/vg0/root format=ext4 uuid=" + rootUUID + " path=/"} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("the console does not show %q", want)
		}
	}
	t.Logf("installed on raid1+lvm and kexec'd after %s", time.Since(start).Round(time.Second))
}
