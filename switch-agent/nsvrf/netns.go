package nsvrf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// space is an open network namespace with a netlink handle in it.
type space struct {
	name string // VRF name, or "" for the switch's namespace and pxeSpace for the PXE namespace
	ns   netns.NsHandle
	nl   *netlink.Handle
}

func (s *space) close() {
	if s.nl != nil {
		s.nl.Close()
	}
	s.ns.Close()
}

// openSpace opens the namespace at path ("" is the caller's).
func openSpace(name, path string) (*space, error) {
	var ns netns.NsHandle
	var err error
	if path == "" {
		ns, err = netns.Get()
	} else {
		ns, err = netns.GetFromPath(path)
	}
	if err != nil {
		return nil, fmt.Errorf("open netns %q: %w", path, err)
	}
	nl, err := netlink.NewHandleAt(ns)
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("netlink in netns %q: %w", path, err)
	}
	return &space{name: name, ns: ns, nl: nl}, nil
}

// inNetns runs fn on a thread that is in ns. The thread is thrown away afterwards (the goroutine
// exits locked), so a failed switch back can never leak a namespace into other goroutines.
func inNetns(ns netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("enter netns: %w", err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// CreateNetns creates a persistent network namespace at path (like `ip netns add`, but in any
// directory): a new namespace bind-mounted onto an empty file. If dir is a shared mount, the
// mount propagates to its slaves, e.g. to FRR's /run/netns.
func CreateNetns(path string) error {
	ns, err := newNetns()
	if err != nil {
		return fmt.Errorf("create netns %s: %w", path, err)
	}
	defer ns.Close()
	return publish(ns, path)
}

// newNetns creates an anonymous network namespace, alive as long as the handle is open.
func newNetns() (netns.NsHandle, error) {
	type result struct {
		ns  netns.NsHandle
		err error
	}
	rc := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends in the new namespace and is discarded
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			rc <- result{err: err}
			return
		}
		ns, err := netns.Get()
		rc <- result{ns, err}
	}()
	r := <-rc
	return r.ns, r.err
}

// publish bind-mounts a namespace onto a new file at path.
func publish(ns netns.NsHandle, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("publish netns %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		return fmt.Errorf("publish netns %s: %w", path, err)
	}
	f.Close()
	if err := unix.Mount(fmt.Sprintf("/proc/self/fd/%d", int(ns)), path, "none", unix.MS_BIND, ""); err != nil {
		os.Remove(path)
		return fmt.Errorf("publish netns %s: %w", path, err)
	}
	return nil
}

// DeleteNetns unmounts (lazily: FRR may hold it open) and removes a namespace created by
// CreateNetns. A missing file is not an error.
func DeleteNetns(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("delete netns %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete netns %s: %w", path, err)
	}
	return nil
}

// sysctls sets sysctl values (path below /proc/sys/ → value) inside ns.
func sysctls(ns netns.NsHandle, values map[string]string) error {
	return inNetns(ns, func() error {
		for k, v := range values {
			if err := os.WriteFile(filepath.Join("/proc/sys", k), []byte(v), 0o644); err != nil {
				return fmt.Errorf("sysctl %s: %w", k, err)
			}
		}
		return nil
	})
}

// routing are the sysctls of a namespace that routes.
func routing() map[string]string {
	return map[string]string{
		"net/ipv4/ip_forward":          "1",
		"net/ipv6/conf/all/forwarding": "1",
		"net/ipv4/conf/all/rp_filter":  "0",
	}
}

// Do runs fn on an OS thread inside the network namespace at path. Sockets opened by fn stay in
// that namespace. The thread returns to the runtime only if it could be switched back.
func Do(path string, fn func() error) error {
	target, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", path, err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", path, err)
			return
		}
		err = fn()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}
