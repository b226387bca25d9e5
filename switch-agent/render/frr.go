package render

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/metalforge/metalforge/pkg/fabric"
	"github.com/metalforge/metalforge/pkg/frr"
)

// Peer-group names of the leaf config.
const (
	groupFabric   = "FABRIC"
	groupFirewall = "FIREWALL"
	groupMachine  = "MACHINE"
)

// writer builds a config line by line.
type writer struct{ b strings.Builder }

func (w *writer) l(format string, args ...any) {
	if len(args) == 0 {
		w.b.WriteString(format)
	} else {
		fmt.Fprintf(&w.b, format, args...)
	}
	w.b.WriteByte('\n')
}

func (w *writer) bytes() []byte { return []byte(w.b.String()) }

// renderFRR renders the leaf's frr.conf. vrfExtra adds target-specific lines inside each
// "vrf" block (the lab's netns line).
func renderFRR(in Input, vrfExtra func(fabric.SwitchVRF) []string) []byte {
	sw, d := in.Switch, in.Desired
	w := &writer{}
	w.l("frr defaults datacenter")
	w.l("service integrated-vtysh-config")
	w.l("!")
	// No EVPN multihoming here (machines route on the host), so no reason to hold VXLAN devices
	// protodown for 180s after zebra starts, which is what the default startup delay does.
	w.l("evpn mh startup-delay 0")
	w.l("!")
	for _, v := range d.VRFs {
		w.l("vrf %s", v.Name)
		w.l(" vni %d", v.VNI)
		if vrfExtra != nil {
			for _, x := range vrfExtra(v) {
				w.l(" %s", x)
			}
		}
		w.l("exit-vrf")
		w.l("!")
	}
	renderFilters(w, d)

	var firewalls []fabric.SwitchPortDesired
	byVRF := map[string][]fabric.SwitchPortDesired{}
	for _, p := range d.Ports {
		switch p.State {
		case fabric.PortFirewall:
			firewalls = append(firewalls, p)
		case fabric.PortTenant:
			byVRF[p.VRF] = append(byVRF[p.VRF], p)
		}
	}
	if sw.RAInterval > 0 {
		for _, p := range d.Ports {
			switch p.State {
			case fabric.PortTenant:
				w.l("interface %s vrf %s", p.Name, p.VRF)
			case fabric.PortFirewall:
				w.l("interface %s", p.Name)
			default:
				continue
			}
			w.l(" ipv6 nd ra-interval %d", sw.RAInterval)
			w.l("exit")
			w.l("!")
		}
	}
	w.l("router bgp %d", sw.ASN)
	routerHead(w, sw)
	group(w, groupFabric, sw)
	if len(firewalls) > 0 {
		group(w, groupFirewall, sw)
	}
	for _, u := range sw.Uplinks {
		w.l(" neighbor %s interface peer-group %s", u, groupFabric)
	}
	for _, p := range firewalls {
		w.l(" neighbor %s interface peer-group %s", p.Name, groupFirewall)
		w.l(" neighbor %s remote-as %d", p.Name, p.ASN)
	}
	w.l(" !")
	w.l(" address-family ipv4 unicast")
	w.l("  network %s/32", sw.Loopback)
	for _, p := range firewalls {
		w.l("  neighbor %s prefix-list %s in", p.Name, prefixList(p.Name, false))
	}
	w.l(" exit-address-family")
	if fw6 := withV6(firewalls); len(fw6) > 0 {
		w.l(" !")
		w.l(" address-family ipv6 unicast")
		for _, p := range fw6 {
			w.l("  neighbor %s activate", p.Name)
			w.l("  neighbor %s prefix-list %s in", p.Name, prefixList(p.Name, true))
		}
		w.l(" exit-address-family")
	}
	w.l(" !")
	w.l(" address-family l2vpn evpn")
	w.l("  neighbor %s activate", groupFabric)
	if len(firewalls) > 0 {
		w.l("  neighbor %s activate", groupFirewall)
	}
	for _, p := range firewalls {
		w.l("  neighbor %s route-map %s in", p.Name, evpnMap(p.Name))
		w.l("  neighbor %s route-map %s out", p.Name, evpnMap(p.Name))
	}
	w.l("  advertise-all-vni")
	w.l(" exit-address-family")
	w.l("exit")
	w.l("!")
	for _, v := range d.VRFs {
		ports := byVRF[v.Name]
		w.l("router bgp %d vrf %s", sw.ASN, v.Name)
		routerHead(w, sw)
		group(w, groupMachine, sw)
		for _, p := range ports {
			w.l(" neighbor %s interface peer-group %s", p.Name, groupMachine)
			w.l(" neighbor %s remote-as %d", p.Name, p.ASN)
		}
		w.l(" !")
		w.l(" address-family ipv4 unicast")
		for _, p := range ports {
			w.l("  neighbor %s prefix-list %s in", p.Name, prefixList(p.Name, false))
		}
		w.l(" exit-address-family")
		if p6 := withV6(ports); len(p6) > 0 {
			w.l(" !")
			w.l(" address-family ipv6 unicast")
			for _, p := range p6 {
				w.l("  neighbor %s activate", p.Name)
				w.l("  neighbor %s prefix-list %s in", p.Name, prefixList(p.Name, true))
			}
			w.l(" exit-address-family")
		}
		w.l(" !")
		w.l(" address-family l2vpn evpn")
		w.l("  advertise ipv4 unicast")
		if len(withV6(ports)) > 0 {
			w.l("  advertise ipv6 unicast")
		}
		w.l("  route-target import %s", frr.RouteTarget(v.VNI))
		w.l("  route-target export %s", frr.RouteTarget(v.VNI))
		w.l(" exit-address-family")
		w.l("exit")
		w.l("!")
	}
	return w.bytes()
}

