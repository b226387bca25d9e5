package fabric

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/store"
)

// Desired computes the desired state of a switch inside a read (or write) transaction. Ports without
// an allocated machine are PXE ports; a machine's port joins the VRF of its private network; a
// firewall's port gets EVPN peering limited to the VNIs of its networks.
func Desired(ctx context.Context, tx store.Tx, switchID string) (*SwitchDesired, error) {
	sw, err := tx.Switches().Get(ctx, switchID)
	if err != nil {
		return nil, fmt.Errorf("desired state of switch %s: %w", switchID, err)
	}
	machines, err := connected(ctx, tx, sw)
	if err != nil {
		return nil, fmt.Errorf("desired state of switch %s: %w", switchID, err)
	}
	return desiredOf(sw, machines), nil
}

// connected reads the machines connected to a switch; a deleted machine maps to nil.
func connected(ctx context.Context, tx store.Tx, sw *api.Switch) (map[string]*api.Machine, error) {
	machines := map[string]*api.Machine{}
	for _, c := range sw.Connections {
		if _, done := machines[c.MachineID]; done {
			continue
		}
		m, err := tx.Machines().Get(ctx, c.MachineID)
		if errors.Is(err, store.ErrNotFound) {
			machines[c.MachineID] = nil
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("machine %s: %w", c.MachineID, err)
		}
		machines[c.MachineID] = m
	}
	return machines, nil
}

// desiredOf is the pure part of Desired.
func desiredOf(sw *api.Switch, machines map[string]*api.Machine) *SwitchDesired {
	d := &SwitchDesired{SwitchID: sw.ID, PartitionID: sw.PartitionID, Ports: []SwitchPortDesired{}, VRFs: []SwitchVRF{}}
	vrfs := map[uint32]bool{}
	for _, p := range sw.Ports {
		dp := SwitchPortDesired{Name: p.Name, State: PortPXE}
		i := slices.IndexFunc(sw.Connections, func(c api.SwitchConnection) bool { return c.Port == p.Name })
		if i >= 0 {
			if m := machines[sw.Connections[i].MachineID]; m != nil && m.Allocation != nil {
				dp = portOf(p.Name, m)
			}
		}
		if dp.State == PortTenant {
			vrfs[dp.VNI] = true
		}
		d.Ports = append(d.Ports, dp)
	}
	slices.SortFunc(d.Ports, func(a, b SwitchPortDesired) int { return comparePorts(a.Name, b.Name) })
	for vni := range vrfs {
		d.VRFs = append(d.VRFs, SwitchVRF{Name: VRFName(vni), VNI: vni})
	}
	slices.SortFunc(d.VRFs, func(a, b SwitchVRF) int { return int(int64(a.VNI) - int64(b.VNI)) })
	d.Revision = revision(d)
	return d
}

// portOf is the desired state of a port connected to an allocated machine. A machine whose
// allocation has no private network with a VRF cannot be routed anywhere safe and stays a PXE port.
func portOf(name string, m *api.Machine) SwitchPortDesired {
	a := m.Allocation
	var priv *api.MachineNetwork
	for i := range a.Networks {
		if n := &a.Networks[i]; n.Private && !n.Underlay && n.VRF != 0 {
			priv = n
			break
		}
	}
	asn := uint32(0)
	if len(a.Networks) > 0 {
		asn = a.Networks[0].ASN
	}
	if a.Role == api.RoleFirewall {
		p := SwitchPortDesired{Name: name, State: PortFirewall, MachineID: m.ID, ASN: asn}
		for _, n := range a.Networks {
			if n.Underlay {
				p.Prefixes = append(p.Prefixes, hostPrefixes(n.IPs)...)
			} else if n.VRF != 0 && !slices.Contains(p.VNIs, n.VRF) {
				p.VNIs = append(p.VNIs, n.VRF)
			}
		}
		slices.Sort(p.VNIs)
		p.Prefixes = sortedUnique(p.Prefixes)
		return p
	}
	if priv == nil || asn == 0 {
		return SwitchPortDesired{Name: name, State: PortPXE}
	}
	p := SwitchPortDesired{Name: name, State: PortTenant, MachineID: m.ID, VRF: VRFName(priv.VRF), VNI: priv.VRF, ASN: asn}
	p.Prefixes = append(p.Prefixes, canonical(priv.Prefixes)...)
	for _, n := range a.Networks {
		p.Prefixes = append(p.Prefixes, hostPrefixes(n.IPs)...)
	}
	p.Prefixes = sortedUnique(p.Prefixes)
	return p
}

// hostPrefixes turns addresses into /32 or /128 prefixes, skipping unparsable ones.
func hostPrefixes(ips []string) []string {
	var out []string
	for _, s := range ips {
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()).String())
		}
	}
	return out
}

// canonical masks prefixes, skipping unparsable ones.
func canonical(prefixes []string) []string {
	var out []string
	for _, s := range prefixes {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked().String())
		}
	}
	return out
}

// sortedUnique sorts prefixes by address family, address and length, and drops duplicates and
// prefixes covered by another one of the list (a covered prefix adds nothing to "le 32").
func sortedUnique(prefixes []string) []string {
	ps := make([]netip.Prefix, 0, len(prefixes))
	for _, s := range prefixes {
		if p, err := netip.ParsePrefix(s); err == nil {
			ps = append(ps, p)
		}
	}
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	out := []string{}
	var kept []netip.Prefix
	for _, p := range ps {
		if slices.ContainsFunc(kept, func(k netip.Prefix) bool { return k.Bits() <= p.Bits() && k.Contains(p.Addr()) }) {
			continue
		}
		kept = append(kept, p)
		out = append(out, p.String())
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// comparePorts orders port names naturally: swp2 before swp10.
func comparePorts(a, b string) int {
	for a != "" && b != "" {
		da, db := digits(a), digits(b)
		if da > 0 && db > 0 {
			na, nb := a[:da], b[:db]
			if len(na) != len(nb) {
				return len(na) - len(nb)
			}
			if na != nb {
				if na < nb {
					return -1
				}
				return 1
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return int(a[0]) - int(b[0])
		}
		a, b = a[1:], b[1:]
	}
	return len(a) - len(b)
}

func digits(s string) int {
	n := 0
	for n < len(s) && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	return n
}
