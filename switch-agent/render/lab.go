package render

import (
	"fmt"
	"net/netip"
	"path"
	"strings"

	"github.com/metalforge/metalforge/pkg/fabric"
)

// Lab renders for the netns fabric, where the kernel has no VRF device: each tenant VRF is a
// network namespace of the same name holding the VRF's bridge (the L3VNI SVI), its VXLAN device
// (created in the switch's namespace, so it encapsulates there) and the tenant ports. FRR's zebra
// runs with -n (netns as VRF backend) and sees the namespaces in NetnsDir.
type Lab struct {
	// NetnsDir is the directory in which the switch's FRR sees the VRF namespaces (default
	// /run/netns, which the lab binds to a per-switch directory in FRR's mount namespace).
	NetnsDir string
	// PXEBridge is the bridge unallocated ports join (default "pxe").
	PXEBridge string
}

// Links is the interface state of the lab target.
type Links struct {
	// VTEP is the local tunnel address of the VXLAN devices (the switch's loopback).
	VTEP      netip.Addr
	PXEBridge string
	// PXEPorts are enslaved to PXEBridge in the switch's namespace.
	PXEPorts []string
	// RoutedPorts stay in the switch's namespace without a bridge (firewall ports).
	RoutedPorts []string
	VRFs        []LinkVRF
}

// LinkVRF is one VRF namespace with its devices.
type LinkVRF struct {
	// Name is the VRF and the namespace name.
	Name   string
	VNI    uint32
	Bridge string
	VXLAN  string
	// Ports are moved into the namespace as routed ports.
	Ports []string
}

// Render renders frr.conf (with a netns line per VRF) and the netlink plan.
func (l Lab) Render(in Input) (*Config, error) {
	if err := in.check(); err != nil {
		return nil, fmt.Errorf("render lab config: %w", err)
	}
	dir := l.NetnsDir
	if dir == "" {
		dir = "/run/netns"
	}
	bridge := l.PXEBridge
	if bridge == "" {
		bridge = "pxe"
	}
	conf := renderFRR(in, func(v fabric.SwitchVRF) []string { return []string{"netns " + path.Join(dir, v.Name)} })
	links := &Links{VTEP: in.Switch.Loopback, PXEBridge: bridge}
	idx := map[string]int{}
	for _, v := range in.Desired.VRFs {
		idx[v.Name] = len(links.VRFs)
		links.VRFs = append(links.VRFs, LinkVRF{Name: v.Name, VNI: v.VNI, Bridge: fmt.Sprintf("br%d", v.VNI), VXLAN: fmt.Sprintf("vx%d", v.VNI)})
	}
	for _, p := range in.Desired.Ports {
		switch p.State {
		case fabric.PortPXE:
			links.PXEPorts = append(links.PXEPorts, p.Name)
		case fabric.PortFirewall:
			links.RoutedPorts = append(links.RoutedPorts, p.Name)
		case fabric.PortTenant:
			v := &links.VRFs[idx[p.VRF]]
			v.Ports = append(v.Ports, p.Name)
		}
	}
	return &Config{Revision: in.Desired.Revision, FRR: conf, Links: links}, nil
}

// String renders the plan as text, for golden files and logs.
func (l *Links) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "vtep %s\n", l.VTEP)
	fmt.Fprintf(&b, "bridge %s ports [%s]\n", l.PXEBridge, strings.Join(l.PXEPorts, " "))
	fmt.Fprintf(&b, "routed ports [%s]\n", strings.Join(l.RoutedPorts, " "))
	for _, v := range l.VRFs {
		fmt.Fprintf(&b, "netns %s vni %d bridge %s vxlan %s ports [%s]\n", v.Name, v.VNI, v.Bridge, v.VXLAN, strings.Join(v.Ports, " "))
	}
	return b.String()
}
