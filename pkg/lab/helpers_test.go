package lab

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestHelpers(t *testing.T) {
	first, last := rangeOf(netip.MustParsePrefix("10.255.0.1/24"))
	if first.String() != "10.255.0.100" || last.String() != "10.255.0.199" {
		t.Errorf("range %s-%s", first, last)
	}
	if m := maskOf(netip.MustParsePrefix("10.255.0.1/24")); m != "255.255.255.0" {
		t.Errorf("mask %s", m)
	}
	for in, want := range map[string]string{"/a/b.log": "/a/b.log", "a b": "'a b'", "it's": `'it'\''s'`, "": "''"} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
	if got := stripANSI("\x1b[0;1miPXE\x1b[0m ok\r"); got != "iPXE ok" {
		t.Errorf("stripANSI = %q", got)
	}
}

func TestQEMUArgs(t *testing.T) {
	c := Config{Dir: "/lab"}
	c.Defaults()
	m := machineFor(c.Dir, 3)
	args := strings.Join(qemuArgs(&c, m), " ")
	for _, want := range []string{"-accel tcg", "-cpu max", "-machine q35", "-m 1024", "-nodefaults", "-vga none", "-nographic",
		"path=/lab/vm3/console.log", "ifname=tap3", "mac=52:54:00:4d:46:03", "discard=unmap,detect-zeroes=unmap",
		"-boot order=nc", "uuid=4d460000-0000-4000-8000-000000000003",
		"socket,id=ipmi0,host=127.0.1.3,port=9002,reconnect=10", "ipmi-bmc-extern,id=bmc0,chardev=ipmi0", "isa-ipmi-kcs,bmc=bmc0"} {
		if !strings.Contains(args, want) {
			t.Errorf("qemu args lack %q:\n%s", want, args)
		}
	}
	if strings.Contains(args, "-no-reboot") {
		t.Error("-no-reboot breaks BMC reset")
	}
}

func TestSeedDocs(t *testing.T) {
	c := Config{}
	c.Defaults()
	docs := seedDocs(&c, Artifacts{Kernel: "vmlinuz", Initrd: "hammer-initrd.gz", Images: []imageInfo{{Name: "small", OS: "debian",
		OSVersion: "12-small", Features: []string{"machine"}, SHA256: strings.Repeat("ab", 32)}}})
	var kinds []string
	for _, d := range docs {
		kinds = append(kinds, d.kind+"/"+d.id)
	}
	for _, want := range []string{"partition/lab", "size/v1-small-x86", "image/small", "filesystemlayout/default", "network/tenant-super",
		"network/underlay", "network/internet", "project/demo"} {
		if !slices.Contains(kinds, want) {
			t.Errorf("seed lacks %s: %v", want, kinds)
		}
	}
	if !strings.Contains(strings.Join(kinds, " "), "partition/lab size/") {
		t.Errorf("the partition must come first: %v", kinds)
	}
}

func TestRemoveFiles(t *testing.T) {
	for _, tt := range []struct {
		keep, keepLogs bool
		want           []string
	}{
		{false, false, []string{"bin"}},
		{true, false, []string{"admin-token", "api", "bin", "logs", "vm1", "vm1/console.log", "vm1/disk.qcow2", "vm1/ipmi_sim.log"}},
		{false, true, []string{"bin", "logs", "vm1", "vm1/console.log", "vm1/ipmi_sim.log"}},
	} {
		dir := t.TempDir()
		for _, f := range []string{"state.json", "admin-token", "api/db", "bin/metal-api", "logs/x.log", "assets/vmlinuz",
			"vm1/disk.qcow2", "vm1/console.log", "vm1/ipmi_sim.log", "vm1/start.sh", "vm1/bmc/lan.conf", "other/keep"} {
			_ = os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755)
			_ = os.WriteFile(filepath.Join(dir, f), nil, 0o644)
		}
		if err := removeFiles(dir, tt.keep, tt.keepLogs); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, top := range []string{"admin-token", "api", "bin", "logs", "vm1", "vm1/console.log", "vm1/disk.qcow2", "vm1/ipmi_sim.log",
			"vm1/start.sh", "vm1/bmc", "assets", "state.json"} {
			if _, err := os.Stat(filepath.Join(dir, top)); err == nil {
				got = append(got, top)
			}
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("keep=%v keepLogs=%v: left %v, want %v", tt.keep, tt.keepLogs, got, tt.want)
		}
		if _, err := os.Stat(filepath.Join(dir, "other", "keep")); err != nil {
			t.Errorf("removed a file the lab did not write: %v", err)
		}
	}
}

func TestForward(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- serveForward(ctx, l, (&net.Dialer{}).DialContext, echo.Addr().String(), slog.New(slog.DiscardHandler))
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "ping" {
		t.Errorf("forwarded echo = %q, %v", got, err)
	}
	c.Close()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("forward: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("forward did not stop with its context")
	}
}
