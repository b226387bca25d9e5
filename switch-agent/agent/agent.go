// Package agent is the switch agent as a library: it registers its switch with metal-api (ports,
// MACs, OS, management address), polls the switch's desired state, renders it for its target,
// validates the FRR part offline, applies it, and reports every sync (time, duration, error, port
// and BGP states, and the machine NICs it sees on its ports by LLDP). All connections go out to
// metal-api; nothing dials in.
//
// An unchanged desired revision is not applied again, except every ResyncInterval (to repair drift)
// and after a failed apply (after ErrorBackoff).
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/fabric"
	"github.com/metalforge/metalforge/pkg/frr"
	"github.com/metalforge/metalforge/switch-agent/render"
)

// Renderer renders desired state for one switch OS layout (render.Lab, render.Cumulus).
type Renderer interface {
	Render(in render.Input) (*render.Config, error)
}

// Device is the switch the agent runs on: it lists its ports, applies a rendered config and
// observes the result (switch-agent/nsvrf for the lab, switch-agent/nos for file-based NOSes).
type Device interface {
	Ports(ctx context.Context) ([]api.SwitchPort, error)
	Apply(ctx context.Context, c *render.Config) error
	Observe(ctx context.Context) ([]fabric.SwitchPortReport, error)
}

// Validator checks an FRR config offline (frr.Tools).
type Validator interface {
	Validate(ctx context.Context, conf []byte) error
}

// Config is everything the agent needs. Zero durations take the defaults in Defaults.
type Config struct {
	// SwitchID is the switch's ID in metal-api (usually its hostname).
	SwitchID     string
	PartitionID  string
	RackID       string
	ManagementIP string
	OS           api.SwitchOS
	// API is metal-api's REST base URL, Token a service token.
	API   string
	Token string
	// Switch is the switch's own part of the config (ASN, loopback, uplinks, timers).
	Switch    render.Switch
	Renderer  Renderer
	Device    Device
	Validator Validator
	// LLDP enables announcing the switch on its ports and learning neighbours.
	LLDP bool
	// PollInterval is how often the desired state is fetched (default 1s).
	PollInterval time.Duration
	// ResyncInterval re-applies an unchanged desired state (default 5m).
	ResyncInterval time.Duration
	// ReportInterval reports port and BGP states without a change (default 15s).
	ReportInterval time.Duration
	// ErrorBackoff is the pause before retrying a failed apply of the same revision (default 5s).
	ErrorBackoff time.Duration
	// LLDPInterval is the period of LLDP announcements (default 10s; TTL is 4 times that).
	LLDPInterval time.Duration
	HTTPClient   *http.Client
	Log          *slog.Logger
}