func routerHead(w *writer, sw Switch) {
	w.l(" bgp router-id %s", sw.Loopback)
	w.l(" bgp bestpath as-path multipath-relax")
}

func group(w *writer, name string, sw Switch) {
	w.l(" neighbor %s peer-group", name)
	if name != groupMachine && name != groupFirewall {
		w.l(" neighbor %s remote-as external", name) // machines and firewalls: their own ASN per port
	}
	if sw.Keepalive > 0 && sw.Hold > 0 {
		w.l(" neighbor %s timers %d %d", name, sw.Keepalive, sw.Hold)
	}
	if sw.ConnectRetry > 0 {
		w.l(" neighbor %s timers connect %d", name, sw.ConnectRetry)
	}
}

// renderFilters writes the prefix-lists of machine and firewall ports (what they may announce) and
// the EVPN route-maps of firewalls (which VNIs they may exchange).
func renderFilters(w *writer, d *fabric.SwitchDesired) {
	filtered := false
	for _, p := range d.Ports {
		if p.State != fabric.PortTenant && p.State != fabric.PortFirewall {
			continue
		}
		filtered = true
		v4, v6 := split(p.Prefixes)
		writeList(w, "ip", prefixList(p.Name, false), v4, 32)
		if len(v6) > 0 {
			writeList(w, "ipv6", prefixList(p.Name, true), v6, 128)
		}
	}
	if filtered {
		w.l("!")
	}
	for _, p := range d.Ports {
		if p.State != fabric.PortFirewall {
			continue
		}
		for i, vni := range p.VNIs {
			w.l("route-map %s permit %d", evpnMap(p.Name), (i+1)*10)
			w.l(" match evpn vni %d", vni)
			w.l("exit")
		}
		if len(p.VNIs) == 0 {
			w.l("route-map %s deny 10", evpnMap(p.Name))
			w.l("exit")
		}
		w.l("!")
	}
}

// writeList writes a prefix-list permitting each prefix and its longer forms; an empty list denies
// everything (a neighbour's missing prefix-list would permit all).
func writeList(w *writer, family, name string, ps []netip.Prefix, maxLen int) {
	if len(ps) == 0 {
		w.l("%s prefix-list %s seq 10 deny any", family, name)
		return
	}
	for i, p := range ps {
		if p.Bits() == maxLen {
			w.l("%s prefix-list %s seq %d permit %s", family, name, (i+1)*10, p)
		} else {
			w.l("%s prefix-list %s seq %d permit %s le %d", family, name, (i+1)*10, p, maxLen)
		}
	}
}

func split(prefixes []string) (v4, v6 []netip.Prefix) {
	for _, s := range prefixes {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			continue // check() rejected these already
		}
		if p.Addr().Is4() {
			v4 = append(v4, p.Masked())
		} else {
			v6 = append(v6, p.Masked())
		}
	}
	return v4, v6
}

func withV6(ports []fabric.SwitchPortDesired) []fabric.SwitchPortDesired {
	var out []fabric.SwitchPortDesired
	for _, p := range ports {
		if _, v6 := split(p.Prefixes); len(v6) > 0 {
			out = append(out, p)
		}
	}
	return out
}

func prefixList(port string, v6 bool) string {
	if v6 {
		return port + "-in6"
	}
	return port + "-in"
}

func evpnMap(port string) string { return port + "-evpn" }
