// Command metal-osinit is /init of the initrd of metalforge's small machine image: it loads the
// root device's modules, mounts root=UUID=... and switches root into the image's /sbin/init. On
// failure it logs the reason on the console and reboots after a pause, so the machine goes back to
// PXE and metal-api sees the crash loop.
//
// `metal-osinit firewall` is the first-boot step of the firewall image instead (a oneshot unit
// before systemd-networkd, frr and firewall-controller): it writes /etc/metalforge/firewall.json,
// /etc/frr/frr.conf and the networkd files of the VRF devices from the allocation the hammer
// wrote; see osinit.SetupFirewall.
package main

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/metalforge/metalforge/pkg/phonehome/osinit"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("prog", "metal-osinit")
	if len(os.Args) > 1 && os.Args[1] == "firewall" {
		os.Exit(firewall(log, os.Args[2:]))
	}
	if os.Getpid() != 1 {
		log.Error("metal-osinit must run as PID 1 of an initramfs (or as: metal-osinit firewall)")
		os.Exit(2)
	}
	err := osinit.Run(context.Background(), osinit.Config{}, log)
	log.Error("boot failed, rebooting in 10s", "err", err)
	time.Sleep(10 * time.Second)
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART); err != nil {
		log.Error("reboot failed", "err", err)
	}
	os.Exit(1)
}

// firewall runs the firewall's first-boot configuration and returns the exit code.
func firewall(log *slog.Logger, args []string) int {
	fs := flag.NewFlagSet("metal-osinit firewall", flag.ContinueOnError)
	var c osinit.FirewallSetup
	fs.StringVar(&c.Root, "root", "/", "root of the installed OS")
	fs.StringVar(&c.SysClassNet, "sys-class-net", "/sys/class/net", "where the network interfaces are listed")
	fs.StringVar(&c.Kmsg, "kmsg", "/dev/kmsg", `kernel log for the marker line ("-": none)`)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := osinit.SetupFirewall(c, log); err != nil {
		log.Error("firewall setup failed", "err", err)
		return 1
	}
	return 0
}
