package lab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/metalforge/metalforge/pkg/lab/netns"
)

// Proc is a process the lab started. Start time (clock ticks since boot, /proc/<pid>/stat field
// 22) makes the PID safe to kill later: a recycled PID has another start time.
type Proc struct {
	Name      string `json:"name"`
	PID       int    `json:"pid"`
	StartTime uint64 `json:"startTime"`
	// Group is true when the process leads its own process group, which is killed as a whole
	// (ipmi_sim and the QEMU it starts).
	Group bool   `json:"group"`
	Log   string `json:"log,omitempty"`

	cmd *exec.Cmd // set when this process started it, to reap it
}

// startTime reads field 22 of /proc/<pid>/stat; ok is false when the process is gone or a zombie.
func startTime(pid int) (uint64, bool) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	s := string(raw)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state), so field 22 is f[19].
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return 0, false
	}
	t, err := strconv.ParseUint(f[19], 10, 64)
	return t, err == nil
}

// Alive reports whether the process still runs (and is the one the lab started).
func (p *Proc) Alive() bool {
	t, ok := startTime(p.PID)
	return ok && t == p.StartTime
}

// startProc starts a detached process (own session, stdin /dev/null, output to logPath), inside
// the namespace ns unless ns is empty.
func startProc(name, ns, logPath string, env []string, argv ...string) (*Proc, error) {
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, err
	}
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	defer log.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if ns != "" {
		err = netns.Start(ns, cmd)
	} else {
		err = cmd.Start()
	}
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, PID: cmd.Process.Pid, Group: true, Log: logPath, cmd: cmd}
	t, ok := startTime(p.PID)
	if !ok {
		_ = cmd.Wait()
		out, _ := os.ReadFile(logPath)
		return nil, fmt.Errorf("start %s: exited at once: %s", name, tail(string(out), 2000))
	}
	p.StartTime = t
	return p, nil
}

// stop sends SIGTERM (to the group), waits up to grace, then SIGKILLs. A process that is not the
// one the lab started (PID recycled) is left alone.
func (p *Proc) stop(grace time.Duration) error {
	if !p.Alive() {
		p.reap()
		return nil
	}
	target := p.PID
	if p.Group {
		target = -p.PID
	}
	_ = syscall.Kill(target, syscall.SIGTERM)
	if p.waitGone(grace) {
		return nil
	}
	_ = syscall.Kill(target, syscall.SIGKILL)
	if p.waitGone(5 * time.Second) {
		return nil
	}
	return fmt.Errorf("stop %s (pid %d): still running after SIGKILL", p.Name, p.PID)
}

// waitGone waits until the process has exited (and, for our own children, been reaped).
func (p *Proc) waitGone(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if !p.Alive() {
			p.reap()
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *Proc) reap() {
	if p.cmd != nil {
		_ = p.cmd.Wait()
		p.cmd = nil
	}
}

// killPIDFile kills the process whose PID is in path (QEMU's -pidfile) if its command line
// contains want; QEMU normally dies with its ipmi_sim's process group already.
func killPIDFile(path, want string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || pid <= 1 {
		return nil
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(string(cmdline), want) {
		return nil
	}
	st, _ := startTime(pid)
	p := &Proc{Name: filepath.Base(path), PID: pid, StartTime: st}
	return p.stop(5 * time.Second)
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// stopAll stops processes in reverse start order and joins the errors. metal-api gets 10s: its
// graceful stop waits up to 5s for the Wait streams of hammers whose machines just vanished.
func stopAll(procs []*Proc) error {
	var errs []error
	for i := len(procs) - 1; i >= 0; i-- {
		grace := 5 * time.Second
		if procs[i].Name == "metal-api" {
			grace = 10 * time.Second
		}
		if err := procs[i].stop(grace); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
