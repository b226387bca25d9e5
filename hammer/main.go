// Command hammer is PID 1 of metalforge's install initramfs: it prepares the system (pseudo file
// systems, kernel modules, DHCP), then runs provision.Run, which registers the machine with
// metal-api's boot service, wipes, waits, installs and kexecs into the new OS. On failure it
// reboots after a delay. The same binary runs as an ordinary process for tests and development
// (`hammer --once --api ... --token ...`).
//
// Kernel command line (PID 1): mf.api=<host:port> mf.token=<boot token> mf.partition=<id>
// [mf.debug]. The installed kernel gets console= and mf.api= from it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/metalforge/metalforge/hammer/inventory"
	"github.com/metalforge/metalforge/hammer/kmod"
	"github.com/metalforge/metalforge/hammer/netup"
	"github.com/metalforge/metalforge/hammer/provision"
	"github.com/metalforge/metalforge/hammer/sysinit"
	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/bmc/inband"
)

// rebootDelay is how long a failed PID 1 waits before rebooting, so the console can be read.
const rebootDelay = 30 * time.Second

func main() {
	if os.Getpid() == 1 {
		pid1() // never returns
	}
	os.Exit(command(os.Args[1:]))
}

// command is the non-PID-1 mode.
func command(args []string) int {
	fs := flag.NewFlagSet("hammer", flag.ContinueOnError)
	var cfg provision.Config
	var debug bool
	var root string
	fs.StringVar(&cfg.API, "api", "", "boot service address host:port (mf.api)")
	fs.StringVar(&cfg.Token, "token", os.Getenv("MF_TOKEN"), "boot token (mf.token; default $MF_TOKEN)")
	fs.StringVar(&cfg.Partition, "partition", "", "partition ID (mf.partition)")
	fs.StringVar(&cfg.Target, "target", "/mnt/target", "where the new root file system is mounted")
	fs.BoolVar(&cfg.Once, "once", false, "do not kexec: return after the install report")
	fs.DurationVar(&cfg.LLDPDuration, "lldp", 0, "how long to listen for LLDP on each NIC")
	fs.StringVar(&root, "inventory-root", "/", "read /proc and /sys below this directory")
	fs.BoolVar(&debug, "debug", false, "debug logging")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log := logger(debug)
	if cfg.API == "" || cfg.Token == "" {
		log.Error("api and token are required")
		return 2
	}
	cfg.Log = log
	cfg.KernelArgs = []string{"console=ttyS0", "mf.api=" + cfg.API}
	if root != "/" {
		cfg.Inventory = func(ctx context.Context) (inventory.Inventory, error) {
			return inventory.Collect(ctx, inventory.Config{Root: root, LLDPDuration: cfg.LLDPDuration, Log: log})
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := provision.Run(ctx, cfg); err != nil {
		log.Error("hammer failed", "err", err)
		return 1
	}
	return 0
}

// pid1 runs the hammer as init and reboots when it ends for any reason: PID 1 must not exit.
func pid1() {
	log := logger(false)
	defer func() {
		if p := recover(); p != nil {
			log.Error("hammer panicked", "panic", fmt.Sprint(p))
		}
		for {
			log.Info("rebooting", "delaySeconds", rebootDelay.Seconds())
			if err := sysinit.Reboot(rebootDelay); err != nil {
				log.Error("reboot failed", "err", err)
			}
		}
	}()
	if err := initAndRun(&log); err != nil {
		log.Error("hammer failed", "err", err)
	}
}

func initAndRun(log **slog.Logger) error {
	if err := sysinit.Mount(); err != nil {
		return err
	}
	params, err := sysinit.Cmdline("")
	if err != nil {
		return err
	}
	_, debug := params["mf.debug"]
	*log = logger(debug)
	cfg, err := configFrom(params)
	if err != nil {
		return err
	}
	cfg.Log = *log
	start := time.Now()
	// ext4 needs crc32c through the crypto API, a soft dependency modules.dep does not list.
	loaded, err := kmod.LoadAll(kmod.Config{First: []string{"crc32c_generic", "crc32c_intel"}, Log: *log})
	if err != nil {
		(*log).Warn("some modules did not load", "err", err)
	}
	(*log).Info("modules", "loaded", len(loaded), "seconds", time.Since(start).Seconds())
	ctx := context.Background()
	leases, err := netup.Up(ctx, netup.Config{ResolvConf: "/etc/resolv.conf", Log: *log})
	if err != nil {
		return err
	}
	(*log).Info("network up", "leases", len(leases), "seconds", time.Since(start).Seconds())
	cfg.LLDPDuration = 5 * time.Second
	cfg.BMC = inbandBMC
	return provision.Run(ctx, cfg)
}

// inbandBMC reads the machine's BMC through the kernel's IPMI device and creates (or resets) the
// user metal-api's BMC agent logs in with. ipmi_si probes the interface after its module loaded, so
// the device may take a moment to appear; a machine without a BMC registers none.
func inbandBMC(ctx context.Context) (api.MachineBMC, error) {
	var dev *inband.Device
	var err error
	for wait := time.Now().Add(5 * time.Second); ; {
		if dev, err = inband.OpenDevice(); err == nil || time.Now().After(wait) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err != nil {
		return api.MachineBMC{}, err
	}
	defer dev.Close()
	return inband.New(dev).Provision(ctx, inband.ProvisionConfig{User: "metal"})
}

// configFrom maps the kernel command line onto a provision.Config.
func configFrom(params map[string]string) (provision.Config, error) {
	cfg := provision.Config{API: params["mf.api"], Token: params["mf.token"], Partition: params["mf.partition"]}
	if cfg.API == "" || cfg.Token == "" {
		return cfg, errors.New("kernel command line lacks mf.api= or mf.token=")
	}
	if c, ok := params["console"]; ok {
		cfg.KernelArgs = append(cfg.KernelArgs, "console="+c)
	} else {
		cfg.KernelArgs = append(cfg.KernelArgs, "console=ttyS0")
	}
	cfg.KernelArgs = append(cfg.KernelArgs, "mf.api="+cfg.API)
	if strings.ContainsAny(cfg.API, " \t") {
		return cfg, fmt.Errorf("mf.api=%q contains blanks", cfg.API)
	}
	return cfg, nil
}

func logger(debug bool) *slog.Logger {
	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}
