// Command guestinit is PID 1 of the QEMU guest in pkg/bmc/inband's integration test: it mounts
// /proc, /sys and /dev, loads the IPMI modules from /modules, provisions the BMC in-band through
// /dev/ipmi0 with package inband, prints the result on the console between markers, and powers
// the machine off.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/metalforge/metalforge/pkg/bmc/inband"
)

// result is what the test reads from the console.
type result struct {
	DeviceID inband.DeviceID `json:"deviceID"`
	Channel  uint8           `json:"channel"`
	BMC      any             `json:"bmc"`
	Error    string          `json:"error,omitempty"`
}

func main() {
	r := run()
	raw, _ := json.Marshal(r)
	fmt.Printf("\nINBAND-RESULT %s\n", raw)
	unix.Sync()
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}

func run() result {
	for _, m := range []struct{ src, dst, fs string }{{"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"}, {"devtmpfs", "/dev", "devtmpfs"}} {
		_ = os.MkdirAll(m.dst, 0o755)
		if err := unix.Mount(m.src, m.dst, m.fs, 0, ""); err != nil && err != unix.EBUSY {
			return result{Error: fmt.Sprintf("mount %s: %v", m.dst, err)}
		}
	}
	for _, mod := range []string{"ipmi_msghandler", "ipmi_devintf", "ipmi_si"} {
		f, err := os.Open("/modules/" + mod + ".ko")
		if err != nil {
			return result{Error: err.Error()}
		}
		err = unix.FinitModule(int(f.Fd()), "", 0)
		f.Close()
		if err != nil && err != unix.EEXIST {
			return result{Error: fmt.Sprintf("load %s: %v", mod, err)}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var dev *inband.Device
	for {
		d, err := inband.OpenDevice()
		if err == nil {
			dev = d
			break
		}
		if ctx.Err() != nil {
			return result{Error: err.Error()}
		}
		time.Sleep(100 * time.Millisecond)
	}
	defer dev.Close()
	c := inband.New(dev)
	var r result
	var err error
	if r.DeviceID, err = c.DeviceID(ctx); err != nil {
		return result{Error: err.Error()}
	}
	if r.Channel, err = c.LANChannel(ctx); err != nil {
		return result{Error: err.Error()}
	}
	b, err := c.Provision(ctx, inband.ProvisionConfig{User: "metal"})
	if err != nil {
		r.Error = err.Error()
		return r
	}
	r.BMC = b
	return r
}
