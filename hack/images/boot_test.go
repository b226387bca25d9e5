package images

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/auth"
	"github.com/metalforge/metalforge/pkg/bootrpc"
	"github.com/metalforge/metalforge/pkg/bootrpc/bootrpctest"
	"github.com/metalforge/metalforge/pkg/phonehome"
)

// TestSmallImageBoots installs and boots the small image (always, when root).
func TestSmallImageBoots(t *testing.T) {
	testBoot(t, "small", 512<<20, 120*time.Second)
}

// TestDebianImageBoots does the same with the debian image (systemd, ~60 s under TCG; the build
// takes ~1 min with a warm .deb cache, ~3 min cold). Opt in with METALFORGE_IMAGE_TESTS=debian.
func TestDebianImageBoots(t *testing.T) {
	if !strings.Contains(os.Getenv("METALFORGE_IMAGE_TESTS"), "debian") {
		t.Skip("slow (image build + systemd boot under TCG); set METALFORGE_IMAGE_TESTS=debian to run")
	}
	testBoot(t, "debian", 2<<30, 240*time.Second)
}

// TestFirewallImageBoots boots the firewall image (debian + frr + nftables). Opt in with
// METALFORGE_IMAGE_TESTS=firewall.
func TestFirewallImageBoots(t *testing.T) {
	if !strings.Contains(os.Getenv("METALFORGE_IMAGE_TESTS"), "firewall") {
		t.Skip("slow (image build + systemd boot under TCG); set METALFORGE_IMAGE_TESTS=firewall to run")
	}
	testBoot(t, "firewall", 2<<30, 240*time.Second)
}

