package images

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
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
	"github.com/metalforge/metalforge/pkg/phonehome/osinit"
)

// TestSmallImageBoots installs and boots the small image (always, when root).
func TestSmallImageBoots(t *testing.T) {
	testBoot(t, "small", 512<<20, 120*time.Second, bootExtra{wants: []string{"hostname " + machineIDOf("small")}})
}

// machineIDOf is the machine id the boot test of an image uses.
func machineIDOf(image string) string { return "e2e-" + image + "-1" }

// TestDebianImageBoots does the same with the debian image (systemd, ~60 s under TCG; the build
// takes ~1 min with a warm .deb cache, ~3 min cold). Opt in with METALFORGE_IMAGE_TESTS=debian.
func TestDebianImageBoots(t *testing.T) {
	if !strings.Contains(os.Getenv("METALFORGE_IMAGE_TESTS"), "debian") {
		t.Skip("slow (image build + systemd boot under TCG); set METALFORGE_IMAGE_TESTS=debian to run")
	}
	testBoot(t, "debian", 2<<30, 240*time.Second, bootExtra{})
}

// TestFirewallImageBoots installs the firewall image with a firewall allocation (as the hammer
// writes it: install.json) and boots it: metal-osinit's first-boot step must write the
// configuration (its kernel log marker names the egress address), FRR must answer with bgpd
// running, and firewall-controller must have applied its base ruleset: `table inet firewall` with
// a SNAT rule to the egress address. A check unit the test adds to the installed disk (not part of
// the image) reports both through the kernel log on the serial console, like the phone-home marker.
//
// It runs by default (root, not -short): with the image up to date the build step takes ~14 s and
// the boot ~45 s to the checked ruleset (~2 min on a loaded machine); a rebuild after a change to
// firewall-controller or metal-osinit adds 70-210 s with a warm .deb cache.
func TestFirewallImageBoots(t *testing.T) {
	id := machineIDOf("firewall")
	alloc := firewallAllocation(id)
	b, err := json.MarshalIndent(alloc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	testBoot(t, "firewall", 2<<30, 300*time.Second, bootExtra{
		files: map[string]string{
			osinit.InstallPath:                              string(b) + "\n",
			"usr/local/sbin/metalforge-fwcheck":             fwCheckScript,
			"etc/systemd/system/metalforge-fwcheck.service": fwCheckUnit,
			"etc/metalforge/fwcheck.env":                    "EGRESS=" + fwEgress + "\nROUTERID=" + fwRouterID + "\n",
		},
		links: map[string]string{
			"etc/systemd/system/multi-user.target.wants/metalforge-fwcheck.service": "/etc/systemd/system/metalforge-fwcheck.service",
		},
		wants: []string{
			osinit.FirewallMarker + " machine=" + id + " external=vlan104009 egress=" + fwEgress,
			fwCheckFRR,
			fwCheckNFT + fwEgress,
			fwCheckDev,
		},
		fails: fwCheckFailed,
	})
}

// fwEgress is the egress (SNAT) address of the test's firewall allocation, fwRouterID its
// underlay address (FRR's router id).
const fwEgress, fwRouterID = "203.0.113.9", "10.255.0.1"

// firewallAllocation is a firewall as metal-api allocates it: the project's private network, an
// external network with NAT (one egress address) and the underlay, all with one ASN.
func firewallAllocation(hostname string) *api.MachineAllocation {
	return &api.MachineAllocation{ProjectID: "lab", Name: hostname, Hostname: hostname, Role: api.RoleFirewall, ImageID: "firewall",
		Networks: []api.MachineNetwork{
			{NetworkID: "cluster", NetworkType: api.NetworkPrivate, Private: true, VRF: 10001, ASN: 4200000001,
				Prefixes: []string{"10.128.0.0/22"}, IPs: []string{"10.128.0.1"}},
			{NetworkID: "internet", NetworkType: api.NetworkExternal, VRF: 104009, ASN: 4200000001, NAT: true,
				Prefixes: []string{"203.0.113.0/24"}, DestinationPrefixes: []string{"0.0.0.0/0"}, IPs: []string{fwEgress}},
			{NetworkID: "underlay", NetworkType: api.NetworkUnderlay, Underlay: true, ASN: 4200000001,
				Prefixes: []string{"10.255.0.0/22"}, IPs: []string{fwRouterID}},
		}}
}

// The check's kernel log lines.
const (
	fwCheckFRR    = "metalforge-test: frr up, bgpd answers"
	fwCheckNFT    = "metalforge-test: table inet firewall snats to "
	fwCheckDev    = "metalforge-test: vrf10001 > vlan10001 > vni10001 and the egress address on vlan104009"
	fwCheckFailed = "metalforge-test: firewall check failed"
)

// fwCheckUnit runs the check once the system is up.
const fwCheckUnit = `[Unit]
Description=metalforge boot test: FRR up and the firewall ruleset applied
After=multi-user.target

[Service]
Type=oneshot
EnvironmentFile=/etc/metalforge/fwcheck.env
ExecStart=/usr/local/sbin/metalforge-fwcheck

[Install]
WantedBy=multi-user.target
`

// fwCheckScript polls (bounded: 180 s) until bgpd runs and answers through vtysh with the
// allocation's router id (so FRR loaded metal-osinit's frr.conf), networkd made the VRF devices
// of the naming convention with the firewall's addresses, and `table inet firewall` has a snat
// rule naming $EGRESS; it reports each through the kernel log, and on timeout what it saw.
const fwCheckScript = `#!/bin/sh
frr=no nft=no dev=no
for i in $(seq 1 360); do
	if [ "$frr" = no ] && systemctl is-active -q frr && pidof bgpd >/dev/null &&
		vtysh -c 'show bgp summary json' 2>/dev/null | tr -d ' \n' | grep -qF "\"routerId\":\"$ROUTERID\""; then
		frr=yes
		echo "<5>` + fwCheckFRR + `" >/dev/kmsg
	fi
	rule=$(nft list table inet firewall 2>/dev/null | grep snat | grep -F "$EGRESS" | head -n1 | sed 's/^[[:space:]]*//')
	if [ "$nft" = no ] && [ -n "$rule" ]; then
		nft=yes
		echo "<5>` + fwCheckNFT + `$EGRESS: $rule" >/dev/kmsg
	fi
	if [ "$dev" = no ] && ip -o addr show dev vlan104009 2>/dev/null | grep -qF " $EGRESS/32" &&
		ip -o link show master vrf10001 2>/dev/null | grep -q ' vlan10001:' &&
		ip -o link show master vlan10001 2>/dev/null | grep -q ' vni10001:'; then
		dev=yes
		echo "<5>` + fwCheckDev + `" >/dev/kmsg
	fi
	if [ "$frr" = yes ] && [ "$nft" = yes ] && [ "$dev" = yes ]; then
		exit 0
	fi
	sleep 0.5
done
{
	echo "<3>` + fwCheckFailed + `: frr=$frr nft=$nft dev=$dev"
	echo "<3>metalforge-test: links $(ip -br link 2>&1 | tr '\n' '|' | cut -c1-700)"
	for u in frr firewall-controller metalforge-firewall; do
		echo "<3>metalforge-test: $u $(systemctl is-active $u) $(journalctl -u $u -n 8 --no-pager -o cat 2>&1 | tr '\n' '|' | cut -c1-700)"
	done
	echo "<3>metalforge-test: ruleset $(nft list ruleset 2>&1 | tr '\n\t' '  ' | cut -c1-900)"
} | while IFS= read -r line; do echo "$line" >/dev/kmsg; done
exit 1
`

// bootExtra is what a boot test adds to the installed disk and expects on the serial console.
type bootExtra struct {
	// files (path below the root → content; scripts under sbin/ or bin/ get mode 0755) and links
	// (path → target) are written after the hammer's files.
	files, links map[string]string
	// wants are the lines the serial log must show after the phone home, in any order.
	wants []string
	// fails ends the wait early when it shows up in the serial log.
	fails string
}

// testBoot builds an image, installs it onto a sparse GPT disk of diskSize bytes the way the
// hammer does (EFI vfat + ext4 root, extract, phonehome.json, hostname, then extra's files),
// boots the image's own kernel and initrd in QEMU with the hammer's command line and waits until
// the fake boot service on the host receives "Phoned Home" for the machine, sent with the
// machine's token, and the serial log shows the phone-home marker and extra's lines. bootTimeout
// bounds all of it (LAB-NOTES: allow more when other VMs share the two cores).
func testBoot(t *testing.T, image string, diskSize int64, bootTimeout time.Duration, extra bootExtra) {
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
	machineID := machineIDOf(image)
	ms.Put(api.Machine{Meta: api.Meta{ID: machineID}, PartitionID: "lab"})
	addr := bootrpctest.Serve(t, bootrpc.Config{Machines: ms, Auth: bootrpctest.Tokens{
		"machine-secret": {Name: "phone home", Role: auth.RoleMachine, PartitionID: "lab", MachineID: machineID},
	}})
	_, port, _ := strings.Cut(addr, ":")

	inst := install(t, filepath.Join(dir, image+".tar.zst"), work, diskSize, phonehome.File{
		// QEMU user networking: the guest reaches the host's loopback as 10.0.2.2.
		API: "10.0.2.2:" + port, MachineID: machineID, Token: "machine-secret",
	}, machineID, extra)

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
	// that it applied the hostname the "hammer" wrote, the firewall's check unit what it found.
	wants := append([]string{phonehome.Marker + " machine=" + machineID}, extra.wants...)
	for _, want := range wants {
		deadline := time.Now().Add(15 * time.Second)
		if len(extra.wants) > 0 {
			deadline = start.Add(bootTimeout)
		}
		for !strings.Contains(readFile(serial), want) {
			if extra.fails != "" && strings.Contains(readFile(serial), extra.fails) {
				time.Sleep(2 * time.Second) // the check's details follow its failure line
				failf("serial log shows %q while waiting for %q", extra.fails, want)
			}
			if time.Now().After(deadline) {
				failf("serial log lacks %q", want)
			}
			select {
			case err := <-exited:
				exited <- err
				failf("qemu exited while waiting for %q: %v", want, err)
			case <-time.After(250 * time.Millisecond):
			}
		}
		t.Logf("%.1f s after QEMU start: %s", time.Since(start).Seconds(), want)
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
func install(t *testing.T, image, work string, size int64, ph phonehome.File, hostname string, extra bootExtra) installed {
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
	for name, body := range extra.files {
		p := filepath.Join(mnt, name)
		mode := os.FileMode(0o644)
		if strings.Contains(name, "bin/") { // bin/ and sbin/
			mode = 0o755
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
	}
	for name, target := range extra.links {
		p := filepath.Join(mnt, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, p); err != nil {
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
