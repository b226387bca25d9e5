// Package netns runs code, sockets and processes inside a named network namespace
// (/run/netns/<name>, the same ones `ip netns` manages) without touching the rest of the
// process: the work happens on a locked OS thread that enters the namespace and leaves it again.
// A socket keeps the namespace it was created in, so a listener or connection made here can be
// used from any goroutine afterwards; a child process started here lives in the namespace.
package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Dir is where named namespaces are bind-mounted.
const Dir = "/run/netns"

// Exists reports whether the named namespace exists.
func Exists(name string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(filepath.Join(Dir, name), &st); err != nil {
		return false
	}
	return st.Type == unix.NSFS_MAGIC
}

// Create makes a new named namespace with lo up. It fails when the name is taken.
func Create(name string) error {
	if Exists(name) {
		return fmt.Errorf("create netns %s: exists", name)
	}
	err := onThread(func() error {
		orig, err := netns.Get()
		if err != nil {
			return err
		}
		defer orig.Close()
		ns, err := netns.NewNamed(name)
		if err != nil {
			_ = os.Remove(filepath.Join(Dir, name)) // NewNamed leaves the file when the mount fails
			if serr := netns.Set(orig); serr != nil {
				return errStuck{serr} // NewNamed may have unshared the thread already
			}
			return err
		}
		ns.Close()
		if err := netns.Set(orig); err != nil {
			return errStuck{err}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("create netns %s: %w", name, err)
	}
	return Do(name, func() error { return setLinkUp("lo") })
}

// Delete removes the named namespace; once its last process is gone the kernel frees it with all
// its devices. Deleting a namespace that does not exist is not an error.
func Delete(name string) error {
	if !Exists(name) {
		_ = os.Remove(filepath.Join(Dir, name))
		return nil
	}
	if err := netns.DeleteNamed(name); err != nil {
		return fmt.Errorf("delete netns %s: %w", name, err)
	}
	return nil
}

// errStuck marks a thread that could not return to its namespace; it must not be reused.
type errStuck struct{ err error }

func (e errStuck) Error() string { return "restore network namespace: " + e.err.Error() }

// onThread runs fn on a fresh locked OS thread. When fn reports errStuck the thread is
// discarded (the goroutine exits locked) so no other goroutine ever runs in the wrong namespace.
func onThread(fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		err := fn()
		done <- err
		var stuck errStuck
		if !errors.As(err, &stuck) {
			runtime.UnlockOSThread()
		}
	}()
	return <-done
}

// Do runs fn with the calling OS thread inside the named namespace. fn must not start goroutines
// that expect to be in the namespace (they are not); sockets it opens and processes it starts are.
func Do(name string, fn func() error) error {
	target, err := netns.GetFromName(name)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", name, err)
	}
	defer target.Close()
	var fnErr error
	err = onThread(func() error {
		orig, err := netns.Get()
		if err != nil {
			return err
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			return fmt.Errorf("enter netns %s: %w", name, err)
		}
		fnErr = fn()
		if err := netns.Set(orig); err != nil {
			return errStuck{err}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return fnErr
}

// Dialer returns a dial function that opens its sockets inside the named namespace. Addresses
// must be IP literals (name resolution would run outside the namespace).
func Dialer(name string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := Do(name, func() error {
			var err error
			c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("dial %s in netns %s: %w", addr, name, err)
		}
		return c, nil
	}
}

// Listen opens a listener inside the named namespace.
func Listen(name, network, addr string) (net.Listener, error) {
	var l net.Listener
	err := Do(name, func() error {
		var err error
		l, err = net.Listen(network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen %s in netns %s: %w", addr, name, err)
	}
	return l, nil
}

// Start starts cmd inside the named namespace (the child inherits the namespace of the thread
// that forks it).
func Start(name string, cmd *exec.Cmd) error {
	return Do(name, cmd.Start)
}
