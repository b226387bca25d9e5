// Command metal-osinit is /init of the initrd of metalforge's small machine image: it loads the
// root device's modules, mounts root=UUID=... and switches root into the image's /sbin/init. On
// failure it logs the reason on the console and reboots after a pause, so the machine goes back to
// PXE and metal-api sees the crash loop.
package main

import (
	"context"
	"log/slog"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/metalforge/metalforge/pkg/phonehome/osinit"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("prog", "metal-osinit")
	if os.Getpid() != 1 {
		log.Error("metal-osinit must run as PID 1 of an initramfs")
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
