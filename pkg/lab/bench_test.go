package lab_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/lab"
)

// hammerUp is the hammer's first log line after its kernel booted and loaded the modules.
const hammerUp = `msg="modules loaded"`

// BenchmarkProvisioning measures one machine's provisioning phases in the lab against floors
// measured in the same run, and prints both with the difference (the control plane's share):
//
//   - boot: power-on through the BMC → PXE (iPXE DHCP, script, kernel and initramfs over HTTP) →
//     the hammer running, against QEMU booting the same kernel and initramfs directly;
//   - image: the hammer's download → decompress → sha256 → extract, against `curl | zstd -d | tar -x`
//     of the same image in the lab's namespace (native, so it shows TCG's cost too);
//   - control plane: allocate → Installing (Wait stream wake-up) and registered → Waiting.
//
// Run it with `go test -run '^$' -bench Provisioning -benchtime 1x ./pkg/lab`. Nothing is asserted.
func BenchmarkProvisioning(b *testing.B) {
	requireLab(b)
	for range b.N {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
		benchmarkProvisioning(b, ctx)
		cancel()
	}
}

func benchmarkProvisioning(b *testing.B, ctx context.Context) {
	cfg := testConfig(b, 1)
	cfg.Images = []string{"small"}
	kernelFloor := bareBoot(b, ctx, cfg)

	l := up(b, ctx, cfg)
	poweredOn := time.Now()
	if r := l.State().Ready; r != nil {
		poweredOn = *r // Up powers the machines on last, then marks the lab ready
	}
	pxeBoot := waitLine(b, ctx, l.Console(0), hammerUp, 4*time.Minute).Sub(poweredOn)
	r := rest{t: b, l: l}
	p := &phases{t: b, r: r, id: l.UUIDs()[0]}
	reg := p.waitEvent(ctx, poweredOn.Add(-time.Minute), api.EventRegistering, 4*time.Minute)
	wait := p.waitEvent(ctx, poweredOn.Add(-time.Minute), api.EventWaiting, 4*time.Minute)

	imageFloor := imageCopy(b, ctx, l)
	allocated := allocate(b, ctx, r, "demo", "small", "")
	installing := p.waitEvent(ctx, allocated, api.EventInstalling, 2*time.Minute)
	kexec := p.waitEvent(ctx, allocated, api.EventBootingNewKernel, 5*time.Minute)
	home := p.waitEvent(ctx, allocated, api.EventPhonedHome, 3*time.Minute)
	written := imageSeconds(console(l, 0))

	row := func(name string, got, floor time.Duration) string {
		return fmt.Sprintf("%-42s %7.2f s   floor %7.2f s   overhead %+6.2f s", name, got.Seconds(), floor.Seconds(), (got - floor).Seconds())
	}
	report := []string{
		row("power-on → hammer running (PXE path)", pxeBoot, kernelFloor),
		row("image download+decompress+verify+write", written, imageFloor),
		fmt.Sprintf("%-42s %7.2f s", "registered → waiting (wipe included)", wait.Time.Sub(reg.Time).Seconds()),
		fmt.Sprintf("%-42s %7.2f s", "allocate → installing (control plane)", installing.Time.Sub(allocated).Seconds()),
		fmt.Sprintf("%-42s %7.2f s", "installing → booting new kernel", kexec.Time.Sub(installing.Time).Seconds()),
		fmt.Sprintf("%-42s %7.2f s", "kexec → phoned home", home.Time.Sub(kexec.Time).Seconds()),
	}
	overhead := (pxeBoot - kernelFloor) + installing.Time.Sub(allocated) + max(0, wait.Time.Sub(reg.Time))
	report = append(report, fmt.Sprintf("control-plane overhead above the floors (boot + wake-up + register→wait): %.2f s (goal ≤ 2 s)", overhead.Seconds()))
	b.Logf("provisioning of one TCG machine, floors measured in the same run:\n  %s", strings.Join(report, "\n  "))
	b.ReportMetric(pxeBoot.Seconds(), "boot-s")
	b.ReportMetric(kernelFloor.Seconds(), "boot-floor-s")
	b.ReportMetric(written.Seconds(), "image-s")
	b.ReportMetric(imageFloor.Seconds(), "image-floor-s")
	b.ReportMetric(overhead.Seconds(), "overhead-s")
}

// bareBoot boots the lab's hammer kernel and initramfs directly in QEMU (no firmware netboot, no
// metal-api: the hammer's API address points nowhere) and returns the time until the hammer runs.
func bareBoot(b *testing.B, ctx context.Context, cfg lab.Config) time.Duration {
	cfg.Defaults()
	out, err := exec.CommandContext(ctx, filepath.Join(cfg.RepoDir, "hack/initramfs/build.sh")).Output()
	if err != nil {
		b.Fatalf("initramfs: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	dir := lines[len(lines)-1]
	consolePath := filepath.Join(b.TempDir(), "console.log")
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-machine", "q35", "-m", "1024",
		"-nodefaults", "-vga", "none", "-display", "none", "-serial", "file:"+consolePath,
		"-kernel", filepath.Join(dir, "vmlinuz"), "-initrd", filepath.Join(dir, "hammer-initrd.gz"),
		"-append", "console=ttyS0 mf.api=127.0.0.1:9 mf.token=floor mf.partition=floor",
		"-netdev", "user,id=n0,restrict=on", "-device", "virtio-net-pci,netdev=n0")
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = cmd.Process.Signal(syscall.SIGKILL); _ = cmd.Wait() }()
	return waitLine(b, ctx, consolePath, hammerUp, 3*time.Minute).Sub(start)
}

// imageCopy streams the image the machine will get through curl | zstd -d | tar -x inside the lab's
// namespace, as a floor for the hammer's one-pass install.
func imageCopy(b *testing.B, ctx context.Context, l *lab.Lab) time.Duration {
	var img api.Image
	rest{t: b, l: l}.must(ctx, "GET", "/v1/image/small", nil, &img)
	dir := b.TempDir()
	start := time.Now()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", l.State().Name, "sh", "-c",
		`curl -fsS "$1" | zstd -dc | tar -x -C "$2"`, "sh", img.URL, dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("image floor: %v\n%s", err, out)
	}
	return time.Since(start)
}

var imageWritten = regexp.MustCompile(`msg="image written".* seconds=([0-9.]+)`)

// imageSeconds is the hammer's own measure of the image stream from the console.
func imageSeconds(console string) time.Duration {
	m := imageWritten.FindAllStringSubmatch(console, -1)
	if len(m) == 0 {
		return 0
	}
	s, _ := strconv.ParseFloat(m[len(m)-1][1], 64)
	return time.Duration(s * float64(time.Second))
}

// waitLine polls a console file until a line contains want and returns when it was first seen.
func waitLine(b testing.TB, ctx context.Context, path, want string, limit time.Duration) time.Time {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		if f, err := os.Open(path); err == nil {
			sc := bufio.NewScanner(f)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				if strings.Contains(sc.Text(), want) {
					f.Close()
					return time.Now()
				}
			}
			f.Close()
		}
		select {
		case <-ctx.Done():
			b.Fatalf("%s never showed %q", path, want)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
