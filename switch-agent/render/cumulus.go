package render

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/metalforge/metalforge/pkg/fabric"
)

// Paths of the Cumulus layout.
const (
	CumulusFRRPath        = "/etc/frr/frr.conf"
	CumulusInterfacesPath = "/etc/network/interfaces"
)

// Cumulus renders for a Cumulus-Linux-style NOS: VRF devices and ifupdown2. Each L3VNI gets a
// VXLAN device (vni<N>) in one VLAN-aware bridge with a local VLAN and an SVI (vlan<V>) in the VRF;
// tenant ports are routed ports in their VRF; PXE ports are access ports of the PXE VLAN.
//
// Local VLANs are given out in VNI order from FirstVLAN, so adding a VRF with a lower VNI renumbers
// the VLANs of the VRFs above it (ifreload moves them; sessions on tenant ports are not affected,
// routed traffic between leaves of those VRFs blips). Up to PXEVLAN-FirstVLAN VRFs fit.
type Cumulus struct {
	// PXEVLAN is the access VLAN of unallocated ports (default 4000).
	PXEVLAN int
	// FirstVLAN is the local VLAN of the first L3VNI (default 1001).
	FirstVLAN int
	// MTU of ports (default 9216) and VXLAN devices (default 9000).
	PortMTU, VXLANMTU int
}

// Render renders /etc/frr/frr.conf and /etc/network/interfaces.
func (c Cumulus) Render(in Input) (*Config, error) {
	if err := in.check(); err != nil {
		return nil, fmt.Errorf("render cumulus config: %w", err)
	}
	if c.PXEVLAN == 0 {
		c.PXEVLAN = 4000
	}
	if c.FirstVLAN == 0 {
		c.FirstVLAN = 1001
	}
	if c.PortMTU == 0 {
		c.PortMTU = 9216
	}
	if c.VXLANMTU == 0 {
		c.VXLANMTU = 9000
	}
	if n := len(in.Desired.VRFs); c.FirstVLAN+n > c.PXEVLAN {
		return nil, fmt.Errorf("render cumulus config: %d vrfs do not fit between vlan %d and the pxe vlan %d", n, c.FirstVLAN, c.PXEVLAN)
	}
	sw, d := in.Switch, in.Desired
	w := &writer{}
	w.l("# Rendered by the metalforge switch-agent from metal-api (revision %s). Do not edit.", d.Revision)
	w.l("")
	w.l("auto lo")
	w.l("iface lo inet loopback")
	w.l("    address %s/32", sw.Loopback)
	w.l("    vxlan-local-tunnelip %s", sw.Loopback)
	for _, u := range sw.Uplinks {
		w.l("")
		w.l("auto %s", u)
		w.l("iface %s", u)
		w.l("    mtu %d", c.PortMTU)
	}
	var pxe []string
	for _, p := range d.Ports {
		w.l("")
		w.l("auto %s", p.Name)
		w.l("iface %s", p.Name)
		w.l("    mtu %d", c.PortMTU)
		switch p.State {
		case fabric.PortPXE:
			w.l("    bridge-access %d", c.PXEVLAN)
			pxe = append(pxe, p.Name)
		case fabric.PortTenant:
			w.l("    vrf %s", p.VRF)
		}
	}
	bridgePorts := append([]string{}, pxe...)
	vids := []int{c.PXEVLAN}
	for i, v := range d.VRFs {
		bridgePorts = append(bridgePorts, fmt.Sprintf("vni%d", v.VNI))
		vids = append(vids, c.FirstVLAN+i)
	}
	w.l("")
	w.l("auto bridge")
	w.l("iface bridge")
	if len(bridgePorts) > 0 {
		w.l("    bridge-ports %s", strings.Join(bridgePorts, " "))
	}
	w.l("    bridge-vids %s", joinInts(vids))
	w.l("    bridge-vlan-aware yes")
	w.l("")
	w.l("auto vlan%d", c.PXEVLAN)
	w.l("iface vlan%d", c.PXEVLAN)
	w.l("    vlan-id %d", c.PXEVLAN)
	w.l("    vlan-raw-device bridge")
	for i, v := range d.VRFs {
		vlan := c.FirstVLAN + i
		w.l("")
		w.l("auto %s", v.Name)
		w.l("iface %s", v.Name)
		w.l("    vrf-table auto")
		w.l("")
		w.l("auto vni%d", v.VNI)
		w.l("iface vni%d", v.VNI)
		w.l("    vxlan-id %d", v.VNI)
		w.l("    bridge-access %d", vlan)
		w.l("    bridge-learning off")
		w.l("    mtu %d", c.VXLANMTU)
		w.l("")
		w.l("auto vlan%d", vlan)
		w.l("iface vlan%d", vlan)
		w.l("    vlan-id %d", vlan)
		w.l("    vlan-raw-device bridge")
		w.l("    vrf %s", v.Name)
	}
	conf := renderFRR(in, nil)
	return &Config{Revision: d.Revision, FRR: conf, Files: []File{
		{Path: CumulusFRRPath, Data: conf},
		{Path: CumulusInterfacesPath, Data: w.bytes()},
	}}, nil
}

func joinInts(s []int) string {
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = strconv.Itoa(x)
	}
	return strings.Join(out, " ")
}