// Defaults fills zero fields.
func (c *Config) Defaults() {
	if c.PollInterval == 0 {
		c.PollInterval = time.Second
	}
	if c.ResyncInterval == 0 {
		c.ResyncInterval = 5 * time.Minute
	}
	if c.ReportInterval == 0 {
		c.ReportInterval = 15 * time.Second
	}
	if c.ErrorBackoff == 0 {
		c.ErrorBackoff = 5 * time.Second
	}
	if c.LLDPInterval == 0 {
		c.LLDPInterval = 10 * time.Second
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if c.Validator == nil {
		c.Validator = frr.Tools{}
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

// Status is what the agent did last.
type Status struct {
	Registered bool
	// Revision is the last desired revision applied successfully, Applied when.
	Revision string
	Applied  time.Time
	// Applies counts apply attempts; Err is the last attempt's error.
	Applies int
	Err     error
}

// Agent is one running switch agent.
type Agent struct {
	cfg    Config
	api    *client
	lldp   *neighbors
	mu     sync.Mutex
	status Status
	// loop state, only touched by Run's goroutine
	lastAttempt, lastReport time.Time
	attempted               string
	// last is the report of the last apply; periodic state reports repeat its sync fields.
	last fabric.SwitchSyncReport
}

// New checks cfg and builds an agent.
func New(cfg Config) (*Agent, error) {
	cfg.Defaults()
	switch {
	case cfg.SwitchID == "" || cfg.PartitionID == "":
		return nil, errors.New("switch agent: switch id and partition are required")
	case cfg.API == "" || cfg.Token == "":
		return nil, errors.New("switch agent: metal-api url and token are required")
	case cfg.Renderer == nil || cfg.Device == nil:
		return nil, errors.New("switch agent: renderer and device are required")
	}
	a := &Agent{cfg: cfg, api: &client{base: cfg.API, token: cfg.Token, http: cfg.HTTPClient}, lldp: newNeighbors()}
	return a, nil
}

// Status returns a copy of the agent's status.
func (a *Agent) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.status
}

func (a *Agent) update(fn func(*Status)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	fn(&a.status)
}

// Run registers the switch and keeps it in sync until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	log := a.cfg.Log.With("switch", a.cfg.SwitchID)
	if a.cfg.LLDP {
		ports, err := a.cfg.Device.Ports(ctx)
		if err != nil {
			return fmt.Errorf("switch agent: %w", err)
		}
		for _, p := range ports {
			go a.lldpPort(ctx, p.Name, log)
		}
	}
	tick := time.NewTicker(a.cfg.PollInterval)
	defer tick.Stop()
	for {
		if err := a.Sync(ctx); err != nil && ctx.Err() == nil {
			log.Warn("sync failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// Sync is one iteration: register if needed, fetch the desired state, apply it if it changed (or
// is due again), and report.
func (a *Agent) Sync(ctx context.Context) error {
	if !a.Status().Registered {
		if err := a.register(ctx); err != nil {
			return err
		}
	}
	d, err := a.api.desired(ctx, a.cfg.SwitchID)
	var se *statusError
	if errors.As(err, &se) && se.code == http.StatusNotFound {
		a.update(func(s *Status) { s.Registered = false }) // deleted in metal-api: register again
	}
	if err != nil {
		return err
	}
	st := a.Status()
	now := time.Now()
	due := d.Revision != st.Revision && (d.Revision != a.attempted || now.Sub(a.lastAttempt) >= a.cfg.ErrorBackoff)
	due = due || now.Sub(st.Applied) >= a.cfg.ResyncInterval && now.Sub(a.lastAttempt) >= a.cfg.ErrorBackoff
	if !due {
		if now.Sub(a.lastReport) < a.cfg.ReportInterval {
			return nil
		}
		r := a.last
		return a.report(ctx, &r)
	}
	start := time.Now()
	a.lastAttempt, a.attempted = start, d.Revision
	applyErr := a.apply(ctx, d)
	dur := time.Since(start)
	a.update(func(s *Status) {
		s.Applies++
		s.Err = applyErr
		if applyErr == nil {
			s.Revision, s.Applied = d.Revision, time.Now()
		}
	})
	if applyErr != nil {
		a.cfg.Log.Error("apply failed", "switch", a.cfg.SwitchID, "revision", d.Revision, "err", applyErr)
	} else {
		a.cfg.Log.Info("desired state applied", "switch", a.cfg.SwitchID, "revision", d.Revision, "vrfs", len(d.VRFs),
			"duration", dur)
	}
	a.last = fabric.SwitchSyncReport{Time: start, Duration: dur, Revision: d.Revision, Error: errString(applyErr)}
	r := a.last
	return a.report(ctx, &r)
}

func (a *Agent) apply(ctx context.Context, d *fabric.SwitchDesired) error {
	c, err := a.cfg.Renderer.Render(render.Input{Switch: a.cfg.Switch, Desired: d})
	if err != nil {
		return err
	}
	if err := a.cfg.Validator.Validate(ctx, c.FRR); err != nil {
		return err // never apply what vtysh rejects
	}
	return a.cfg.Device.Apply(ctx, c)
}

func (a *Agent) register(ctx context.Context) error {
	ports, err := a.cfg.Device.Ports(ctx)
	if err != nil {
		return fmt.Errorf("register switch: %w", err)
	}
	sw := &api.Switch{Meta: api.Meta{ID: a.cfg.SwitchID, Name: a.cfg.SwitchID}, PartitionID: a.cfg.PartitionID,
		RackID: a.cfg.RackID, OS: a.cfg.OS, ManagementIP: a.cfg.ManagementIP, Ports: ports}
	if err := a.api.register(ctx, sw); err != nil {
		return err
	}
	a.update(func(s *Status) { s.Registered = true })
	a.cfg.Log.Info("switch registered", "switch", a.cfg.SwitchID, "ports", len(ports))
	return nil
}

// report completes r with observed port states and LLDP neighbours and sends it.
func (a *Agent) report(ctx context.Context, r *fabric.SwitchSyncReport) error {
	ports, err := a.cfg.Device.Observe(ctx)
	if err != nil {
		a.cfg.Log.Warn("observe failed", "switch", a.cfg.SwitchID, "err", err)
	}
	r.Ports = ports
	r.Neighbors = a.lldp.list()
	a.lastReport = time.Now()
	return a.api.sync(ctx, a.cfg.SwitchID, r)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
