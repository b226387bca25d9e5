// Package netup brings the hammer's network up: loopback, every physical NIC, DHCPv4 on all of
// them at once, and the leased address, default route and resolver configured with netlink.
package netup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"
)

// Config tunes Up.
type Config struct {
	// Interfaces to use; nil takes every interface backed by a device (see Physical).
	Interfaces []string
	// Timeout bounds the whole DHCP exchange; default 60 s.
	Timeout time.Duration
	// ResolvConf is where the DNS servers of the first lease are written; "" skips it.
	ResolvConf string
	Log        *slog.Logger
}

// Lease is a configured DHCP lease.
type Lease struct {
	Interface string
	Addr      netip.Prefix
	Router    netip.Addr
	DNS       []netip.Addr
	Server    netip.Addr
}

// Physical lists the interfaces below sysfs that have a device (not lo, bridges, veths),
// sorted by name.
func Physical(sysfs string) ([]string, error) {
	ents, err := os.ReadDir(sysfs + "/class/net")
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	var out []string
	for _, e := range ents {
		if _, err := os.Stat(sysfs + "/class/net/" + e.Name() + "/device"); err == nil {
			out = append(out, e.Name())
		}
	}
	slices.Sort(out)
	return out, nil
}

// Up configures the network and returns the leases it applied. It fails only when no
// interface got a lease.
func Up(ctx context.Context, cfg Config) ([]Lease, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 60 * time.Second
	}
	if lo, err := netlink.LinkByName("lo"); err == nil {
		if err := netlink.LinkSetUp(lo); err != nil {
			return nil, fmt.Errorf("network up: lo: %w", err)
		}
	}
	ifaces := cfg.Interfaces
	if ifaces == nil {
		var err error
		if ifaces, err = Physical("/sys"); err != nil {
			return nil, fmt.Errorf("network up: %w", err)
		}
	}
	if len(ifaces) == 0 {
		return nil, errors.New("network up: no network interfaces")
	}
	for _, name := range ifaces {
		l, err := netlink.LinkByName(name)
		if err == nil {
			err = netlink.LinkSetUp(l)
		}
		if err != nil {
			return nil, fmt.Errorf("network up: %s: %w", name, err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	type result struct {
		lease Lease
		err   error
	}
	done := make(chan result, len(ifaces))
	for _, name := range ifaces {
		go func() {
			l, err := request(ctx, name)
			done <- result{l, err}
		}()
	}
	var leases []Lease
	var errs []error
	for range ifaces {
		r := <-done
		if r.err != nil {
			errs = append(errs, r.err)
			cfg.Log.Warn("dhcp failed", "err", r.err)
			continue
		}
		leases = append(leases, r.lease)
	}
	if len(leases) == 0 {
		return nil, fmt.Errorf("network up: no lease: %w", errors.Join(errs...))
	}
	slices.SortFunc(leases, func(a, b Lease) int { return strings.Compare(a.Interface, b.Interface) })
	for i, l := range leases {
		if err := apply(l, i); err != nil {
			return nil, fmt.Errorf("network up: %s: %w", l.Interface, err)
		}
		cfg.Log.Info("dhcp lease", "interface", l.Interface, "addr", l.Addr, "router", l.Router, "server", l.Server)
	}
	if cfg.ResolvConf != "" && len(leases[0].DNS) > 0 {
		var b strings.Builder
		for _, d := range leases[0].DNS {
			fmt.Fprintf(&b, "nameserver %s\n", d)
		}
		if err := os.WriteFile(cfg.ResolvConf, []byte(b.String()), 0o644); err != nil {
			return leases, fmt.Errorf("network up: %w", err)
		}
	}
	return leases, nil
}

// request runs DISCOVER/OFFER/REQUEST/ACK on one interface.
func request(ctx context.Context, name string) (Lease, error) {
	c, err := nclient4.New(name, nclient4.WithTimeout(4*time.Second), nclient4.WithRetry(3))
	if err != nil {
		return Lease{}, fmt.Errorf("dhcp on %s: %w", name, err)
	}
	defer c.Close()
	var ack *dhcpv4.DHCPv4
	for ctx.Err() == nil {
		l, err := c.Request(ctx)
		if err == nil {
			ack = l.ACK
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	if ack == nil {
		return Lease{}, fmt.Errorf("dhcp on %s: no answer: %w", name, ctx.Err())
	}
	return leaseOf(name, ack)
}

// leaseOf extracts what the hammer needs from an ACK.
func leaseOf(name string, ack *dhcpv4.DHCPv4) (Lease, error) {
	ip, ok := netip.AddrFromSlice(ack.YourIPAddr.To4())
	if !ok || !ip.IsValid() || ip.IsUnspecified() {
		return Lease{}, fmt.Errorf("dhcp on %s: ack without an address", name)
	}
	bits := 24
	if m := ack.SubnetMask(); m != nil {
		bits, _ = m.Size()
	}
	l := Lease{Interface: name, Addr: netip.PrefixFrom(ip, bits)}
	if rs := ack.Router(); len(rs) > 0 {
		l.Router, _ = netip.AddrFromSlice(rs[0].To4())
	}
	for _, d := range ack.DNS() {
		if a, ok := netip.AddrFromSlice(d.To4()); ok {
			l.DNS = append(l.DNS, a)
		}
	}
	if s := ack.ServerIdentifier(); s != nil {
		l.Server, _ = netip.AddrFromSlice(s.To4())
	}
	return l, nil
}

// apply sets the address and, with a metric per interface so several can coexist, the default
// route.
func apply(l Lease, i int) error {
	link, err := netlink.LinkByName(l.Interface)
	if err != nil {
		return err
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: l.Addr.Addr().AsSlice(), Mask: net.CIDRMask(l.Addr.Bits(), 32)}}
	if err := netlink.AddrReplace(link, addr); err != nil {
		return fmt.Errorf("address %s: %w", l.Addr, err)
	}
	if !l.Router.IsValid() {
		return nil
	}
	r := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: l.Router.AsSlice(), Priority: 100 + i}
	if err := netlink.RouteReplace(r); err != nil {
		return fmt.Errorf("default route via %s: %w", l.Router, err)
	}
	return nil
}
