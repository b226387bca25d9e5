package lab_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/metalforge/metalforge/pkg/bmc"
	"github.com/metalforge/metalforge/pkg/client/metalapi/machine"
	"github.com/metalforge/metalforge/pkg/lab"
	"github.com/metalforge/metalforge/pkg/lab/netns"
)

func requireLab(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a network namespace, taps and QEMU machines")
	}
	for _, p := range []string{"ipmi_sim", "qemu-system-x86_64", "qemu-img", "go"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Fatalf("%s is not installed: run hack/deps.sh qemu-system-x86 ipxe-qemu qemu-utils openipmi ipmitool kmod cpio", p)
		}
	}
}

func testConfig(t testing.TB, machines int) lab.Config {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return lab.Config{Name: "mflt" + hex.EncodeToString(b), Machines: machines, Dir: t.TempDir(), Images: []string{},
		Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))}
}

// up starts a lab and takes it down at the end of the test, checking that nothing is left.
func up(t testing.TB, ctx context.Context, cfg lab.Config) *lab.Lab {
	t.Helper()
	start := time.Now()
	l, err := lab.Up(ctx, cfg)
	if err != nil {
		t.Fatalf("up: %v", err)
	}
	t.Logf("lab up in %v", time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		procs := l.State().Procs
		start := time.Now()
		if err := l.Down(); err != nil {
			t.Errorf("down: %v", err)
		}
		t.Logf("lab down in %v", time.Since(start).Round(time.Millisecond))
		if netns.Exists(cfg.Name) {
			t.Errorf("netns %s still exists after down", cfg.Name)
		}
		for _, p := range procs {
			if p.Alive() {
				t.Errorf("%s (pid %d) still runs after down", p.Name, p.PID)
			}
		}
		if _, err := os.Stat(filepath.Join(cfg.Dir, "state.json")); !os.IsNotExist(err) {
			t.Errorf("state file still exists after down: %v", err)
		}
	})
	return l
}

func waitFor(t *testing.T, ctx context.Context, what string, every time.Duration, cond func() bool) {
	t.Helper()
	start := time.Now()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %v waiting for %s", time.Since(start).Round(time.Second), what)
		case <-time.After(every):
		}
	}
	t.Logf("%s after %v", what, time.Since(start).Round(time.Millisecond))
}

func qemuPID(t *testing.T, l *lab.Lab, i int) int {
	raw, err := os.ReadFile(filepath.Join(l.Machines()[i].Dir, "qemu.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(raw)))
	if pid <= 0 {
		return 0
	}
	if stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err != nil || strings.Contains(string(stat), ") Z ") {
		return 0
	}
	return pid
}

func console(l *lab.Lab, i int) string {
	raw, _ := os.ReadFile(l.Console(i))
	return string(raw)
}

// TestLabMachinePowersOnAndNetboots brings up a lab with one machine and no hammer artefacts:
// the machine powers on through its ipmi_sim, iPXE asks for DHCP on the PXE bridge, and the BMC
// powers it off and cycles it.
func TestLabMachinePowersOnAndNetboots(t *testing.T) {
	requireLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cfg := testConfig(t, 1)
	cfg.NoArtifacts = true
	l := up(t, ctx, cfg)

	b, err := l.BMC(0)
	if err != nil {
		t.Fatal(err)
	}
	if s, err := b.PowerState(ctx); err != nil || s != bmc.PowerStateOn {
		t.Fatalf("power state after up: %q, %v", s, err)
	}
	waitFor(t, ctx, "qemu running", 100*time.Millisecond, func() bool { return qemuPID(t, l, 0) > 0 })
	waitFor(t, ctx, "iPXE configuring net0 on the console", time.Second, func() bool {
		c := console(l, 0)
		return strings.Contains(c, "iPXE") && strings.Contains(c, "net0: "+l.Machines()[0].MAC)
	})
	waitFor(t, ctx, "a DHCP lease and the boot-server's script", time.Second, func() bool {
		c := console(l, 0)
		return strings.Contains(c, "net0: 10.255.0.") && strings.Contains(c, "boot.ipxe") && strings.Contains(c, "metalforge:")
	})

	pid := qemuPID(t, l, 0)
	if err := b.PowerOff(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "qemu gone after power off", 100*time.Millisecond, func() bool { return qemuPID(t, l, 0) == 0 })
	waitFor(t, ctx, "power state OFF", 200*time.Millisecond, func() bool { s, err := b.PowerState(ctx); return err == nil && s == bmc.PowerStateOff })

	if err := b.PowerCycle(ctx); err != nil { // off: cycle powers on
		t.Fatal(err)
	}
	waitFor(t, ctx, "qemu back after cycle from off", 100*time.Millisecond, func() bool { p := qemuPID(t, l, 0); return p > 0 && p != pid })
	pid = qemuPID(t, l, 0)
	if err := b.PowerCycle(ctx); err != nil { // on: chassis power cycle
		t.Fatal(err)
	}
	waitFor(t, ctx, "new qemu after cycle from on", 100*time.Millisecond, func() bool { p := qemuPID(t, l, 0); return p > 0 && p != pid })

	st := l.Status(ctx)
	if !st.APIReady || len(st.Machines) != 1 || st.Machines[0].Power != bmc.PowerStateOn {
		t.Errorf("status: %s", st)
	}
	for _, p := range st.Procs {
		if !p.Alive {
			t.Errorf("%s is not running", p.Name)
		}
	}
}

// TestLabPXEToWaiting is the whole discovery path with the other components' artefacts: power on
// → DHCP → iPXE → kernel + hammer initrd from the boot-server → the hammer registers → Waiting.
func TestLabPXEToWaiting(t *testing.T) {
	requireLab(t)
	cfg := testConfig(t, 1)
	cfg.Defaults()
	for _, f := range []string{"hack/initramfs/build.sh", "cmd/boot-server/main.go", "hammer/main.go"} {
		if _, err := os.Stat(filepath.Join(cfg.RepoDir, f)); err != nil {
			t.Skipf("%s does not exist yet: the full PXE path needs it", f)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	l := up(t, ctx, cfg)
	c, err := l.Client()
	if err != nil {
		t.Fatal(err)
	}
	id := l.UUIDs()[0]
	bctx, bcancel := context.WithTimeout(ctx, 4*time.Minute)
	defer bcancel()
	waitFor(t, bctx, "machine registered and waiting", 2*time.Second, func() bool {
		ok, err := c.Machine.GetMachineContext(ctx, machine.NewGetMachineParams().WithID(id), nil)
		return err == nil && ok.Payload != nil && ok.Payload.Waiting
	})
	if t.Failed() || bctx.Err() != nil {
		t.Logf("console:\n%s", console(l, 0))
	}
}

// TestLabUpFailureCleansUp starts a lab whose metal-api binary is missing: Up fails and leaves
// no namespace, process or state behind.
func TestLabUpFailureCleansUp(t *testing.T) {
	requireLab(t)
	cfg := testConfig(t, 1)
	cfg.NoArtifacts, cfg.SkipBuild, cfg.BinDir = true, true, t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := lab.Up(ctx, cfg)
	if err == nil {
		t.Fatal("up without binaries succeeded")
	}
	t.Logf("up failed as expected: %v", err)
	if netns.Exists(cfg.Name) {
		t.Errorf("netns %s left behind", cfg.Name)
		_ = netns.Delete(cfg.Name)
	}
	if _, err := os.Stat(filepath.Join(cfg.Dir, "state.json")); !os.IsNotExist(err) {
		t.Errorf("state file left behind: %v", err)
	}
}
