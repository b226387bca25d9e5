package osinit

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/frr"
)

// Interface naming on a firewall. Every network with a VNI (the tenant's private network and the
// external networks; the leaves carry them to the firewall as EVPN type-5 routes over VXLAN) gets
// three devices, the standard Linux L3VNI layout FRR expects:
//
//	vrf<VNI>   the VRF (routing table <VNI>)
//	vlan<VNI>  a bridge enslaved to vrf<VNI>: the network's routed interface (the SVI) that holds
//	           the firewall's addresses in the network and by which packets leave into it
//	vni<VNI>   the VXLAN device of the VNI (local address: the underlay address), a port of vlan<VNI>
//
// The names depend on the allocation only, so they are the same on real hardware and in a QEMU VM
// (whose Debian kernel has vrf and vxlan modules), and FRR's `vrf vrf<VNI>` finds its device.
// FirewallConfig names vlan<VNI> as a network's Interface and as ExternalInterface (SNAT and
// output interface matches); the VNI is in VRF / ExternalVRF, because in the forward hook a packet
// coming out of a VRF has the VRF device vrf<VNI> as its input interface. A network without a VNI
// is routed in the default VRF over the leaf-facing NICs; its interface is the first of them.
const (
	VRFPrefix    = "vrf"
	SVIPrefix    = "vlan"
	VXLANPrefix  = "vni"
	DNSPort      = "53"
	defaultIface = "lo"
)

// Firewall is what the first boot of a firewall derives its configuration from.
type Firewall struct {
	MachineID  string
	Allocation *api.MachineAllocation
	// NICs are the leaf-facing interfaces (the physical Ethernet NICs), in the order FRR peers on them.
	NICs []string
	// DNSServers are the partition's resolvers (the hammer writes them to /etc/resolv.conf).
	DNSServers []string
	// Kubeconfig is the path of the tenant cluster's kubeconfig, "" for none.
	Kubeconfig string
}

// NetworkInterface is the interface of an allocation network on the firewall (see the naming above).
func NetworkInterface(n api.MachineNetwork, nics []string) string {
	if n.VRF != 0 {
		return fmt.Sprintf("%s%d", SVIPrefix, n.VRF)
	}
	if len(nics) > 0 {
		return nics[0]
	}
	return defaultIface
}

// FirewallConfig derives the firewall-controller's configuration from the allocation: the tenant
// (private) networks behind the firewall, the external network it SNATs to (the first external
// network with NAT, else the first external one, in allocation order) with that network's
// addresses as egress IPs, the DNS proxy on the firewall's private address and the first DNS
// server as its upstream (no proxy without DNS servers).
func FirewallConfig(fw Firewall) (api.FirewallConfig, error) {
	a := fw.Allocation
	switch {
	case a == nil:
		return api.FirewallConfig{}, errors.New("derive firewall config: no allocation")
	case a.Role != api.RoleFirewall:
		return api.FirewallConfig{}, fmt.Errorf("derive firewall config: allocation role is %q, not firewall", a.Role)
	case fw.MachineID == "":
		return api.FirewallConfig{}, errors.New("derive firewall config: no machine id")
	}
	c := api.FirewallConfig{MachineID: fw.MachineID, ProjectID: a.ProjectID, Networks: []api.FirewallNetwork{}, Kubeconfig: fw.Kubeconfig}
	var ext *api.MachineNetwork
	for i := range a.Networks {
		n := &a.Networks[i]
		switch {
		case n.Underlay:
		case n.Private:
			c.Networks = append(c.Networks, api.FirewallNetwork{NetworkID: n.NetworkID, Interface: NetworkInterface(*n, fw.NICs),
				Prefixes: slices.Clone(n.Prefixes), VRF: n.VRF})
			if c.DNSListen == "" && n.NetworkType != api.NetworkPrivateShared {
				if ip := firstV4(n.IPs); ip.IsValid() {
					c.DNSListen = netip.AddrPortFrom(ip, 53).String()
				}
			}
		case n.NetworkType == api.NetworkExternal:
			if ext == nil || n.NAT && !ext.NAT {
				ext = n
			}
		}
	}
	if len(c.Networks) == 0 {
		return api.FirewallConfig{}, errors.New("derive firewall config: the allocation has no private network")
	}
	if ext == nil {
		return api.FirewallConfig{}, errors.New("derive firewall config: the allocation has no external network")
	}
	c.ExternalInterface, c.ExternalVRF = NetworkInterface(*ext, fw.NICs), ext.VRF
	c.EgressIPs = slices.Clone(ext.IPs)
	slices.SortFunc(c.EgressIPs, func(x, y string) int {
		ax, ex := netip.ParseAddr(x)
		ay, ey := netip.ParseAddr(y)
		if ex != nil || ey != nil {
			return strings.Compare(x, y)
		}
		return ax.Compare(ay)
	})
	if len(fw.DNSServers) > 0 {
		if ip, err := netip.ParseAddr(fw.DNSServers[0]); err == nil {
			c.DNSUpstream = netip.AddrPortFrom(ip, 53).String()
		} else {
			c.DNSUpstream = fw.DNSServers[0] + ":" + DNSPort
		}
	} else {
		// A DNS proxy needs somewhere to forward to: without DNS servers, no proxy (and no FQDN rules).
		c.DNSListen = ""
	}
	return c, nil
}

