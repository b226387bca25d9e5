// Package provision is the hammer's job as a library: inventory the machine, register it with
// metal-api's boot service, wipe disks of a freed machine, wait for an allocation, install the
// image, report and kexec into the new OS. The hammer binary only parses the kernel command line
// into a Config and prepares the system as PID 1; tests run the same Run against a fake boot
// service.
package provision

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metalforge/metalforge/hammer/disk"
	"github.com/metalforge/metalforge/hammer/inventory"
	"github.com/metalforge/metalforge/hammer/kexec"
	"github.com/metalforge/metalforge/hammer/wipe"
	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/bootrpc"
	"github.com/metalforge/metalforge/pkg/bootrpc/bootpb"
)

// Config is one run of the hammer. Zero hook fields use the real implementations.
type Config struct {
	// API is the boot service address (mf.api), Token the partition boot token (mf.token),
	// Partition the partition ID (mf.partition; "" lets the token's partition apply).
	API, Token, Partition string
	// Target is where the new root file system is mounted; default /mnt/target.
	Target string
	// KernelArgs are appended to the installed kernel's command line after root= and rw
	// (console=..., the kept mf.api=...).
	KernelArgs []string
	// Once is the mode for tests and development: no kexec (nothing is loaded or executed), Run
	// returns after the "Booting New Kernel" event.
	Once bool

	// Inventory collects the machine; nil uses inventory.Collect with LLDP for LLDPDuration.
	Inventory    func(ctx context.Context) (inventory.Inventory, error)
	LLDPDuration time.Duration
	// BMC is the hook for in-band BMC discovery (IPMI); nil reports no BMC.
	BMC func(ctx context.Context) (api.MachineBMC, error)
	// Wipe scrubs devices; nil uses wipe.All.
	Wipe func(ctx context.Context, devices []string) (api.WipeRecord, error)
	// Partitions is passed to disk.Apply (nil: the kernel's partition nodes).
	Partitions func(ctx context.Context, disk string, t disk.Table) (map[string]string, error)
	// Kexec loads the new kernel; nil uses kexec.Load. Exec boots it; nil uses kexec.Exec.
	Kexec func(kernel, initrd, cmdline string) error
	Exec  func() error

	HTTPClient  *http.Client
	DialOptions []grpc.DialOption
	// CallTimeout bounds one unary call (default 15 s); RetryFor bounds retries of transient
	// failures (default 2 min); WaitRetry is the pause before re-opening a broken Wait stream
	// (default 2 s); ProgressInterval is the most time between progress events (default 5 s).
	CallTimeout, RetryFor, WaitRetry, ProgressInterval time.Duration
	Log                                                *slog.Logger
}

func (c *Config) defaults() {
	if c.Target == "" {
		c.Target = "/mnt/target"
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Inventory == nil {
		c.Inventory = func(ctx context.Context) (inventory.Inventory, error) {
			return inventory.Collect(ctx, inventory.Config{LLDPDuration: c.LLDPDuration, Log: c.Log})
		}
	}
	if c.Wipe == nil {
		c.Wipe = func(ctx context.Context, devices []string) (api.WipeRecord, error) {
			return wipe.All(ctx, devices, wipe.Options{Log: c.Log, Progress: wipe.Progress(c.Log, 10*time.Second)})
		}
	}
	if c.Kexec == nil {
		c.Kexec = kexec.Load
	}
	if c.Exec == nil {
		c.Exec = kexec.Exec
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{}
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&c.CallTimeout, 15 * time.Second}, {&c.RetryFor, 2 * time.Minute}, {&c.WaitRetry, 2 * time.Second}, {&c.ProgressInterval, 5 * time.Second}} {
		if *d.v <= 0 {
			*d.v = d.def
		}
	}
}

// runner is the state of one run.
type runner struct {
	cfg    Config
	log    *slog.Logger
	client bootpb.BootClient
	id     string
	inv    inventory.Inventory
	// allocated and reinstall are what Register said; primaryWiped is set once a reinstall wiped
	// the primary disk (the old OS is gone).
	allocated, reinstall, primaryWiped bool
}

