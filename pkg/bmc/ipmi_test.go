package bmc_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/metalforge/metalforge/pkg/bmc"
	"github.com/metalforge/metalforge/pkg/bmc/bmctest"
	"github.com/metalforge/metalforge/pkg/bmc/vendor"
)

// waitMachine waits until the simulator's machine process is (or is not) running.
func waitMachine(t *testing.T, s *bmctest.IPMISim, running bool) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		pid := s.MachinePID()
		if (pid > 0) == running {
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("machine running=%v never happened", running)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestIPMIAgainstIPMISim(t *testing.T) {
	sim := bmctest.StartIPMISim(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b, err := bmc.Open(sim.Config(vendor.OpenIPMI))
	if err != nil {
		t.Fatal(err)
	}
	state := func() string {
		t.Helper()
		s, err := b.PowerState(ctx)
		if err != nil {
			t.Fatalf("power state: %v", err)
		}
		return s
	}
	if s := state(); s != bmc.PowerStateOff {
		t.Fatalf("fresh simulator: power %s, want OFF", s)
	}

	start := time.Now()
	if err := b.PowerOn(ctx); err != nil {
		t.Fatal(err)
	}
	pid := waitMachine(t, sim, true)
	if s := state(); s != bmc.PowerStateOn {
		t.Fatalf("after power on: %s", s)
	}
	t.Logf("power on → machine process %d in %v", pid, time.Since(start))

	// Cycle of a running machine gives a new machine process.
	start = time.Now()
	if err := b.PowerCycle(ctx); err != nil {
		t.Fatal(err)
	}
	var pid2 int
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if pid2 = sim.MachinePID(); pid2 > 0 && pid2 != pid {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("power cycle kept machine process %d", pid)
		}
	}
	t.Logf("power cycle → machine process %d in %v", pid2, time.Since(start))

	start = time.Now()
	if err := b.PowerOff(ctx); err != nil {
		t.Fatal(err)
	}
	waitMachine(t, sim, false)
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := bmc.WaitPowerState(wctx, b, bmc.PowerStateOff, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	t.Logf("power off → OFF in %v", time.Since(start))

	// Cycle of a machine that is off powers it on.
	if err := b.PowerCycle(ctx); err != nil {
		t.Fatal(err)
	}
	waitMachine(t, sim, true)

	// ipmi_sim without a chassis_control program rejects boot options and identify; the quirk
	// makes boot-once a no-op and the LED unsupported.
	if err := b.BootOnce(ctx, bmc.BootPXE); err != nil {
		t.Errorf("boot once with the OpenIPMI quirk: %v", err)
	}
	if err := b.LED(ctx, true); !errors.Is(err, bmc.ErrUnsupported) {
		t.Errorf("led: %v, want ErrUnsupported", err)
	}
	if err := b.BootOnce(ctx, "floppy"); !errors.Is(err, bmc.ErrUnsupported) {
		t.Errorf("boot once floppy: %v, want ErrUnsupported", err)
	}

	// Without the quirk the simulator's refusal is reported, with its completion code.
	plain, err := bmc.Open(sim.Config(""))
	if err != nil {
		t.Fatal(err)
	}
	if err := plain.BootOnce(ctx, bmc.BootPXE); err == nil || !strings.Contains(err.Error(), "boot once") {
		t.Errorf("boot once without quirk: %v, want the simulator's error", err)
	}
}

func TestIPMIWrongPassword(t *testing.T) {
	sim := bmctest.StartIPMISim(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := sim.Config(vendor.OpenIPMI)
	cfg.Password = "wrong"
	b, err := bmc.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = b.PowerState(ctx)
	if err == nil {
		t.Fatal("power state with a wrong password succeeded")
	}
	if !strings.Contains(err.Error(), "open session") {
		t.Errorf("error %q does not say the session failed", err)
	}
	t.Logf("wrong password fails in %v: %v", time.Since(start), err)
}

func TestIPMIUnreachable(t *testing.T) {
	ns := bmctest.TempNetNS(t, "mfbmc")
	cfg := bmc.Config{Address: "127.0.0.1:623", User: "u", Password: "p", Timeout: 500 * time.Millisecond}
	cfg.Dial = (&bmctest.IPMISim{NS: ns}).Config("").Dial
	b, err := bmc.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := b.PowerOn(ctx); err == nil {
		t.Fatal("power on of a BMC that does not exist succeeded")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("unreachable BMC took %v to fail, want a bounded few seconds", d)
	}
}
