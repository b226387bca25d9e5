package frr

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/metalforge/metalforge/pkg/api"
)

// RouteTargetAS is the administrator part of every route target: VRF n imports and exports
// RouteTargetAS:n on leaves and firewalls alike. Leaves have ASNs of their own, so automatic route
// targets (ASN:VNI) would not match between them.
const RouteTargetAS = 65000

// RouteTarget is the route target of a VNI.
func RouteTarget(vni uint32) string { return fmt.Sprintf("%d:%d", RouteTargetAS, vni) }

// Host is the input of the routing-on-the-host configuration of an installed machine or firewall.
type Host struct {
	// Interfaces face the leaves; each gets a BGP unnumbered session (normally two, one per leaf).
	Interfaces []string
	Allocation *api.MachineAllocation
	// Keepalive and Hold are the BGP timers in seconds; zero keeps the datacenter defaults (3, 9).
	Keepalive, Hold int
	// ConnectRetry is the BGP connect retry timer in seconds; zero keeps the default (10).
	ConnectRetry int
	// RAInterval is the router advertisement interval in seconds on the leaf-facing interfaces;
	// zero keeps FRR's 10s. BGP unnumbered learns the peer's address from these: a shorter
	// interval shortens the wait when the leaf comes up after the first advertisement was sent.
	RAInterval int
}

// RenderHost renders FRR for an installed machine: BGP unnumbered to its leaves, announcing exactly
// its own addresses (and nothing it learns), and setting them as source address of the learnt
// routes (the leaf-facing interfaces have no address of their own). A firewall additionally
// terminates EVPN: its underlay address is router ID and VTEP, and each of its networks with a VNI
// becomes a VRF; the tenant VRF takes the default route from the external VRFs, which take the
// tenant's routes back.
func RenderHost(h Host) ([]byte, error) {
	a := h.Allocation
	if a == nil || len(a.Networks) == 0 {
		return nil, errors.New("render host frr: no allocation with networks")
	}
	if len(h.Interfaces) == 0 {
		return nil, errors.New("render host frr: no leaf-facing interface")
	}
	asn := a.Networks[0].ASN
	if asn == 0 {
		return nil, errors.New("render host frr: allocation has no asn")
	}
	var v4, v6 []netip.Addr
	for _, n := range a.Networks {
		if a.Role == api.RoleFirewall && !n.Underlay {
			continue // a firewall's tenant and external addresses live in their VRFs
		}
		for _, s := range n.IPs {
			ip, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("render host frr: network %s: %w", n.NetworkID, err)
			}
			if ip.Unmap().Is4() {
				v4 = append(v4, ip.Unmap())
			} else {
				v6 = append(v6, ip)
			}
		}
	}
	if len(v4) == 0 {
		return nil, errors.New("render host frr: no ipv4 address for the router id")
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("frr defaults datacenter")
	w("log syslog informational")
	w("service integrated-vtysh-config")
	w("!")
	var vrfs []api.MachineNetwork
	if a.Role == api.RoleFirewall {
		for _, n := range a.Networks {
			if !n.Underlay && n.VRF != 0 {
				vrfs = append(vrfs, n)
			}
		}
		slices.SortFunc(vrfs, func(x, y api.MachineNetwork) int { return int(int64(x.VRF) - int64(y.VRF)) })
		for _, n := range vrfs {
			w("vrf vrf%d", n.VRF)
			w(" vni %d", n.VRF)
			w("exit-vrf")
			w("!")
		}
	}
	own := func(name, family string, addrs []netip.Addr) {
		for i, ip := range addrs {
			w("%s prefix-list %s seq %d permit %s", family, name, (i+1)*10, netip.PrefixFrom(ip, ip.BitLen()))
		}
	}
	own("OWN-V4", "ip", v4)
	own("OWN-V6", "ipv6", v6)
	w("!")
	w("route-map OWN-V4 permit 10")
	w(" match ip address prefix-list OWN-V4")
	w("exit")
	if len(v6) > 0 {
		w("route-map OWN-V6 permit 10")
		w(" match ipv6 address prefix-list OWN-V6")
		w("exit")
	}
	w("route-map SRC-V4 permit 10")
	w(" set src %s", v4[0])
	w("exit")
	w("!")
	w("ip protocol bgp route-map SRC-V4")
	w("!")
	if h.RAInterval > 0 {
		for _, ifc := range h.Interfaces {
			w("interface %s", ifc)
			w(" ipv6 nd ra-interval %d", h.RAInterval)
			w("exit")
			w("!")
		}
	}
	w("router bgp %d", asn)
	w(" bgp router-id %s", v4[0])
	w(" bgp bestpath as-path multipath-relax")
	w(" neighbor TOR peer-group")
	w(" neighbor TOR remote-as external")
	if h.Keepalive > 0 && h.Hold > 0 {
		w(" neighbor TOR timers %d %d", h.Keepalive, h.Hold)
	}
	if h.ConnectRetry > 0 {
		w(" neighbor TOR timers connect %d", h.ConnectRetry)
	}
	for _, ifc := range h.Interfaces {
		w(" neighbor %s interface peer-group TOR", ifc)
	}
	w(" !")
	w(" address-family ipv4 unicast")
	for _, ip := range v4 {
		w("  network %s", netip.PrefixFrom(ip, 32))
	}
	w("  neighbor TOR route-map OWN-V4 out")
	w(" exit-address-family")
	if len(v6) > 0 {
		w(" !")
		w(" address-family ipv6 unicast")
		for _, ip := range v6 {
			w("  network %s", netip.PrefixFrom(ip, 128))
		}
		w("  neighbor TOR activate")
		w("  neighbor TOR route-map OWN-V6 out")
		w(" exit-address-family")
	}
	if a.Role == api.RoleFirewall {
		w(" !")
		w(" address-family l2vpn evpn")
		w("  neighbor TOR activate")
		w("  advertise-all-vni")
		w(" exit-address-family")
	}
	w("exit")
	w("!")
	for _, n := range vrfs {
		renderFirewallVRF(w, asn, v4[0], n, vrfs)
	}
	return []byte(b.String()), nil
}

// renderFirewallVRF writes the BGP instance of one VRF of a firewall: its own addresses, EVPN type-5
// export and import with the VRF's route target, and leaking between the tenant VRF (private) and
// the external VRFs: the tenant imports their routes, each external VRF imports the tenant's.
func renderFirewallVRF(w func(string, ...any), asn uint32, routerID netip.Addr, n api.MachineNetwork, all []api.MachineNetwork) {
	w("router bgp %d vrf vrf%d", asn, n.VRF)
	w(" bgp router-id %s", routerID)
	w(" !")
	w(" address-family ipv4 unicast")
	for _, s := range n.IPs {
		if ip, err := netip.ParseAddr(s); err == nil && ip.Unmap().Is4() {
			w("  network %s/32", ip.Unmap())
		}
	}
	for _, o := range all {
		if o.VRF == n.VRF || o.Private == n.Private {
			continue // leak only between the tenant VRF and external VRFs
		}
		w("  import vrf vrf%d", o.VRF)
	}
	w(" exit-address-family")
	w(" !")
	w(" address-family l2vpn evpn")
	w("  advertise ipv4 unicast")
	w("  route-target import %s", RouteTarget(n.VRF))
	w("  route-target export %s", RouteTarget(n.VRF))
	w(" exit-address-family")
	w("exit")
	w("!")
}
