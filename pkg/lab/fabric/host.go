package fabric

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/frr"
	"github.com/metalforge/metalforge/switch-agent/nsvrf"
)

// Host is a machine stand-in: a namespace whose lan0 is plugged into a leaf port.
type Host struct {
	Name  string
	Netns string
	Leaf  *Leaf
	// Port is the leaf port lan0 is plugged into.
	Port   string
	fabric *Fabric
	frr    *instance
}

// NetnsPath is the path of the host's namespace.
func (h *Host) NetnsPath() string { return filepath.Join("/run/netns", h.Netns) }

// MAC is the address of lan0.
func (h *Host) MAC() (net.HardwareAddr, error) {
	var mac net.HardwareAddr
	err := nsvrf.Do(h.NetnsPath(), func() error {
		ifc, err := net.InterfaceByName("lan0")
		if err == nil {
			mac = ifc.HardwareAddr
		}
		return err
	})
	return mac, err
}

// Configure does what the installed OS of an allocated machine does: it puts the allocation's
// addresses on lo and starts FRR (or reloads it) with the routing-on-the-host config from
// frr.RenderHost. It also adds a default route to the leaf, so that traffic the fabric must drop
// (another tenant's addresses) really reaches the leaf instead of failing on the host.
func (h *Host) Configure(ctx context.Context, a *api.MachineAllocation) error {
	conf, err := frr.RenderHost(frr.Host{Interfaces: []string{"lan0"}, Allocation: a,
		Keepalive: h.fabric.cfg.Keepalive, Hold: h.fabric.cfg.Hold, ConnectRetry: 1, RAInterval: 2})
	if err != nil {
		return fmt.Errorf("configure host %s: %w", h.Name, err)
	}
	for _, n := range a.Networks {
		for _, s := range n.IPs {
			ip, err := netip.ParseAddr(s)
			if err != nil {
				return fmt.Errorf("configure host %s: %w", h.Name, err)
			}
			if err := addLoopback(h.NetnsPath(), ip); err != nil {
				return fmt.Errorf("configure host %s: %w", h.Name, err)
			}
		}
	}
	if err := h.defaultRoute(); err != nil {
		return fmt.Errorf("configure host %s: %w", h.Name, err)
	}
	if h.frr == nil {
		in, err := startFRR(ctx, h.Netns, "", h.fabric.cfg.WorkDir, h.fabric.recordPID)
		if err != nil {
			return fmt.Errorf("configure host %s: %w", h.Name, err)
		}
		h.frr = in
		h.fabric.push(in.stop)
	}
	if err := h.frr.tools.Reload(ctx, conf); err != nil {
		return fmt.Errorf("configure host %s: %w", h.Name, err)
	}
	return nil
}

// FRR reaches the host's FRR (zero before Configure).
func (h *Host) FRR() frr.Tools {
	if h.frr == nil {
		return frr.Tools{}
	}
	return h.frr.tools
}

// defaultRoute routes IPv4 to the leaf port's IPv6 link-local address (EUI-64 of its MAC, which
// stays when the port moves between namespaces).
func (h *Host) defaultRoute() error {
	mac, err := h.Leaf.portMAC(h.Port)
	if err != nil {
		return err
	}
	ll := net.IP{0xfe, 0x80, 0, 0, 0, 0, 0, 0, mac[0] ^ 2, mac[1], mac[2], 0xff, 0xfe, mac[3], mac[4], mac[5]}
	return withHandle(h.NetnsPath(), func(nl *netlink.Handle) error {
		lan, err := nl.LinkByName("lan0")
		if err != nil {
			return err
		}
		r := &netlink.Route{LinkIndex: lan.Attrs().Index, Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
			Via: &netlink.Via{AddrFamily: netlink.FAMILY_V6, Addr: ll}, Family: netlink.FAMILY_V4}
		if err := nl.RouteReplace(r); err != nil {
			return fmt.Errorf("default route via %s: %w", ll, err)
		}
		return nil
	})
}

// portMAC finds a leaf port in any of the leaf's namespaces and returns its MAC.
func (l *Leaf) portMAC(port string) (net.HardwareAddr, error) {
	paths := []string{l.NetnsPath(), l.PXENetns}
	if vrfs, err := filepath.Glob(filepath.Join(l.VRFDir, "*")); err == nil {
		paths = append(paths, vrfs...)
	}
	for _, p := range paths {
		var mac net.HardwareAddr
		err := withHandle(p, func(nl *netlink.Handle) error {
			lk, err := nl.LinkByName(port)
			if err == nil {
				mac = lk.Attrs().HardwareAddr
			}
			return err
		})
		if err == nil {
			return mac, nil
		}
	}
	return nil, fmt.Errorf("leaf %s: port %s not found", l.Name, port)
}

func withHandle(path string, fn func(*netlink.Handle) error) error {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return err
	}
	defer ns.Close()
	nl, err := netlink.NewHandleAt(ns)
	if err != nil {
		return err
	}
	defer nl.Close()
	return fn(nl)
}

