package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/auth"
	"github.com/metalforge/metalforge/pkg/bootrpc"
	"github.com/metalforge/metalforge/pkg/bootrpc/bootrpctest"
)

func TestConfigFrom(t *testing.T) {
	cfg, err := configFrom(map[string]string{"mf.api": "10.0.2.2:5000", "mf.token": "t", "mf.partition": "p1", "console": "ttyS1,115200"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.API != "10.0.2.2:5000" || cfg.Token != "t" || cfg.Partition != "p1" ||
		strings.Join(cfg.KernelArgs, " ") != "console=ttyS1,115200 mf.api=10.0.2.2:5000" {
		t.Errorf("config = %+v", cfg)
	}
	if _, err := configFrom(map[string]string{"mf.api": "x:1"}); err == nil {
		t.Error("no token: want error")
	}
}

func TestCommandFlags(t *testing.T) {
	if code := command([]string{"--once"}); code != 2 {
		t.Errorf("no api: exit %d, want 2", code)
	}
	if code := command([]string{"--bogus"}); code != 2 {
		t.Errorf("bad flag: exit %d, want 2", code)
	}
}

// buildInitramfs runs hack/initramfs/build.sh and returns its output directory.
func buildInitramfs(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("../hack/initramfs/build.sh")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("build.sh: %v\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1]
}

// osImage packs the initramfs kernel as a tiny installable OS: after the install the hammer
// kexecs into it, and the serial console shows the new command line.
func osImage(t *testing.T, dir string) []byte {
	t.Helper()
	kver, err := os.ReadFile(filepath.Join(dir, "kernel-version"))
	if err != nil {
		t.Fatal(err)
	}
	v := strings.TrimSpace(string(kver))
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	add := func(name string, body []byte, dir bool) {
		h := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg, ModTime: time.Now()}
		if dir {
			h.Mode, h.Typeflag, h.Size = 0o755, tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	kernel, err := os.ReadFile(filepath.Join(dir, "vmlinuz"))
	if err != nil {
		t.Fatal(err)
	}
	add("./", nil, true)
	add("./boot/", nil, true)
	add("./etc/", nil, true)
	add("./boot/vmlinuz-"+v, kernel, false)
	add("./boot/initrd.img-"+v, []byte("not an initrd"), false)
	add("./etc/os-release", []byte("ID=metalforge-test\n"), false)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	var zb bytes.Buffer
	zw, err := zstd.NewWriter(&zb)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(tb.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return zb.Bytes()
}

// TestQEMUInstall boots the real initramfs in QEMU (TCG) against a fake boot service on host
// loopback (QEMU's user network maps 10.0.2.2 to it): the hammer gets DHCP from slirp,
// registers, wipes the virtio disk, waits, installs an image with the default layout, reports and
// kexecs into the installed kernel.
func TestQEMUInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to build the initramfs")
	}
	const id = "5e6d7c8b-1a2b-4c3d-8e9f-0a1b2c3d4e5f"
	qemu, dir, fake, port, httpPort, img := qemuInstallSetup(t)

	tmp := t.TempDir()
	diskImg := filepath.Join(tmp, "disk.raw")
	if err := os.WriteFile(diskImg, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(diskImg, 2<<30); err != nil {
		t.Fatal(err)
	}
	console, err := os.Create(filepath.Join(tmp, "console.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer console.Close()
	cmd := exec.Command(qemu, "-accel", "tcg", "-cpu", "max", "-m", "1024", "-nographic", "-no-reboot",
		"-uuid", id, "-kernel", filepath.Join(dir, "vmlinuz"), "-initrd", filepath.Join(dir, "hammer-initrd.gz"),
		"-append", "console=ttyS0 mf.api=10.0.2.2:"+port+" mf.token=boot-secret mf.partition=p1",
		"-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0",
		"-drive", "file="+diskImg+",if=virtio,format=raw,discard=unmap")
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

	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	if err := fake.AwaitWaiters(ctx, id, 1); err != nil {
		t.Fatalf("the hammer did not register and wait: %v", err)
	}
	registered := time.Since(start)
	m, err := fake.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Hardware.NICs) != 1 || !strings.HasPrefix(m.Hardware.NICs[0].MAC, "52:54:00") || len(m.Hardware.Disks) != 1 ||
		m.Hardware.Disks[0].Size != 2<<30 || m.Hardware.Memory == 0 || len(m.Hardware.CPUs) == 0 {
		t.Errorf("registered hardware = %+v", m.Hardware)
	}
	w := fake.Wipes(id)
	if len(w) != 1 || len(w[0].Disks) != 1 || w[0].Disks[0].Device != "/dev/vda" || !w[0].Disks[0].Verified || w[0].Disks[0].Bytes != 2<<30 {
		t.Errorf("wipe records = %+v", w)
	}

	sum := sha256.Sum256(img)
	spec := api.InstallSpec{
		Machine: api.Machine{Allocation: &api.MachineAllocation{ProjectID: "p", Hostname: "qemu-1", ImageID: "test", SSHPubKeys: []string{"ssh-ed25519 AAAA t"}}},
		Image:   api.Image{Meta: api.Meta{ID: "test"}, URL: "http://10.0.2.2:" + httpPort + "/os.tar.zst", SHA256: hex.EncodeToString(sum[:])},
	}
	if err := fake.Allocate(id, spec); err != nil {
		t.Fatal(err)
	}
	// The kexec'd kernel prints the installed command line on the serial console.
	var rootUUID string
	for rootUUID == "" {
		if ctx.Err() != nil {
			t.Fatalf("no kexec into the installed kernel; events %v", fake.Events(id))
		}
		b, _ := os.ReadFile(console.Name())
		if i := bytes.Index(b, []byte("Command line: root=UUID=")); i >= 0 {
			rest := string(b[i+len("Command line: root=UUID="):])
			rootUUID = strings.Fields(rest)[0]
		}
		select {
		case <-exited:
			t.Fatalf("qemu exited early: %v", waitErr)
		case <-time.After(500 * time.Millisecond):
		}
	}
	installed := time.Since(start)
	r := fake.Reports(id)
	if len(r) != 1 || !r[0].Success || r[0].BootInfo == nil || !strings.HasPrefix(r[0].BootInfo.Cmdline, "root=UUID="+rootUUID+" rw console=ttyS0 mf.api=10.0.2.2:"+port) ||
		r[0].BootInfo.PrimaryDisk != "/dev/vda" || r[0].BootInfo.OSPartition != "/dev/vda2" {
		t.Errorf("reports = %+v", r)
	}
	var names []string
	for _, e := range fake.Events(id) {
		names = append(names, e.Event)
	}
	want := []string{api.EventPreparing, api.EventRegistering, api.EventWaiting, api.EventInstalling}
	if len(names) < 5 || strings.Join(names[:4], ",") != strings.Join(want, ",") || names[len(names)-1] != api.EventBootingNewKernel {
		t.Errorf("events = %v", names)
	}
	t.Logf("registered and waiting after %s, installed and kexec'd after %s (%s)", registered.Round(time.Second), installed.Round(time.Second), strconv.Itoa(len(img))+" byte image")
}

// qemuInstallSetup prepares a QEMU install test: the QEMU binary (installing it if needed), the
// initramfs dir, a fake boot service accepting "boot-secret" for partition p1, its port, and the
// port of an HTTP server serving the test OS image img.
func qemuInstallSetup(t *testing.T) (qemu, dir string, fake *bootrpctest.Machines, port, httpPort string, img []byte) {
	t.Helper()
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil { // CI runs as root on a fresh machine: install what the test needs
		if out, err := exec.Command("../hack/deps.sh", "qemu-system-x86", "qemu-utils", "cpio", "kmod").CombinedOutput(); err != nil {
			t.Fatalf("hack/deps.sh: %v\n%s", err, out)
		}
		if qemu, err = exec.LookPath("qemu-system-x86_64"); err != nil {
			t.Fatal(err)
		}
	}
	dir = buildInitramfs(t)

	fake = bootrpctest.NewMachines()
	addr := bootrpctest.Serve(t, bootrpc.Config{Machines: fake,
		Auth: bootrpctest.Tokens{"boot-secret": auth.Principal{Role: auth.RoleBoot, PartitionID: "p1"}}})
	_, port, _ = net.SplitHostPort(addr)

	img = osImage(t, dir)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "os.tar.zst", time.Now(), bytes.NewReader(img))
	})}
	go srv.Serve(lis) //nolint:errcheck // ends with Close
	t.Cleanup(func() { srv.Close() })
	_, httpPort, _ = net.SplitHostPort(lis.Addr().String())
	return qemu, dir, fake, port, httpPort, img
}
