package fabric

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/metalforge/metalforge/switch-agent/nsvrf"
)

// Files in a lab's /run directory that let a later run clean up after a lab whose process died
// before Close (a killed test binary): the owner's PID and the PIDs of its FRR daemons.
const (
	ownerFile = "owner"
	pidsFile  = "pids"
	marker    = "metalforge-lab-fabric"
)

// claim marks the lab's directory as owned by this process.
func (f *Fabric) claim() error {
	return os.WriteFile(filepath.Join(f.root(), ownerFile), []byte(marker+" "+strconv.Itoa(os.Getpid())+"\n"), 0o644)
}

// recordPID notes a daemon's PID for Sweep.
func (f *Fabric) recordPID(pid int) error {
	fh, err := os.OpenFile(filepath.Join(f.root(), pidsFile), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer fh.Close()
	_, err = fmt.Fprintln(fh, pid)
	return err
}

// Sweep removes what labs of dead processes left behind: it looks only at /run/<name> directories
// carrying this package's owner file with a PID that no longer runs, stops the daemons recorded
// there (checking that each PID still is an FRR daemon of that lab), and deletes the lab's
// namespaces, mounts and directories. It returns the names of the labs it removed.
func Sweep() ([]string, error) {
	owners, _ := filepath.Glob("/run/*/" + ownerFile)
	var swept []string
	var errs []error
	for _, o := range owners {
		b, err := os.ReadFile(o)
		f := strings.Fields(string(b))
		if err != nil || len(f) != 2 || f[0] != marker {
			continue
		}
		pid, err := strconv.Atoi(f[1])
		if err != nil || alive(pid) {
			continue
		}
		dir := filepath.Dir(o)
		name := filepath.Base(dir)
		if b, err := os.ReadFile(filepath.Join(dir, pidsFile)); err == nil {
			for _, s := range strings.Fields(string(b)) {
				p, err := strconv.Atoi(s)
				if err == nil && isLabDaemon(p, name) {
					_ = syscall.Kill(p, syscall.SIGKILL)
				}
			}
		}
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			p := filepath.Join(dir, e.Name())
			if e.IsDir() { // a VRF directory: its namespaces, then the bind mount itself
				sub, _ := os.ReadDir(p)
				for _, s := range sub {
					errs = append(errs, nsvrf.DeleteNetns(filepath.Join(p, s.Name())))
				}
				_ = syscall.Unmount(p, syscall.MNT_DETACH)
			} else if e.Name() != ownerFile && e.Name() != pidsFile {
				errs = append(errs, nsvrf.DeleteNetns(p))
			}
		}
		nss, _ := filepath.Glob(filepath.Join("/run/netns", name+"-*"))
		for _, ns := range nss {
			errs = append(errs, nsvrf.DeleteNetns(ns))
			errs = append(errs, os.RemoveAll(filepath.Join("/run/frr", filepath.Base(ns))))
		}
		errs = append(errs, os.RemoveAll(dir))
		swept = append(swept, name)
	}
	return swept, errors.Join(errs...)
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// isLabDaemon reports whether pid is an FRR daemon of the lab name (its -N pathspace).
func isLabDaemon(pid int, name string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := strings.Split(string(b), "\x00")
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "-N" && strings.HasPrefix(args[i+1], name+"-") {
			return strings.HasPrefix(args[0], "/usr/lib/frr/")
		}
	}
	return false
}