// HasRoute reports whether the host's kernel has a route to exactly dst/32 (not the default).
func (h *Host) HasRoute(dst netip.Addr) (bool, error) { return hasRoute(h.NetnsPath(), dst) }

// hasRoute looks for a host route in a namespace's main table.
func hasRoute(path string, dst netip.Addr) (bool, error) {
	found := false
	err := withHandle(path, func(nl *netlink.Handle) error {
		rs, err := nl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Dst: &net.IPNet{IP: dst.AsSlice(), Mask: net.CIDRMask(32, 32)}},
			netlink.RT_FILTER_DST)
		found = len(rs) > 0
		return err
	})
	return found, err
}

// VRFHasRoute reports whether the leaf's VRF namespace routes exactly dst/32 (false if the VRF
// does not exist on the leaf).
func (l *Leaf) VRFHasRoute(vrf string, dst netip.Addr) (bool, error) {
	path := filepath.Join(l.VRFDir, vrf)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return hasRoute(path, dst)
}

// Ping sends ICMP echo requests from src (an address of the host) to dst until one is answered or
// timeout passes.
func (h *Host) Ping(ctx context.Context, src, dst netip.Addr, timeout time.Duration) error {
	var conn *icmp.PacketConn
	err := nsvrf.Do(h.NetnsPath(), func() error {
		var err error
		conn, err = icmp.ListenPacket("ip4:icmp", src.String())
		return err
	})
	if err != nil {
		return fmt.Errorf("ping from %s: %w", h.Name, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	id := int(time.Now().UnixNano() & 0xffff)
	buf := make([]byte, 1500)
	for seq := 1; ; seq++ {
		msg, _ := (&icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte("metalforge")}}).Marshal(nil)
		if _, err := conn.WriteTo(msg, &net.IPAddr{IP: dst.AsSlice()}); err != nil && ctx.Err() == nil {
			// No route yet: wait and retry until the timeout.
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
		wait := time.Now().Add(300 * time.Millisecond)
		if dl, ok := ctx.Deadline(); ok && dl.Before(wait) {
			wait = dl
		}
		_ = conn.SetReadDeadline(wait)
		for {
			n, peer, err := conn.ReadFrom(buf)
			if err != nil {
				break
			}
			m, err := icmp.ParseMessage(1, buf[:n])
			if err != nil || m.Type != ipv4.ICMPTypeEchoReply {
				continue
			}
			if e, ok := m.Body.(*icmp.Echo); ok && e.ID == id && peer.String() == dst.String() {
				return nil
			}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("ping %s -> %s from %s: no reply in %s", src, dst, h.Name, timeout)
		}
	}
}

// SessionState is the state of the leaf's BGP session on a port in a VRF ("" if there is none).
func (l *Leaf) SessionState(ctx context.Context, vrf, port string) (string, error) {
	var sum struct {
		Peers map[string]struct {
			State string `json:"state"`
		} `json:"peers"`
	}
	if err := l.FRR.ShowJSON(ctx, "show bgp vrf "+vrf+" ipv4 unicast summary json", &sum); err != nil {
		return "", err
	}
	return sum.Peers[port].State, nil
}

// PortIn reports whether a port is in the VRF's namespace.
func (l *Leaf) PortIn(vrf, port string) (bool, error) {
	path := filepath.Join(l.VRFDir, vrf)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	found := false
	err := withHandle(path, func(nl *netlink.Handle) error {
		_, err := nl.LinkByName(port)
		found = err == nil
		return nil
	})
	return found, err
}

// Established is how often the leaf's BGP session on a port in a VRF has been established: a
// reload that keeps the session up leaves it unchanged.
func (l *Leaf) Established(ctx context.Context, vrf, port string) (int, error) {
	var nbs map[string]struct {
		ConnectionsEstablished int `json:"connectionsEstablished"`
	}
	if err := l.FRR.ShowJSON(ctx, "show bgp vrf "+vrf+" neighbors "+port+" json", &nbs); err != nil {
		return 0, err
	}
	n, ok := nbs[port]
	if !ok {
		return 0, fmt.Errorf("leaf %s: no bgp neighbor %s in %s", l.Name, port, vrf)
	}
	return n.ConnectionsEstablished, nil
}

// HasVRF reports whether the leaf's FRR still has the VRF as a tenant VRF: an L3VNI or a BGP
// instance. (A VRF that is no longer desired stays as an empty, parked namespace.)
func (l *Leaf) HasVRF(ctx context.Context, vrf string) (bool, error) {
	out, err := l.FRR.Show(ctx, "show vrf vni", "show running-config")
	if err != nil {
		return false, err
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[0] == vrf || strings.HasPrefix(line, "router bgp ") && strings.HasSuffix(line, " vrf "+vrf) {
			return true, nil
		}
	}
	return false, nil
}
