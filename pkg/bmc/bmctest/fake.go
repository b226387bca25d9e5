package bmctest

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/metalforge/metalforge/pkg/bmc"
)

var _ bmc.BMC = (*Fake)(nil)

// Fake is an in-memory bmc.BMC that records the operations it was asked for.
type Fake struct {
	mu    sync.Mutex
	power string
	led   bool
	boot  string
	calls []string
	fail  map[string]error
	// Block, if set, is waited on (or ctx) by every operation; tests use it to hold commands.
	Block chan struct{}
}

// NewFake returns a Fake that is powered off.
func NewFake() *Fake { return &Fake{power: bmc.PowerStateOff, fail: map[string]error{}} }

// Fail makes op ("on", "off", "cycle", "reset", "boot", "state", "led") return err; nil clears it.
func (f *Fake) Fail(op string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		delete(f.fail, op)
		return
	}
	f.fail[op] = err
}

// Calls lists the operations so far ("on", "boot pxe", "state", ...).
func (f *Fake) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// State returns power, LED and pending boot-once device.
func (f *Fake) State() (power string, led bool, boot string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.power, f.led, f.boot
}

func (f *Fake) op(ctx context.Context, op, call string, apply func()) error {
	if f.Block != nil {
		select {
		case <-f.Block:
		case <-ctx.Done():
			return fmt.Errorf("fake bmc %s: %w", op, ctx.Err())
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
	if err := f.fail[op]; err != nil {
		return err
	}
	apply()
	return nil
}

func (f *Fake) PowerOn(ctx context.Context) error {
	return f.op(ctx, "on", "on", func() { f.power = bmc.PowerStateOn; f.boot = "" })
}

func (f *Fake) PowerOff(ctx context.Context) error {
	return f.op(ctx, "off", "off", func() { f.power = bmc.PowerStateOff })
}

func (f *Fake) PowerCycle(ctx context.Context) error {
	return f.op(ctx, "cycle", "cycle", func() { f.power = bmc.PowerStateOn; f.boot = "" })
}

func (f *Fake) PowerReset(ctx context.Context) error {
	return f.op(ctx, "reset", "reset", func() { f.boot = "" })
}

func (f *Fake) BootOnce(ctx context.Context, dev string) error {
	return f.op(ctx, "boot", "boot "+dev, func() { f.boot = dev })
}

func (f *Fake) PowerState(ctx context.Context) (string, error) {
	var s string
	err := f.op(ctx, "state", "state", func() { s = f.power })
	return s, err
}

func (f *Fake) LED(ctx context.Context, on bool) error {
	call := "led off"
	if on {
		call = "led on"
	}
	return f.op(ctx, "led", call, func() { f.led = on })
}