// FirewallFRR renders the firewall's FRR configuration (pkg/frr's firewall variant: BGP unnumbered
// on every leaf-facing NIC, EVPN, one VRF per network with a VNI and route leaking between the
// tenant's and the external VRFs).
func FirewallFRR(fw Firewall) ([]byte, error) {
	b, err := frr.RenderHost(frr.Host{Interfaces: fw.NICs, Allocation: fw.Allocation})
	if err != nil {
		return nil, fmt.Errorf("firewall frr: %w", err)
	}
	return b, nil
}

// NetworkdFiles renders the systemd-networkd files (name → content) that create the firewall's
// devices: the underlay address on lo, and vrf<VNI>, vlan<VNI> (with the firewall's addresses as
// /32 or /128) and vni<VNI> for each network with a VNI.
func NetworkdFiles(fw Firewall) (map[string]string, error) {
	a := fw.Allocation
	if a == nil {
		return nil, errors.New("firewall networkd files: no allocation")
	}
	var underlay netip.Addr
	for _, n := range a.Networks {
		if n.Underlay {
			underlay = firstV4(n.IPs)
		}
	}
	if !underlay.IsValid() {
		return nil, errors.New("firewall networkd files: the allocation has no underlay address (the VTEP)")
	}
	const head = "# written by metal-osinit firewall (pkg/phonehome/osinit)\n"
	files := map[string]string{
		"10-metalforge-lo.network": head + "[Match]\nName=lo\n\n[Network]\nKeepConfiguration=static\n\n" +
			"[Address]\nAddress=127.0.0.1/8\n\n[Address]\nAddress=::1/128\n\n[Address]\nAddress=" + underlay.String() + "/32\n",
	}
	nets := slices.Clone(a.Networks)
	slices.SortFunc(nets, func(x, y api.MachineNetwork) int { return cmp.Compare(x.VRF, y.VRF) })
	for _, n := range nets {
		if n.Underlay || n.VRF == 0 {
			continue
		}
		vrf, svi, vx := fmt.Sprintf("%s%d", VRFPrefix, n.VRF), fmt.Sprintf("%s%d", SVIPrefix, n.VRF), fmt.Sprintf("%s%d", VXLANPrefix, n.VRF)
		if _, dup := files["20-"+vrf+".netdev"]; dup {
			continue
		}
		files["20-"+vrf+".netdev"] = fmt.Sprintf("%s[NetDev]\nName=%s\nKind=vrf\n\n[VRF]\nTable=%d\n", head, vrf, n.VRF)
		files["20-"+vrf+".network"] = fmt.Sprintf("%s[Match]\nName=%s\n\n[Network]\nLinkLocalAddressing=no\n", head, vrf)
		files["21-"+svi+".netdev"] = fmt.Sprintf("%s[NetDev]\nName=%s\nKind=bridge\n\n[Bridge]\nSTP=no\n", head, svi)
		var addrs strings.Builder
		for _, s := range n.IPs {
			ip, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("firewall networkd files: network %s: %w", n.NetworkID, err)
			}
			fmt.Fprintf(&addrs, "\n[Address]\nAddress=%s\n", netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen()))
		}
		files["21-"+svi+".network"] = fmt.Sprintf("%s[Match]\nName=%s\n\n[Network]\nVRF=%s\nLinkLocalAddressing=no\nConfigureWithoutCarrier=yes\n%s",
			head, svi, vrf, addrs.String())
		files["22-"+vx+".netdev"] = fmt.Sprintf("%s[NetDev]\nName=%s\nKind=vxlan\n\n[VXLAN]\nVNI=%d\nLocal=%s\nDestinationPort=4789\nIndependent=yes\nMacLearning=no\n",
			head, vx, n.VRF, underlay)
		files["22-"+vx+".network"] = fmt.Sprintf("%s[Match]\nName=%s\n\n[Network]\nBridge=%s\nLinkLocalAddressing=no\nConfigureWithoutCarrier=yes\n",
			head, vx, svi)
	}
	return files, nil
}

func firstV4(ips []string) netip.Addr {
	for _, s := range ips {
		if ip, err := netip.ParseAddr(s); err == nil && ip.Unmap().Is4() {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}
