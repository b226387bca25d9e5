// Package netnstest builds small networks of Linux network namespaces (veth pairs, a bridge) for
// the boot service's tests, runs code inside them, and removes them when the test ends, also
// when it fails. Everything it creates is named mfb<pid>-..., so leftovers of a killed test
// binary are recognised and removed by the next run.
package netnstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// Require skips the test unless it runs as root with the ip tool, and removes namespaces left
// behind by test binaries that no longer run.
func Require(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: network namespace tests need root (CI runs them as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipping: the ip tool (iproute2) is not installed")
	}
	sweep()
}

// sweep deletes mfb<pid>-* namespaces whose pid is gone.
func sweep() {
	entries, err := os.ReadDir("/run/netns")
	if err != nil {
		return
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), "mfb")
		if !ok {
			continue
		}
		pidText, _, ok := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if !ok || err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
			_ = exec.Command("ip", "netns", "del", e.Name()).Run()
		}
	}
}

// NS is a network namespace that lives until the test ends.
type NS struct {
	Name   string
	handle netns.NsHandle
}

// New creates a namespace with loopback up and IPv6 duplicate address detection off (so
// link-local addresses are usable at once).
func New(t testing.TB, role string) *NS {
	t.Helper()
	var rnd [3]byte
	_, _ = rand.Read(rnd[:])
	name := fmt.Sprintf("mfb%d-%s-%s", os.Getpid(), role, hex.EncodeToString(rnd[:]))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	ns := &NS{Name: name}
	t.Cleanup(func() {
		if ns.handle.IsOpen() {
			ns.handle.Close()
		}
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("open netns %s: %v", name, err)
	}
	ns.handle = h
	ns.Exec(t, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
	ns.IP(t, "link", "set", "lo", "up")
	return ns
}

// IP runs `ip -n <ns> args...` and fails the test on error.
func (n *NS) IP(t testing.TB, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", n.Name}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip -n %s %s: %v: %s", n.Name, strings.Join(args, " "), err, out)
	}
}

// Exec runs a command inside the namespace and fails the test on error.
func (n *NS) Exec(t testing.TB, name string, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s in %s: %v: %s", name, strings.Join(args, " "), n.Name, err, out)
	}
}

// Command returns a command that runs inside the namespace.
func (n *NS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Do runs fn on an OS thread switched into the namespace. Sockets fn opens stay in the
// namespace; goroutines fn starts do not (they run on other threads), so open everything in fn.
func (n *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Not unlocked on failure: the thread is then in an unknown namespace and must die with
		// this goroutine.
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("get netns: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(n.handle); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", n.Name, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- fmt.Errorf("leave netns %s: %w", n.Name, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// DialContext dials from inside the namespace; use it as an http.Transport's DialContext.
func (n *NS) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() error {
		var err error
		c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// Veth connects a and b with a veth pair named aIf in a and bIf in b, sets both up and adds the
// addresses (CIDR notation, empty for none).
func Veth(t testing.TB, a *NS, aIf, aAddr string, b *NS, bIf, bAddr string) {
	t.Helper()
	a.IP(t, "link", "add", aIf, "type", "veth", "peer", "name", bIf, "netns", b.Name)
	for _, e := range []struct {
		ns        *NS
		ifc, cidr string
	}{{a, aIf, aAddr}, {b, bIf, bAddr}} {
		if e.cidr != "" {
			e.ns.IP(t, "addr", "add", e.cidr, "dev", e.ifc)
		}
		e.ns.IP(t, "link", "set", e.ifc, "up")
	}
	a.WaitReady(t, aIf, aAddr != "")
	b.WaitReady(t, bIf, bAddr != "")
}

// WaitReady waits up to 5 s until ifname is operationally up (the kernel applies carrier
// changes with up to a second of delay) and, with linkLocal, has a usable IPv6 link-local
// address (without one, even IPv6 multicast is unreachable).
func (n *NS) WaitReady(t testing.TB, ifname string, linkLocal bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		link, _ := exec.Command("ip", "-n", n.Name, "-o", "link", "show", "dev", ifname).Output()
		up := strings.Contains(string(link), "state UP") && !strings.Contains(string(link), "NO-CARRIER")
		ready := up
		if up && linkLocal {
			addr, _ := exec.Command("ip", "-n", n.Name, "-o", "-6", "addr", "show", "dev", ifname, "scope", "link").Output()
			ready = strings.Contains(string(addr), "fe80::") && !strings.Contains(string(addr), "tentative")
		}
		if ready {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s in %s is not ready after 5s: %s", ifname, n.Name, link)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Bridge creates a bridge named br0 in sw without STP or multicast snooping (so that IPv6
// multicast such as router solicitations is flooded).
func Bridge(t testing.TB, sw *NS) {
	t.Helper()
	sw.IP(t, "link", "add", "br0", "type", "bridge", "stp_state", "0", "mcast_snooping", "0", "forward_delay", "0")
	sw.IP(t, "link", "set", "br0", "up")
}

// Port connects ns to sw's bridge br0 with a veth pair: portName on the bridge, ifName in ns.
func Port(t testing.TB, sw *NS, portName string, ns *NS, ifName, cidr string) {
	t.Helper()
	Veth(t, sw, portName, "", ns, ifName, cidr)
	sw.IP(t, "link", "set", portName, "master", "br0")
}
