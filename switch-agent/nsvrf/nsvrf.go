// Package nsvrf is the switch agent's lab target: a leaf switch that is a network namespace, where
// each tenant VRF is a network namespace of its own (the kernel has no VRF device) and FRR runs with
// zebra's netns VRF backend (-n). It applies a render.Links plan with netlink — VRF namespaces with
// their bridge (the L3VNI SVI) and VXLAN device, ports moved into their VRF, the PXE bridge or left
// routed — then reloads FRR with frr-reload.py, and observes port and BGP state.
//
// VRF namespaces are created in VRFDir, which the lab makes a shared mount that the leaf's FRR
// mount namespace binds as its /run/netns: a namespace created here shows up in zebra as a VRF.
// They are never deleted while FRR runs (FRR 8.4's zebra can crash on that); a VRF that is no
// longer desired is parked: emptied, unconfigured, and reused when it comes back.
package nsvrf

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/frr"
	"github.com/metalforge/metalforge/switch-agent/render"
)

// pxeSpace names the PXE namespace among the spaces.
const pxeSpace = "\x00pxe"

// Config describes one lab leaf.
type Config struct {
	// Netns is the path of the switch's namespace ("" is the agent's own).
	Netns string
	// VRFDir is the directory of the VRF namespaces, seen by FRR as /run/netns.
	VRFDir string
	// PXENetns is the namespace of the PXE bridge; "" puts the bridge in the switch's namespace.
	// A namespace of its own keeps unallocated machines out of the underlay.
	PXENetns string
	// Ports are the front ports (machine-facing).
	Ports []string
	// FRR reaches the switch's FRR instance.
	FRR frr.Tools
	// Render configures the renderer (NetnsDir, PXEBridge).
	Render render.Lab
	// VRFTimeout bounds the wait for zebra to see a new VRF namespace (default 10s).
	VRFTimeout time.Duration
	Log        *slog.Logger
}

// Target is a lab leaf.
type Target struct {
	cfg Config
}

