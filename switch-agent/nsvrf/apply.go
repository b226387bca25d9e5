package nsvrf

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path"
	"path/filepath"
	"slices"

	"github.com/vishvananda/netlink"

	"github.com/metalforge/metalforge/switch-agent/render"
)

// vxlanPort is the IANA VXLAN port.
const vxlanPort = 4789

// Apply makes the namespaces match c, reloads FRR and waits until zebra has every L3VNI up. It
// re-derives everything from what it finds, so it is safe to repeat after a crash at any step.
// Order: new VRF namespaces exist (and zebra knows them) before their devices are added and ports
// move in; ports leave VRFs no longer desired, which are parked; FRR is reloaded last.
func (t *Target) Apply(ctx context.Context, c *render.Config) error {
	if c.Links == nil {
		return errors.New("apply: config has no link plan (not rendered for the lab target)")
	}
	ss, err := t.spaces()
	if err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	defer func() { closeAll(ss) }()
	sw := ss[0]
	pxe := sw
	if t.cfg.PXENetns != "" {
		pxe = ss[1]
	}
	if err := sysctls(sw.ns, routing()); err != nil {
		return fmt.Errorf("apply: switch namespace: %w", err)
	}
	bridge, err := ensureBridge(pxe, c.Links.PXEBridge)
	if err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	var created []string
	byName := map[string]*space{}
	for _, s := range ss {
		byName[s.name] = s
	}
	// A new VRF namespace is created empty and filled once zebra knows it: zebra reads a
	// namespace's interfaces once when it appears, and FRR 8.4 was seen to misread that dump when
	// it already held the bridge and VXLAN device ("netlink-cmd error: data remnant") and to miss
	// ports. Devices added later reach it as notifications.
	for _, v := range c.Links.VRFs {
		if byName[v.Name] != nil {
			continue
		}
		file := filepath.Join(t.cfg.VRFDir, v.Name)
		if err := CreateNetns(file); err != nil {
			return fmt.Errorf("apply: %w", err)
		}
		s, err := openSpace(v.Name, file)
		if err != nil {
			return fmt.Errorf("apply: %w", err)
		}
		ss = append(ss, s)
		byName[v.Name] = s
		created = append(created, v.Name)
		t.cfg.Log.Info("vrf namespace created", "vrf", v.Name, "vni", v.VNI)
	}
	if len(created) > 0 {
		if err := t.waitVRFs(ctx, created); err != nil {
			return fmt.Errorf("apply: %w", err)
		}
	}
	for _, v := range c.Links.VRFs {
		if err := t.ensureVRF(sw, byName[v.Name], v, c.Links); err != nil {
			return fmt.Errorf("apply: vrf %s: %w", v.Name, err)
		}
	}
	// Ports: into their VRF, into the PXE bridge, or routed in the switch's namespace.
	place := func(port string, to *space, master netlink.Link) error {
		from, l := locate(ss, port)
		if l == nil {
			return fmt.Errorf("port %s not found", port)
		}
		if from != to {
			if err := from.nl.LinkSetNsFd(l, int(to.ns)); err != nil {
				return fmt.Errorf("move port %s: %w", port, err)
			}
			t.cfg.Log.Info("port moved", "port", port, "to", spaceName(to))
			if l, err = to.nl.LinkByName(port); err != nil {
				return fmt.Errorf("port %s after move: %w", port, err)
			}
		}
		switch {
		case master != nil && l.Attrs().MasterIndex != master.Attrs().Index:
			if err := to.nl.LinkSetMaster(l, master); err != nil {
				return fmt.Errorf("port %s into bridge: %w", port, err)
			}
		case master == nil && l.Attrs().MasterIndex != 0:
			if err := to.nl.LinkSetNoMaster(l); err != nil {
				return fmt.Errorf("port %s out of bridge: %w", port, err)
			}
		}
		if l.Attrs().Flags&net.FlagUp == 0 {
			if err := to.nl.LinkSetUp(l); err != nil {
				return fmt.Errorf("port %s up: %w", port, err)
			}
		}
		return nil
	}
	for _, p := range c.Links.PXEPorts {
		if err := place(p, pxe, bridge); err != nil {
			return fmt.Errorf("apply: %w", err)
		}
	}
	for _, p := range c.Links.RoutedPorts {
		if err := place(p, sw, nil); err != nil {
			return fmt.Errorf("apply: %w", err)
		}
	}
	for _, v := range c.Links.VRFs {
		for _, p := range v.Ports {
			if err := place(p, byName[v.Name], nil); err != nil {
				return fmt.Errorf("apply: %w", err)
			}
		}
	}
	// VRFs no longer desired are parked: ports out, namespace and devices kept. FRR 8.4's zebra
	// can crash when a VRF namespace it used goes away (ns_delete → route_table_finish), so namespaces are never deleted while it runs; a parked one is reused
	// when its VRF comes back. zebra lists every namespace as a VRF with its netns line, so the
	// config keeps a bare block for each parked one, or frr-reload would try to remove it.
	conf := c.FRR
	for _, s := range ss {
		if s.name == "" || s.name == pxeSpace || slices.ContainsFunc(c.Links.VRFs, func(v render.LinkVRF) bool { return v.Name == s.name }) {
			continue
		}
		parked, err := t.park(s, pxe, bridge)
		if err != nil {
			return fmt.Errorf("apply: stale vrf %s: %w", s.name, err)
		}
		if parked {
			t.cfg.Log.Info("vrf parked", "vrf", s.name)
		}
		conf = append(conf, fmt.Sprintf("vrf %s\n netns %s\nexit-vrf\n!\n", s.name, path.Join(t.netnsDir(), s.name))...)
	}
	if err := t.cfg.FRR.Reload(ctx, conf); err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	// Done when zebra has every L3VNI up on its VXLAN device and bridge.
	if err := t.waitL3VNIs(ctx, c.Links.VRFs); err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	return nil
}

