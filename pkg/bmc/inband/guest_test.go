package inband_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/bmc"
	"github.com/metalforge/metalforge/pkg/bmc/bmctest"
	"github.com/metalforge/metalforge/pkg/bmc/inband"
	"github.com/metalforge/metalforge/pkg/bmc/ipmisim"
	"github.com/metalforge/metalforge/pkg/bmc/vendor"
	"github.com/metalforge/metalforge/pkg/lab/netns"
)

// cpioWriter writes a "newc" cpio archive, the initramfs format.
type cpioWriter struct {
	buf bytes.Buffer
	ino int
}

func (w *cpioWriter) add(name string, mode uint32, rdevMajor, rdevMinor int, data []byte) {
	w.ino++
	fmt.Fprintf(&w.buf, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		w.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdevMajor, rdevMinor, len(name)+1, 0)
	w.buf.WriteString(name + "\x00")
	w.pad()
	w.buf.Write(data)
	w.pad()
}

func (w *cpioWriter) pad() {
	for w.buf.Len()%4 != 0 {
		w.buf.WriteByte(0)
	}
}

func (w *cpioWriter) bytes() []byte {
	w.add("TRAILER!!!", 0, 0, 0, nil)
	return w.buf.Bytes()
}

// kernel finds a Debian kernel package (the initramfs build's cache, or our own, else apt-get
// download) and extracts vmlinuz and the IPMI modules; it returns the directory.
func kernel(t *testing.T) string {
	t.Helper()
	cache := os.Getenv("METALFORGE_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "metalforge")
	}
	own := filepath.Join(cache, "inband-guest")
	if err := os.MkdirAll(own, 0o755); err != nil {
		t.Fatal(err)
	}
	var debs []string
	for _, g := range []string{filepath.Join(cache, "initramfs", "debs", "linux-image-*-amd64_*.deb"), filepath.Join(own, "linux-image-*-amd64_*.deb")} {
		m, _ := filepath.Glob(g)
		debs = append(debs, m...)
	}
	if len(debs) == 0 {
		out, err := exec.Command("apt-cache", "depends", "linux-image-amd64").Output()
		if err != nil {
			t.Fatalf("apt-cache depends linux-image-amd64: %v", err)
		}
		pkg := regexp.MustCompile(`Depends: (linux-image-\S+-amd64)`).FindSubmatch(out)
		if pkg == nil {
			t.Fatalf("no kernel package in %s", out)
		}
		cmd := exec.Command("apt-get", "download", string(pkg[1]))
		cmd.Dir = own
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("apt-get download %s: %v\n%s", pkg[1], err, out)
		}
		debs, _ = filepath.Glob(filepath.Join(own, "linux-image-*-amd64_*.deb"))
	}
	deb := debs[0]
	dir := filepath.Join(own, strings.TrimSuffix(filepath.Base(deb), ".deb"))
	if _, err := os.Stat(filepath.Join(dir, "done")); err == nil {
		return dir
	}
	x := filepath.Join(dir, "x")
	if err := os.MkdirAll(x, 0o755); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf("dpkg-deb --fsys-tarfile %q | tar -x -C %q --wildcards './boot/vmlinuz-*' './lib/modules/*/kernel/drivers/char/ipmi/ipmi_*.ko'", deb, x)
	if out, err := exec.Command("sh", "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("extract %s: %v\n%s", deb, err, out)
	}
	vmlinuz, _ := filepath.Glob(filepath.Join(x, "boot", "vmlinuz-*"))
	mods, _ := filepath.Glob(filepath.Join(x, "lib", "modules", "*", "kernel", "drivers", "char", "ipmi", "ipmi_*.ko"))
	if len(vmlinuz) != 1 || len(mods) == 0 {
		t.Fatalf("%s has no vmlinuz or ipmi modules", deb)
	}
	if err := os.Rename(vmlinuz[0], filepath.Join(dir, "vmlinuz")); err != nil {
		t.Fatal(err)
	}
	for _, m := range mods {
		if err := os.Rename(m, filepath.Join(dir, filepath.Base(m))); err != nil {
			t.Fatal(err)
		}
	}
	_ = os.RemoveAll(x)
	if err := os.WriteFile(filepath.Join(dir, "done"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// initrd builds the guest's initramfs: guestinit as /init, the IPMI modules, /dev/console.
func initrd(t *testing.T, kdir string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "init")
	build := exec.Command("go", "build", "-o", bin, "./internal/guestinit")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build guestinit: %v\n%s", err, out)
	}
	var w cpioWriter
	initBin, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"dev", "proc", "sys", "modules"} {
		w.add(d, 0o040755, 0, 0, nil)
	}
	w.add("dev/console", 0o020600, 5, 1, nil)
	w.add("init", 0o100755, 0, 0, initBin)
	for _, m := range []string{"ipmi_msghandler", "ipmi_devintf", "ipmi_si"} {
		raw, err := os.ReadFile(filepath.Join(kdir, m+".ko"))
		if err != nil {
			t.Fatal(err)
		}
		w.add("modules/"+m+".ko", 0o100644, 0, 0, raw)
	}
	path := filepath.Join(t.TempDir(), "initrd.cpio")
	if err := os.WriteFile(path, w.bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestInBandInQEMUGuest boots a Debian kernel under QEMU with its KCS interface wired to an
// ipmi_sim, provisions the BMC in-band from inside the guest through /dev/ipmi0, and logs in
// over the LAN with the user and password the guest created.
func TestInBandInQEMUGuest(t *testing.T) {
	bmctest.RequireRoot(t, "ipmi_sim", "qemu-system-x86_64", "dpkg-deb", "go")
	kdir := kernel(t)
	rd := initrd(t, kdir)
	ns := bmctest.TempNetNS(t, "mfib")
	dir := t.TempDir()
	consoleLog := filepath.Join(dir, "console.log")
	qemu := []string{"qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-machine", "q35", "-m", "512",
		"-nodefaults", "-vga", "none", "-nographic", "-no-reboot",
		"-chardev", "file,id=ser0,path=" + consoleLog, "-serial", "chardev:ser0",
		"-kernel", filepath.Join(kdir, "vmlinuz"), "-initrd", rd, "-append", "console=ttyS0 panic=-1 quiet",
		"-chardev", "socket,id=ipmi0,host=127.0.0.1,port=9002,reconnect=10",
		"-device", "ipmi-bmc-extern,id=bmc0,chardev=ipmi0", "-device", "isa-ipmi-kcs,bmc=bmc0"}
	start := filepath.Join(dir, "start.sh")
	quoted := make([]string, len(qemu))
	for i, a := range qemu {
		quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	if err := os.WriteFile(start, []byte("#!/bin/sh\nexec "+strings.Join(quoted, " ")+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	lanctl := filepath.Join(dir, "lancontrol.sh")
	if err := ipmisim.WriteLANControl(lanctl, ipmisim.LANSettings{IP: "127.0.0.1", Netmask: "255.0.0.0", MAC: "02:00:00:00:00:05"}); err != nil {
		t.Fatal(err)
	}
	files, err := ipmisim.Write(filepath.Join(dir, "bmc"), ipmisim.Config{Name: "inband", Addr: "127.0.0.1", User: "admin", Password: "admin-pw",
		SerialAddr: "127.0.0.1", SerialPort: 9002, StartCmd: start, LANConfigProgram: lanctl, PoweroffWait: 2, KillWait: 2})
	if err != nil {
		t.Fatal(err)
	}
	log, err := os.Create(filepath.Join(dir, "ipmi_sim.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	sim := ipmisim.Command(files, log)
	sim.SysProcAttr = bmctest.GroupAttr()
	if err := netns.Start(ns, sim); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bmctest.KillGroup(sim) })

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	admin, err := bmc.Open(bmc.Config{Address: "127.0.0.1", User: "admin", Password: "admin-pw", Vendor: vendor.OpenIPMI, Dial: netns.Dialer(ns)})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := admin.PowerState(ctx); err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("ipmi_sim does not answer")
		}
		time.Sleep(100 * time.Millisecond)
	}
	begin := time.Now()
	if err := admin.PowerOn(ctx); err != nil {
		t.Fatal(err)
	}
	var line string
	for line == "" {
		raw, _ := os.ReadFile(consoleLog)
		if i := bytes.Index(raw, []byte("INBAND-RESULT ")); i >= 0 {
			if j := bytes.IndexByte(raw[i:], '\n'); j > 0 {
				line = string(bytes.TrimSpace(raw[i+len("INBAND-RESULT ") : i+j]))
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("no result from the guest; console:\n%s", raw)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("guest result after %v: %s", time.Since(begin).Round(time.Millisecond), line)
	var r struct {
		DeviceID inband.DeviceID
		Channel  uint8
		BMC      api.MachineBMC
		Error    string
	}
	if err := json.Unmarshal([]byte(line), &r); err != nil {
		t.Fatal(err)
	}
	if r.Error != "" {
		t.Fatalf("guest: %s", r.Error)
	}
	if r.DeviceID.ManufacturerID != 4753 || r.Channel != 1 {
		t.Errorf("device id %+v, channel %d", r.DeviceID, r.Channel)
	}
	if r.BMC.Address != "127.0.0.1" || r.BMC.MAC != "02:00:00:00:00:05" || r.BMC.User != "metal" || r.BMC.Vendor != vendor.OpenIPMI || len(r.BMC.Password) != 16 {
		t.Errorf("provisioned bmc %+v", r.BMC)
	}
	// The user the guest made works over the LAN.
	metal, err := bmc.Open(bmc.Config{Address: r.BMC.Address, User: r.BMC.User, Password: r.BMC.Password, Vendor: r.BMC.Vendor, Dial: netns.Dialer(ns)})
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 60*time.Second)
	defer wcancel()
	if err := bmc.WaitPowerState(wctx, metal, bmc.PowerStateOff, time.Second); err != nil {
		t.Errorf("the provisioned user cannot read the power state (the guest powered itself off): %v", err)
	}
}