// New checks the config.
func New(cfg Config) (*Target, error) {
	if cfg.VRFDir == "" {
		return nil, errors.New("nsvrf: vrf directory is required")
	}
	if len(cfg.Ports) == 0 {
		return nil, errors.New("nsvrf: no ports")
	}
	if cfg.VRFTimeout == 0 {
		cfg.VRFTimeout = 10 * time.Second
	}
	if cfg.Render.PXEBridge == "" {
		cfg.Render.PXEBridge = "pxe"
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Target{cfg: cfg}, nil
}

// Render renders the lab layout.
func (t *Target) Render(in render.Input) (*render.Config, error) { return t.cfg.Render.Render(in) }

// Validate checks an FRR config offline.
func (t *Target) Validate(ctx context.Context, conf []byte) error {
	return t.cfg.FRR.Validate(ctx, conf)
}

// spaces opens the switch's namespace, the PXE namespace and every VRF namespace in VRFDir. The
// switch's namespace is first.
func (t *Target) spaces() ([]*space, error) {
	sw, err := openSpace("", t.cfg.Netns)
	if err != nil {
		return nil, err
	}
	out := []*space{sw}
	if t.cfg.PXENetns != "" {
		pxe, err := openSpace(pxeSpace, t.cfg.PXENetns)
		if err != nil {
			closeAll(out)
			return nil, err
		}
		out = append(out, pxe)
	}
	entries, err := os.ReadDir(t.cfg.VRFDir)
	if err != nil {
		closeAll(out)
		return nil, fmt.Errorf("list vrf namespaces: %w", err)
	}
	for _, e := range entries {
		s, err := openSpace(e.Name(), filepath.Join(t.cfg.VRFDir, e.Name()))
		if err != nil {
			// A file without a namespace mount (a crash between create and mount): remove it.
			t.cfg.Log.Warn("removing broken vrf namespace", "vrf", e.Name(), "err", err)
			if err := DeleteNetns(filepath.Join(t.cfg.VRFDir, e.Name())); err != nil {
				closeAll(out)
				return nil, err
			}
			continue
		}
		out = append(out, s)
	}
	return out, nil
}

func closeAll(ss []*space) {
	for _, s := range ss {
		s.close()
	}
}

// locate finds the space a link is in.
func locate(ss []*space, name string) (*space, netlink.Link) {
	for _, s := range ss {
		if l, err := s.nl.LinkByName(name); err == nil {
			return s, l
		}
	}
	return nil, nil
}

// netnsDir is where FRR sees the VRF namespaces.
func (t *Target) netnsDir() string {
	if t.cfg.Render.NetnsDir != "" {
		return t.cfg.Render.NetnsDir
	}
	return "/run/netns"
}

// Ports lists the front ports with their MACs, wherever they are.
func (t *Target) Ports(context.Context) ([]api.SwitchPort, error) {
	ss, err := t.spaces()
	if err != nil {
		return nil, err
	}
	defer closeAll(ss)
	var out []api.SwitchPort
	for _, p := range t.cfg.Ports {
		_, l := locate(ss, p)
		if l == nil {
			return nil, fmt.Errorf("port %s not found", p)
		}
		out = append(out, api.SwitchPort{Name: p, MAC: l.Attrs().HardwareAddr.String()})
	}
	return out, nil
}

// PortNetns returns the path of the namespace a port is in now ("" for the agent's own).
func (t *Target) PortNetns(port string) (string, error) {
	ss, err := t.spaces()
	if err != nil {
		return "", err
	}
	defer closeAll(ss)
	s, _ := locate(ss, port)
	switch {
	case s == nil:
		return "", fmt.Errorf("port %s not found", port)
	case s.name == "":
		return t.cfg.Netns, nil
	case s.name == pxeSpace:
		return t.cfg.PXENetns, nil
	}
	return filepath.Join(t.cfg.VRFDir, s.name), nil
}

// knownVRFs lists the VRFs zebra has (active ones carry an id in "show vrf").
func (t *Target) knownVRFs(ctx context.Context) ([]string, error) {
	out, err := t.cfg.FRR.Show(ctx, "show vrf")
	if err != nil {
		return nil, err
	}
	var vrfs []string
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) >= 4 && f[0] == "vrf" && f[2] == "id" {
			vrfs = append(vrfs, f[1])
		}
	}
	return vrfs, nil
}

// l3vni is a row of "show vrf vni".
type l3vni struct{ vxlan, state string }

func (t *Target) l3vnis(ctx context.Context) (map[string]l3vni, error) {
	out, err := t.cfg.FRR.Show(ctx, "show vrf vni")
	if err != nil {
		return nil, err
	}
	rows := map[string]l3vni{}
	for _, l := range strings.Split(string(out), "\n") {
		// VRF VNI VxLAN-IF L3-SVI State Rmac
		if f := strings.Fields(l); len(f) >= 5 && f[0] != "VRF" {
			rows[f[0]] = l3vni{vxlan: f[2], state: f[4]}
		}
	}
	return rows, nil
}

// waitVRFs waits until zebra sees every VRF of names.
func (t *Target) waitVRFs(ctx context.Context, names []string) error {
	ctx, cancel := context.WithTimeout(ctx, t.cfg.VRFTimeout)
	defer cancel()
	for {
		have, err := t.knownVRFs(ctx)
		if err == nil && !slices.ContainsFunc(names, func(n string) bool { return !slices.Contains(have, n) }) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("zebra does not see vrfs %v (has %v): %w", names, have, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitL3VNIs waits until zebra has the L3VNI of every VRF up with its VXLAN device.
func (t *Target) waitL3VNIs(ctx context.Context, vrfs []render.LinkVRF) error {
	ctx, cancel := context.WithTimeout(ctx, t.cfg.VRFTimeout)
	defer cancel()
	for {
		rows, err := t.l3vnis(ctx)
		pending := []string{}
		for _, v := range vrfs {
			r, ok := rows[v.Name]
			switch {
			case err != nil || !ok || r.vxlan != v.VXLAN || r.state != "Up":
				pending = append(pending, v.Name)
			}
		}
		if len(pending) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("l3vnis of %v not up in zebra: %w", pending, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
