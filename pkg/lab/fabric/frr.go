package fabric

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/metalforge/metalforge/pkg/frr"
)

// frrDaemons are the FRR daemons of every instance.
func frrDaemons() []string { return []string{"zebra", "bgpd"} }

// instance is one FRR (zebra + bgpd) in a network namespace, started as child processes of the lab
// so that it can be stopped by PID.
type instance struct {
	name  string // network namespace name (in /run/netns) and FRR pathspace
	tools frr.Tools
	procs []*exec.Cmd
	exits []chan struct{}
	logs  []*os.File
}

// startFRR starts zebra and bgpd in the named network namespace. With vrfDir, they run in a mount
// namespace of their own whose /run/netns is vrfDir (recursively bound; vrfDir is a shared mount,
// so namespaces created there later appear too), and zebra uses network namespaces as VRFs (-n).
func startFRR(ctx context.Context, name, vrfDir, workDir string, record func(pid int) error) (*instance, error) {
	confDir := filepath.Join(workDir, "frr")
	runDir := filepath.Join("/run/frr", name)
	for _, d := range []string{filepath.Join(confDir, name), filepath.Join(workDir, "log"), runDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("start frr %s: %w", name, err)
		}
	}
	if u, err := user.Lookup("frr"); err == nil {
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(runDir, uid, gid); err != nil {
			return nil, fmt.Errorf("start frr %s: %w", name, err)
		}
	}
	if err := os.WriteFile(filepath.Join(confDir, name, "vtysh.conf"), []byte("service integrated-vtysh-config\n"), 0o644); err != nil {
		return nil, fmt.Errorf("start frr %s: %w", name, err)
	}
	in := &instance{name: name, tools: frr.Tools{Pathspace: name, ConfDir: confDir, RunDir: workDir, Timeout: 20 * time.Second}}
	for _, d := range frrDaemons() {
		args := []string{"netns", "exec", name}
		bin := "/usr/lib/frr/" + d
		dargs := []string{"-N", name, "-P", "0", "-f", "/dev/null", "--log", "stdout"}
		if vrfDir != "" {
			if d == "zebra" {
				dargs = append(dargs, "-n")
			}
			args = append(args, "unshare", "-m", "--propagation", "slave", "sh", "-c",
				`mount --rbind "$0" /run/netns && shift && exec "$@"`, vrfDir, "--", bin)
		} else {
			args = append(args, bin)
		}
		args = append(args, dargs...)
		log, err := os.Create(filepath.Join(workDir, "log", name+"-"+d+".log"))
		if err != nil {
			in.stop()
			return nil, fmt.Errorf("start frr %s: %w", name, err)
		}
		in.logs = append(in.logs, log)
		cmd := exec.Command("ip", args...)
		cmd.Stdout, cmd.Stderr = log, log
		cmd.Dir = workDir // FRR 8.4's zebra may crash on shutdown with VRFs: keep any core out of the repo
		// Die with the lab if it is killed before it can tear down.
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
		if err := cmd.Start(); err != nil {
			in.stop()
			return nil, fmt.Errorf("start frr %s %s: %w", name, d, err)
		}
		if err := record(cmd.Process.Pid); err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			in.stop()
			return nil, fmt.Errorf("start frr %s %s: %w", name, d, err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		in.procs = append(in.procs, cmd)
		in.exits = append(in.exits, exited)
		if d == "zebra" {
			// bgpd that finds no zebra socket retries only after 10s.
			if err := waitFile(ctx, filepath.Join(runDir, "zserv.api"), exited, 10*time.Second); err != nil {
				in.stop()
				return nil, fmt.Errorf("start frr %s: zebra: %w", name, err)
			}
		}
	}
	if err := in.waitReady(ctx, 15*time.Second); err != nil {
		in.stop()
		return nil, err
	}
	return in, nil
}

// waitFile waits until path exists, the process has exited, or limit passes.
func waitFile(ctx context.Context, path string, exited <-chan struct{}, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		select {
		case <-exited:
			return errors.New("exited during start-up")
		case <-ctx.Done():
			return fmt.Errorf("no %s: %w", path, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// waitReady waits until vtysh reaches both daemons.
func (in *instance) waitReady(ctx context.Context, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var last error
	for {
		for i, ex := range in.exits {
			select {
			case <-ex:
				return fmt.Errorf("frr %s: %s exited during start-up (see log/%s-%s.log)", in.name, frrDaemons()[i], in.name, frrDaemons()[i])
			default:
			}
		}
		var out []byte
		if out, last = in.tools.Show(ctx, "show daemons"); last == nil {
			have := strings.Fields(string(out))
			if !slices.ContainsFunc(frrDaemons(), func(d string) bool { return !slices.Contains(have, d) }) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("frr %s not ready: %w (last: %v)", in.name, ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stop stops the daemons (SIGTERM, SIGKILL after 5s) and removes the run directory.
func (in *instance) stop() error {
	var errs []error
	for i := len(in.procs) - 1; i >= 0; i-- {
		p, exited := in.procs[i], in.exits[i]
		select {
		case <-exited:
			continue
		default:
		}
		_ = p.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = p.Process.Kill()
			select {
			case <-exited:
			case <-time.After(5 * time.Second):
				errs = append(errs, fmt.Errorf("frr %s pid %d does not exit", in.name, p.Process.Pid))
			}
		}
	}
	for _, l := range in.logs {
		l.Close()
	}
	if err := os.RemoveAll(filepath.Join("/run/frr", in.name)); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
