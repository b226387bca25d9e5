package nsvrf

import (
	"context"
	"encoding/json"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"

	"github.com/metalforge/metalforge/pkg/fabric"
)

// Observe reports where each front port is (PXE bridge, a VRF, routed), whether its link is up, and
// the state of the BGP session on it.
func (t *Target) Observe(ctx context.Context) ([]fabric.SwitchPortReport, error) {
	ss, err := t.spaces()
	if err != nil {
		return nil, fmt.Errorf("observe: %w", err)
	}
	defer closeAll(ss)
	bgp, err := t.bgpStates(ctx)
	if err != nil {
		return nil, fmt.Errorf("observe: %w", err)
	}
	var out []fabric.SwitchPortReport
	for _, p := range t.cfg.Ports {
		s, l := locate(ss, p)
		r := fabric.SwitchPortReport{Name: p}
		switch {
		case l == nil:
			r.ActualState = "missing"
		case s.name == "" && l.Attrs().MasterIndex == 0:
			r.ActualState, r.BGPState = fabric.PortFirewall, bgp[bgpKey{"default", p}]
		case s.name == "" || s.name == pxeSpace:
			r.ActualState = fabric.PortPXE
			if br, err := s.nl.LinkByIndex(l.Attrs().MasterIndex); err != nil || br.Attrs().Name != t.cfg.Render.PXEBridge {
				r.ActualState = "bridged"
			}
		default:
			r.ActualState, r.VRF, r.BGPState = fabric.PortTenant, s.name, bgp[bgpKey{s.name, p}]
		}
		if l != nil && (l.Attrs().OperState == netlink.OperDown || l.Attrs().Flags&net.FlagUp == 0) {
			r.ActualState = "down"
		}
		out = append(out, r)
	}
	return out, nil
}

type bgpKey struct{ vrf, peer string }

// bgpStates reads the state of every BGP peer of every VRF. Unnumbered peers are named by their
// interface. A peer with several address families reports the IPv4 unicast state if it has one.
func (t *Target) bgpStates(ctx context.Context) (map[bgpKey]string, error) {
	var raw map[string]map[string]json.RawMessage
	if err := t.cfg.FRR.ShowJSON(ctx, "show bgp vrf all summary json", &raw); err != nil {
		return nil, err
	}
	out := map[bgpKey]string{}
	for vrf, afs := range raw {
		for af, body := range afs {
			var sum struct {
				Peers map[string]struct {
					State string `json:"state"`
				} `json:"peers"`
			}
			if json.Unmarshal(body, &sum) != nil {
				continue
			}
			for peer, p := range sum.Peers {
				k := bgpKey{vrf, peer}
				if _, seen := out[k]; !seen || af == "ipv4Unicast" {
					out[k] = p.State
				}
			}
		}
	}
	return out, nil
}
