package bmctest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/metalforge/metalforge/pkg/bmc"
	"github.com/metalforge/metalforge/pkg/bmc/ipmisim"
	"github.com/metalforge/metalforge/pkg/bmc/vendor"
	"github.com/metalforge/metalforge/pkg/lab/netns"
)

// IPMISim is an ipmi_sim listening on 127.0.0.1:623 inside a network namespace of its own. Its
// "machine" is a shell that sleeps: powered on while that process lives.
type IPMISim struct {
	NS       string
	Addr     string
	User     string
	Password string
	Dir      string
	cmd      *exec.Cmd
}

// RequireRoot skips the test unless it runs as root (network namespaces), and fails it when a
// needed program is missing (CI installs them with hack/deps.sh).
func RequireRoot(t testing.TB, programs ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
	for _, p := range programs {
		if _, err := exec.LookPath(p); err != nil {
			t.Fatalf("%s is not installed: run hack/deps.sh qemu-system-x86 ipxe-qemu qemu-utils openipmi ipmitool kmod cpio", p)
		}
	}
}

// TempNetNS creates a network namespace (lo up) that is deleted when the test ends.
func TempNetNS(t testing.TB, prefix string) string {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := prefix + hex.EncodeToString(b)
	if err := netns.Create(name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := netns.Delete(name); err != nil {
			t.Errorf("delete netns: %v", err)
		}
	})
	return name
}

// StartIPMISim starts ipmi_sim in a new namespace and waits until it answers.
func StartIPMISim(t testing.TB) *IPMISim {
	t.Helper()
	RequireRoot(t, "ipmi_sim")
	s := &IPMISim{NS: TempNetNS(t, "mfbmc"), Addr: "127.0.0.1:623", User: "admin", Password: "s3cret-pw", Dir: t.TempDir()}
	machine := filepath.Join(s.Dir, "machine.sh")
	script := "#!/bin/sh\necho $$ > " + filepath.Join(s.Dir, "machine.pid") + "\nexec sleep 3600\n"
	if err := os.WriteFile(machine, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	files, err := ipmisim.Write(filepath.Join(s.Dir, "bmc"), ipmisim.Config{
		Name: "test", Addr: "127.0.0.1", User: s.User, Password: s.Password,
		SerialAddr: "127.0.0.1", SerialPort: 9002, StartCmd: machine, PoweroffWait: 1, KillWait: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	log, err := os.Create(filepath.Join(s.Dir, "ipmi_sim.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	s.cmd = ipmisim.Command(files, log)
	s.cmd.SysProcAttr = GroupAttr()
	if err := netns.Start(s.NS, s.cmd); err != nil {
		t.Fatalf("start ipmi_sim: %v", err)
	}
	t.Cleanup(s.stop)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := bmc.Open(s.Config(vendor.OpenIPMI))
	if err != nil {
		t.Fatal(err)
	}
	for {
		_, err := b.PowerState(ctx)
		if err == nil {
			return s
		}
		if ctx.Err() != nil {
			out, _ := os.ReadFile(log.Name())
			t.Fatalf("ipmi_sim does not answer: %v\n%s", err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Config returns the bmc.Config to reach the simulator from the test process.
func (s *IPMISim) Config(vendorName string) bmc.Config {
	return bmc.Config{Address: s.Addr, User: s.User, Password: s.Password, Vendor: vendorName,
		Timeout: 2 * time.Second, Dial: netns.Dialer(s.NS)}
}

// MachinePID returns the PID of the running machine process, or 0 when it is off.
func (s *IPMISim) MachinePID() int {
	raw, err := os.ReadFile(filepath.Join(s.Dir, "machine.pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || pid <= 0 {
		return 0
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// A zombie (state Z) is already off; ipmi_sim reaps it on its next SIGCHLD pass.
	if i := strings.LastIndexByte(string(stat), ')'); i > 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
		return 0
	}
	return pid
}

func (s *IPMISim) stop() {
	if s.cmd.Process == nil {
		return
	}
	if pid := s.MachinePID(); pid > 0 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	KillGroup(s.cmd)
}

// GroupAttr starts a process as the leader of its own process group, so KillGroup also reaches
// what it starts (ipmi_sim's machine).
func GroupAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// KillGroup kills the process group of a started command and reaps the leader (bounded).
func KillGroup(cmd *exec.Cmd) {
	if cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
}