// testBoot builds an image, installs it onto a sparse GPT disk of diskSize bytes the way the hammer does (EFI vfat + ext4
// root, extract, phonehome.json, hostname), boots the image's own kernel and initrd in QEMU with
// the hammer's command line and waits until the fake boot service on the host receives "Phoned
// Home" for the machine, sent with the machine's token. bootTimeout bounds the boot (LAB-NOTES:
// allow more when other VMs share the two cores).
func testBoot(t *testing.T, image string, diskSize int64, bootTimeout time.Duration) {
	if testing.Short() {
		t.Skip("boots a VM; skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: loop devices, mkfs, mount, image build")
	}
	deps(t, "qemu-system-x86", "qemu-utils", "gdisk", "dosfstools", "e2fsprogs", "zstd", "mount")
	dir := buildImage(t, image)
	work := t.TempDir()

	ms := bootrpctest.NewMachines()
	machineID := "e2e-" + image + "-1"
	ms.Put(api.Machine{Meta: api.Meta{ID: machineID}, PartitionID: "lab"})
	addr := bootrpctest.Serve(t, bootrpc.Config{Machines: ms, Auth: bootrpctest.Tokens{
		"machine-secret": {Name: "phone home", Role: auth.RoleMachine, PartitionID: "lab", MachineID: machineID},
	}})
	_, port, _ := strings.Cut(addr, ":")

	inst := install(t, filepath.Join(dir, image+".tar.zst"), work, diskSize, phonehome.File{
		// QEMU user networking: the guest reaches the host's loopback as 10.0.2.2.
		API: "10.0.2.2:" + port, MachineID: machineID, Token: "machine-secret",
	}, machineID)

	serial := filepath.Join(work, "serial.log")
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	start := time.Now()
	qemu := exec.Command("qemu-system-x86_64",
		"-machine", "q35", "-accel", "tcg", "-cpu", "max", "-m", "512", "-smp", "1",
		"-nographic", "-nodefaults", "-vga", "none", "-no-reboot",
		"-serial", "file:"+serial,
		"-kernel", inst.kernel, "-initrd", inst.initrd,
		"-append", fmt.Sprintf("root=UUID=%s rw console=ttyS0 mf.api=10.0.2.2:%s", inst.uuid, port),
		"-drive", "if=virtio,format=raw,file="+inst.disk,
		"-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0",
	)
	var qemuOut bytes.Buffer
	qemu.Stdout, qemu.Stderr = &qemuOut, &qemuOut
	if err := qemu.Start(); err != nil {
		t.Fatalf("start qemu: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- qemu.Wait() }()
	defer func() {
		// Kill by PID, whatever happened.
		_ = qemu.Process.Kill()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			t.Errorf("qemu pid %d did not exit after kill", qemu.Process.Pid)
		}
	}()

	failf := func(format string, args ...any) {
		t.Helper()
		t.Errorf("qemu output: %s", qemuOut.String())
		t.Fatalf(format+"\nserial log (tail):\n%s", append(args, tail(serial, 60))...)
	}
	var phoned time.Duration
	for phoned == 0 {
		for _, ev := range ms.Events(machineID) {
			if ev.Event == api.EventPhonedHome {
				phoned = time.Since(start)
			} else {
				failf("unexpected event %+v", ev)
			}
		}
		if phoned != 0 {
			break
		}
		select {
		case err := <-exited:
			exited <- err
			failf("qemu exited before the machine phoned home: %v", err)
		case <-ctx.Done():
			failf("no Phoned Home within %s", bootTimeout)
		case <-time.After(250 * time.Millisecond):
		}
	}
	t.Logf("phoned home %.1f s after QEMU start", phoned.Seconds())

	// The marker reaches the serial console through the kernel log; the small image also says
	// that it applied the hostname the "hammer" wrote.
	wants := []string{phonehome.Marker + " machine=" + machineID}
	if image == "small" {
		wants = append(wants, "hostname "+machineID)
	}
	for _, want := range wants {
		deadline := time.Now().Add(15 * time.Second)
		for !strings.Contains(readFile(serial), want) {
			if time.Now().After(deadline) {
				failf("serial log lacks %q", want)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	if testing.Verbose() {
		t.Logf("serial log (tail):\n%s", tail(serial, 40))
	}
}

// installed is a disk with an image on it.
type installed struct {
	disk, uuid, kernel, initrd string
}

// install partitions a sparse disk file like the default layout of example/seed.yaml (1: EFI vfat,
// 2: ext4 root), extracts the image onto the root file system through a loop device, writes the
// files the hammer writes, and copies the image's kernel and initrd out for QEMU.
func install(t *testing.T, image, work string, size int64, ph phonehome.File, hostname string) installed {
	t.Helper()
	in := installed{disk: filepath.Join(work, "disk.img"), uuid: newUUID(t)}
	if err := os.WriteFile(in.disk, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(in.disk, size); err != nil {
		t.Fatal(err)
	}
	run(t, "sgdisk", "-Z", "-n1:0:+64M", "-t1:ef00", "-c1:efi", "-n2:0:0", "-t2:8300", "-c2:root", in.disk)

	// One loop device per partition (offset + size): containers often lack partition scanning.
	efi, root := loopPart(t, in.disk, 1), loopPart(t, in.disk, 2)
	run(t, "mkfs.vfat", "-F", "32", "-n", "EFI", efi)
	run(t, "mkfs.ext4", "-q", "-F", "-U", in.uuid, "-L", "root", root)

	mnt := filepath.Join(work, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, "mount", "-t", "ext4", root, mnt)
	mounted := true
	unmount := func() {
		if mounted {
			mounted = false
			run(t, "umount", mnt)
		}
	}
	t.Cleanup(func() {
		if mounted {
			_ = exec.Command("umount", "-l", mnt).Run()
		}
	})
	run(t, "tar", "--numeric-owner", "-xpf", image, "-I", "zstd", "-C", mnt)

	if err := phonehome.WriteFile(filepath.Join(mnt, phonehome.DefaultPath), ph); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"etc/hostname": hostname + "\n", "etc/resolv.conf": "nameserver 10.0.2.3\n"} {
		if err := os.WriteFile(filepath.Join(mnt, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The hammer's kexec lookup: /boot/vmlinuz-* and /boot/initrd.img-*.
	in.kernel, in.initrd = copyOut(t, mnt, "boot/vmlinuz-*", work), copyOut(t, mnt, "boot/initrd.img-*", work)
	unmount()
	return in
}

func copyOut(t *testing.T, mnt, glob, dst string) string {
	t.Helper()
	matches, err := filepath.Glob(filepath.Join(mnt, glob))
	if err != nil || len(matches) != 1 {
		t.Fatalf("image has %d files %s, want 1 (%v)", len(matches), glob, err)
	}
	b, err := os.ReadFile(matches[0])
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dst, filepath.Base(matches[0]))
	if err := os.WriteFile(out, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// buildImage runs build.sh and returns the output directory (its last stdout line).
func buildImage(t *testing.T, name string) string {
	t.Helper()
	start := time.Now()
	cmd := exec.Command("./build.sh", name)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("build.sh %s: %v\n%s", name, err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	dir := lines[len(lines)-1]
	t.Logf("image %s in %s (%.1f s)", name, dir, time.Since(start).Seconds())
	return dir
}

// deps installs Debian packages through hack/deps.sh.
func deps(t *testing.T, packages ...string) {
	t.Helper()
	cmd := exec.Command("../deps.sh", packages...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hack/deps.sh %v: %v\n%s", packages, err, out)
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// loopPart attaches partition n of disk as its own loop device, detached when the test ends.
func loopPart(t *testing.T, disk string, n int) string {
	t.Helper()
	var first, last int64
	for _, line := range strings.Split(run(t, "sgdisk", "-i", strconv.Itoa(n), disk), "\n") {
		if v, ok := strings.CutPrefix(line, "First sector: "); ok {
			first, _ = strconv.ParseInt(strings.Fields(v)[0], 10, 64)
		}
		if v, ok := strings.CutPrefix(line, "Last sector: "); ok {
			last, _ = strconv.ParseInt(strings.Fields(v)[0], 10, 64)
		}
	}
	if first == 0 || last <= first {
		t.Fatalf("partition %d of %s: sectors %d-%d", n, disk, first, last)
	}
	loop := strings.TrimSpace(run(t, "losetup", "--find", "--show", "--offset", strconv.FormatInt(first*512, 10),
		"--sizelimit", strconv.FormatInt((last-first+1)*512, 10), disk))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", loop).CombinedOutput(); err != nil {
			t.Errorf("detach %s: %v: %s", loop, err, out)
		}
	})
	return loop
}

func newUUID(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func tail(path string, n int) string {
	lines := strings.Split(readFile(path), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