func spaceName(s *space) string {
	switch s.name {
	case "":
		return "switch"
	case pxeSpace:
		return "pxe"
	}
	return s.name
}

// ensureBridge makes sure a bridge exists and is up.
func ensureBridge(s *space, name string) (netlink.Link, error) {
	l, err := s.nl.LinkByName(name)
	if err != nil {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
		if err := s.nl.LinkAdd(br); err != nil {
			return nil, fmt.Errorf("add bridge %s: %w", name, err)
		}
		if l, err = s.nl.LinkByName(name); err != nil {
			return nil, fmt.Errorf("bridge %s: %w", name, err)
		}
	}
	if _, ok := l.(*netlink.Bridge); !ok {
		return nil, fmt.Errorf("%s is a %s, not a bridge", name, l.Type())
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		if err := s.nl.LinkSetUp(l); err != nil {
			return nil, fmt.Errorf("bridge %s up: %w", name, err)
		}
	}
	return l, nil
}

// ensureVRF gives a VRF namespace its sysctls, lo, bridge and VXLAN device. The VXLAN device is
// created from the switch's namespace directly into the VRF namespace, so that its UDP socket (and
// the underlay routing of the encapsulated packets) stays in the switch's namespace.
func (t *Target) ensureVRF(sw, s *space, v render.LinkVRF, links *render.Links) error {
	if err := sysctls(s.ns, routing()); err != nil {
		return err
	}
	lo, err := s.nl.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("lo: %w", err)
	}
	if lo.Attrs().Flags&net.FlagUp == 0 {
		if err := s.nl.LinkSetUp(lo); err != nil {
			return fmt.Errorf("lo up: %w", err)
		}
	}
	br, err := ensureBridge(s, v.Bridge)
	if err != nil {
		return err
	}
	vx, err := s.nl.LinkByName(v.VXLAN)
	if err == nil {
		if x, ok := vx.(*netlink.Vxlan); !ok || x.VxlanId != int(v.VNI) || !x.SrcAddr.Equal(net.IP(links.VTEP.AsSlice())) {
			if err := s.nl.LinkDel(vx); err != nil { // wrong device under our name: replace it
				return fmt.Errorf("delete %s: %w", v.VXLAN, err)
			}
			vx = nil
		}
	} else {
		vx = nil
	}
	if vx == nil {
		x := &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: v.VXLAN, Namespace: netlink.NsFd(int(s.ns))},
			VxlanId: int(v.VNI), SrcAddr: net.IP(links.VTEP.AsSlice()), Port: vxlanPort, Learning: false}
		if err := sw.nl.LinkAdd(x); err != nil {
			return fmt.Errorf("add %s: %w", v.VXLAN, err)
		}
		if vx, err = s.nl.LinkByName(v.VXLAN); err != nil {
			return fmt.Errorf("%s: %w", v.VXLAN, err)
		}
	}
	if vx.Attrs().MasterIndex != br.Attrs().Index {
		if err := s.nl.LinkSetMaster(vx, br); err != nil {
			return fmt.Errorf("%s into %s: %w", v.VXLAN, v.Bridge, err)
		}
	}
	if err := s.nl.LinkSetLearning(vx, false); err != nil {
		return fmt.Errorf("%s learning off: %w", v.VXLAN, err)
	}
	if vx.Attrs().Flags&net.FlagUp == 0 {
		if err := s.nl.LinkSetUp(vx); err != nil {
			return fmt.Errorf("%s up: %w", v.VXLAN, err)
		}
	}
	return nil
}

// park empties a VRF namespace that is no longer desired: its ports go to the PXE bridge (a port
// is only in a VRF while the desired state says so). Its bridge and VXLAN device stay: zebra keeps
// state about the remote router MACs it programmed on them, and devices deleted under it are not
// reprogrammed when the VRF comes back. It reports whether a port moved.
func (t *Target) park(s, pxe *space, bridge netlink.Link) (bool, error) {
	links, err := s.nl.LinkList()
	if err != nil {
		return false, err
	}
	moved := false
	for _, l := range links {
		switch l.(type) {
		case *netlink.Bridge, *netlink.Vxlan:
			continue
		}
		if l.Attrs().Flags&net.FlagLoopback != 0 {
			continue
		}
		if err := s.nl.LinkSetNsFd(l, int(pxe.ns)); err != nil {
			return false, fmt.Errorf("move %s out: %w", l.Attrs().Name, err)
		}
		p, err := pxe.nl.LinkByName(l.Attrs().Name)
		if err != nil {
			return false, err
		}
		if err := pxe.nl.LinkSetMaster(p, bridge); err != nil {
			return false, err
		}
		if err := pxe.nl.LinkSetUp(p); err != nil {
			return false, err
		}
		moved = true
	}
	return moved, nil
}