// Run provisions the machine. On an error it records a "Crashed" event and, for an allocated
// machine, a failed install report (a reinstall is aborted instead, so metal-api can boot the
// old OS) and returns the error; the caller reboots. In normal mode a successful Run does not
// return: Exec boots the new kernel.
func Run(ctx context.Context, cfg Config) error {
	cfg.defaults()
	client, conn, err := bootrpc.Dial(ctx, cfg.API, cfg.Token, cfg.DialOptions...)
	if err != nil {
		return err
	}
	defer conn.Close()
	r := &runner{cfg: cfg, log: cfg.Log, client: client}
	err = r.run(ctx)
	if err != nil && r.id != "" {
		r.crashed(context.WithoutCancel(ctx), err)
	}
	return err
}

func (r *runner) run(ctx context.Context) error {
	var err error
	if r.inv, err = r.cfg.Inventory(ctx); err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	r.id = r.inv.ID
	r.log = r.log.With("machineID", r.id)
	r.log.Info("inventory", "product", r.inv.Product, "cpus", len(r.inv.Hardware.CPUs), "memory", r.inv.Hardware.Memory,
		"disks", len(r.inv.Hardware.Disks), "nics", len(r.inv.Hardware.NICs))
	// A machine seen for the first time does not exist yet: its "Preparing" follows Register.
	preparing := r.event(ctx, api.EventPreparing, "")
	m := r.inv.Machine(r.cfg.Partition)
	if r.cfg.BMC != nil {
		if m.BMC, err = r.cfg.BMC(ctx); err != nil {
			r.log.Warn("bmc not found", "err", err)
		}
	}
	resp, err := r.register(ctx, m)
	if err != nil {
		return err
	}
	r.allocated, r.reinstall = resp.GetAllocated(), resp.GetReinstall()
	r.log.Info("registered", "sizeID", resp.GetSizeId(), "partitionID", resp.GetPartitionId(), "allocated", r.allocated, "reinstall", r.reinstall)
	if status.Code(preparing) == codes.NotFound {
		_ = r.event(ctx, api.EventPreparing, "")
	}
	_ = r.event(ctx, api.EventRegistering, "")

	if !r.allocated {
		if err := r.wipeAll(ctx); err != nil {
			return err
		}
		_ = r.event(ctx, api.EventWaiting, "")
	}
	spec, err := r.wait(ctx)
	if err != nil {
		return err
	}
	r.allocated = true
	if a := spec.Machine.Allocation; a != nil && a.Reinstall {
		r.reinstall = true
	}
	return r.install(ctx, spec)
}

// wipeAll scrubs every disk of the inventory and reports the record.
func (r *runner) wipeAll(ctx context.Context) error {
	devices := make([]string, 0, len(r.inv.Hardware.Disks))
	for _, d := range r.inv.Hardware.Disks {
		devices = append(devices, "/dev/"+d.Name)
	}
	start := time.Now()
	rec, err := r.cfg.Wipe(ctx, devices)
	if err != nil {
		return fmt.Errorf("wipe: %w", err)
	}
	r.log.Info("disks wiped", "disks", len(rec.Disks), "seconds", time.Since(start).Seconds())
	return r.reportWipe(ctx, rec)
}

// crashed tells metal-api about a failed run.
func (r *runner) crashed(ctx context.Context, cause error) {
	msg := cause.Error()
	if len(msg) > 1000 {
		msg = msg[:1000]
	}
	r.log.Error("provisioning failed", "err", cause)
	_ = r.event(ctx, api.EventCrashed, msg)
	switch {
	case r.reinstall:
		bi, err := r.abortReinstall(ctx, r.primaryWiped)
		if err != nil {
			r.log.Error("abort reinstall failed", "err", err)
		} else {
			r.log.Info("reinstall aborted", "oldOS", bi != nil)
		}
	case r.allocated:
		if err := r.report(ctx, api.InstallReport{Success: false, Message: msg}); err != nil {
			r.log.Error("failure report not sent", "err", err)
		}
	}
}

// errNoDisk is returned when the spec has no layout and the machine no disk.
var errNoDisk = errors.New("no layout in the install spec and no disk to put the default layout on")
