package fabric

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/switch-agent/agent"
	"github.com/metalforge/metalforge/switch-agent/nsvrf"
	"github.com/metalforge/metalforge/switch-agent/render"
)

// AgentsConfig connects the leaves' switch agents to metal-api.
type AgentsConfig struct {
	API         string
	Token       string
	PartitionID string
	// PollInterval of the desired state (default 250ms: the lab measures convergence).
	PollInterval time.Duration
	// LLDPInterval of the switches' announcements (default 1s, so hosts learn their port fast).
	LLDPInterval time.Duration
	Log          *slog.Logger
}

// Agents is the set of running switch agents.
type Agents struct {
	List []*agent.Agent
	wg   sync.WaitGroup
	errs []error
	mu   sync.Mutex
}

// RunAgents starts one switch agent per leaf, in-process, until ctx ends; Wait waits for them.
func (f *Fabric) RunAgents(ctx context.Context, cfg AgentsConfig) (*Agents, error) {
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 250 * time.Millisecond
	}
	if cfg.LLDPInterval == 0 {
		cfg.LLDPInterval = time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	as := &Agents{}
	for _, l := range f.Leaves {
		dev, err := nsvrf.New(nsvrf.Config{Netns: l.NetnsPath(), VRFDir: l.VRFDir, PXENetns: l.PXENetns, Ports: l.Ports,
			FRR: l.FRR, Log: cfg.Log.With("leaf", l.Name)})
		if err != nil {
			return nil, fmt.Errorf("lab agents: %w", err)
		}
		a, err := agent.New(agent.Config{
			SwitchID: l.Name, PartitionID: cfg.PartitionID, RackID: "rack1", ManagementIP: l.Loopback.String(),
			OS: api.SwitchOS{Vendor: "metalforge-lab", Version: "frr-8"}, API: cfg.API, Token: cfg.Token,
			Switch: l.RenderSwitch(f.cfg.Keepalive, f.cfg.Hold), Renderer: render.Lab{}, Device: dev, Validator: l.FRR,
			LLDP: true, PollInterval: cfg.PollInterval, LLDPInterval: cfg.LLDPInterval, ReportInterval: 2 * time.Second,
			ErrorBackoff: time.Second, Log: cfg.Log,
		})
		if err != nil {
			return nil, fmt.Errorf("lab agents: %w", err)
		}
		as.List = append(as.List, a)
	}
	for _, a := range as.List {
		as.wg.Add(1)
		go func() {
			defer as.wg.Done()
			if err := a.Run(ctx); err != nil {
				as.mu.Lock()
				as.errs = append(as.errs, err)
				as.mu.Unlock()
			}
		}()
	}
	return as, nil
}

// Wait waits until every agent has stopped and returns their errors.
func (as *Agents) Wait() error {
	as.wg.Wait()
	as.mu.Lock()
	defer as.mu.Unlock()
	if len(as.errs) > 0 {
		return fmt.Errorf("switch agents: %v", as.errs)
	}
	return nil
}
