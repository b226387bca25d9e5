package fabric

import (
	"context"
	"fmt"
	"strings"

	fab "github.com/metalforge/metalforge/pkg/fabric"
	"github.com/metalforge/metalforge/switch-agent/render"
)

// startSwitches starts FRR on the spine and the leaves and configures the underlay: the spine from
// a config of its own, each leaf from the lab rendering of a desired state with every port in PXE
// (what its switch agent applies first anyway), so the underlay converges while metal-api starts.
func (f *Fabric) startSwitches(ctx context.Context) error {
	if err := addLoopback(f.Spine.NetnsPath(), f.Spine.Loopback); err != nil {
		return fmt.Errorf("lab fabric: spine: %w", err)
	}
	in, err := startFRR(ctx, f.Spine.Netns, "", f.cfg.WorkDir, f.recordPID)
	if err != nil {
		return fmt.Errorf("lab fabric: %w", err)
	}
	f.Spine.frr, f.Spine.FRR = in, in.tools
	f.push(in.stop)
	if err := in.tools.Reload(ctx, []byte(f.spineConfig())); err != nil {
		return fmt.Errorf("lab fabric: spine: %w", err)
	}
	for _, l := range f.Leaves {
		if err := addLoopback(l.NetnsPath(), l.Loopback); err != nil {
			return fmt.Errorf("lab fabric: %s: %w", l.Name, err)
		}
		in, err := startFRR(ctx, l.Netns, l.VRFDir, f.cfg.WorkDir, f.recordPID)
		if err != nil {
			return fmt.Errorf("lab fabric: %w", err)
		}
		l.frr, l.FRR = in, in.tools
		f.push(in.stop)
		d := &fab.SwitchDesired{SwitchID: l.Name, Revision: "lab"}
		for _, p := range l.Ports {
			d.Ports = append(d.Ports, fab.SwitchPortDesired{Name: p, State: fab.PortPXE})
		}
		c, err := render.Lab{}.Render(render.Input{Switch: l.RenderSwitch(f.cfg.Keepalive, f.cfg.Hold), Desired: d})
		if err != nil {
			return fmt.Errorf("lab fabric: %s: %w", l.Name, err)
		}
		if err := in.tools.Reload(ctx, c.FRR); err != nil {
			return fmt.Errorf("lab fabric: %s: %w", l.Name, err)
		}
	}
	return nil
}

// RenderSwitch is the leaf's own part of the switch agent's config.
func (l *Leaf) RenderSwitch(keepalive, hold int) render.Switch {
	return render.Switch{ASN: l.ASN, Loopback: l.Loopback, Uplinks: []string{l.Uplink}, Keepalive: keepalive, Hold: hold,
		ConnectRetry: 1, RAInterval: 2}
}

func (f *Fabric) spineConfig() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("frr defaults datacenter")
	w("service integrated-vtysh-config")
	w("!")
	w("router bgp %d", f.Spine.ASN)
	w(" bgp router-id %s", f.Spine.Loopback)
	w(" bgp bestpath as-path multipath-relax")
	w(" neighbor FABRIC peer-group")
	w(" neighbor FABRIC remote-as external")
	w(" neighbor FABRIC timers %d %d", f.cfg.Keepalive, f.cfg.Hold)
	w(" neighbor FABRIC timers connect 1")
	for i := range f.Leaves {
		w(" neighbor down%d interface peer-group FABRIC", i+1)
	}
	w(" !")
	w(" address-family ipv4 unicast")
	w("  network %s/32", f.Spine.Loopback)
	w(" exit-address-family")
	w(" !")
	w(" address-family l2vpn evpn")
	w("  neighbor FABRIC activate")
	w(" exit-address-family")
	w("exit")
	return b.String()
}
