// Package nos is the switch agent's device for a Linux network OS configured by files, the
// Cumulus layout of switch-agent/render: it writes /etc/network/interfaces and /etc/frr/frr.conf
// atomically, runs ifreload when the interfaces changed, reloads FRR with frr-reload.py (so that
// untouched sessions stay up), and observes ports with netlink and BGP sessions with vtysh.
package nos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/fabric"
	"github.com/metalforge/metalforge/switch-agent/render"
)

// FRR is the part of frr.Tools the device uses.
type FRR interface {
	Reload(ctx context.Context, conf []byte) error
	ShowJSON(ctx context.Context, cmd string, v any) error
}

// Config describes the switch.
type Config struct {
	// Root prefixes every file path (default "/"; tests use a temporary directory).
	Root string
	// Ports are the front ports.
	Ports []string
	// IfReload runs after the interfaces file changed (default: ifreload -a).
	IfReload []string
	FRR      FRR
	Log      *slog.Logger
}

// Device is a file-configured switch. Apply is called from one goroutine at a time.
type Device struct {
	cfg Config
	// ifPending remembers a failed ifreload, so that the next Apply runs it again although the
	// interfaces file no longer changes.
	ifPending bool
}

// New checks the config.
func New(cfg Config) (*Device, error) {
	if cfg.FRR == nil {
		return nil, errors.New("nos: frr is required")
	}
	if cfg.Root == "" {
		cfg.Root = "/"
	}
	if cfg.IfReload == nil {
		cfg.IfReload = []string{"ifreload", "-a"}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Device{cfg: cfg}, nil
}

// Apply writes the files that changed, reloads the interfaces if theirs did, then reloads FRR.
func (d *Device) Apply(ctx context.Context, c *render.Config) error {
	ifChanged := false
	for _, f := range c.Files {
		changed, err := writeIfChanged(filepath.Join(d.cfg.Root, f.Path), f.Data)
		if err != nil {
			return fmt.Errorf("apply: %w", err)
		}
		if changed {
			d.cfg.Log.Info("file written", "path", f.Path)
		}
		if changed && f.Path == render.CumulusInterfacesPath {
			ifChanged = true
		}
	}
	if (ifChanged || d.ifPending) && len(d.cfg.IfReload) > 0 {
		d.ifPending = true
		ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, d.cfg.IfReload[0], d.cfg.IfReload[1:]...)
		cmd.WaitDelay = time.Second
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apply: %v: %w: %s", d.cfg.IfReload, err, bytes.TrimSpace(out))
		}
		d.ifPending = false
	}
	if err := d.cfg.FRR.Reload(ctx, c.FRR); err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	return nil
}

// writeIfChanged replaces a file atomically (temporary file, fsync, rename) unless it already has
// the content.
func writeIfChanged(path string, data []byte) (bool, error) {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return false, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return false, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Close(); err != nil {
		return false, err
	}
	return true, os.Rename(tmp.Name(), path)
}

// Ports lists the front ports with their MACs.
func (d *Device) Ports(context.Context) ([]api.SwitchPort, error) {
	var out []api.SwitchPort
	for _, p := range d.cfg.Ports {
		l, err := netlink.LinkByName(p)
		if err != nil {
			return nil, fmt.Errorf("port %s: %w", p, err)
		}
		out = append(out, api.SwitchPort{Name: p, MAC: l.Attrs().HardwareAddr.String()})
	}
	return out, nil
}

// Observe reports per port: in a VRF (tenant), in the bridge (pxe) or routed (firewall), down, and
// the BGP session state.
func (d *Device) Observe(ctx context.Context) ([]fabric.SwitchPortReport, error) {
	var raw map[string]map[string]json.RawMessage
	if err := d.cfg.FRR.ShowJSON(ctx, "show bgp vrf all summary json", &raw); err != nil {
		return nil, fmt.Errorf("observe: %w", err)
	}
	bgp := map[[2]string]string{}
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
				if _, seen := bgp[[2]string{vrf, peer}]; !seen || af == "ipv4Unicast" {
					bgp[[2]string{vrf, peer}] = p.State
				}
			}
		}
	}
	var out []fabric.SwitchPortReport
	for _, p := range d.cfg.Ports {
		r := fabric.SwitchPortReport{Name: p}
		l, err := netlink.LinkByName(p)
		if err != nil {
			r.ActualState = "missing"
			out = append(out, r)
			continue
		}
		r.ActualState, r.BGPState = fabric.PortFirewall, bgp[[2]string{"default", p}]
		if idx := l.Attrs().MasterIndex; idx != 0 {
			if m, err := netlink.LinkByIndex(idx); err == nil {
				switch m.(type) {
				case *netlink.Vrf:
					r.ActualState, r.VRF, r.BGPState = fabric.PortTenant, m.Attrs().Name, bgp[[2]string{m.Attrs().Name, p}]
				case *netlink.Bridge:
					r.ActualState, r.BGPState = fabric.PortPXE, ""
				}
			}
		}
		if l.Attrs().OperState == netlink.OperDown || l.Attrs().Flags&net.FlagUp == 0 {
			r.ActualState = "down"
		}
		out = append(out, r)
	}
	return out, nil
}
