// Package agent is the partition's BMC agent as a library: it polls metal-api for the pending BMC
// commands of its partition, executes each with the machine's BMC (IPMI by default, Redfish for
// http(s) addresses), marks it done with the error text of a failure, and reports the power state
// of the machines it has seen. Commands of one machine run in order, machines in parallel up to a
// bound, every command under a timeout. The agent only connects out to metal-api.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/bmc"
)

// Config of the agent. Zero values take the defaults of Defaults.
type Config struct {
	// APIURL is metal-api's REST base URL, Token a service token (scoped to Partition).
	APIURL    string
	Token     string
	Partition string
	// PollInterval is how often pending commands are fetched (default 5s).
	PollInterval time.Duration
	// ReportInterval is how often the power state of known machines is reported (default 60s).
	ReportInterval time.Duration
	// CommandTimeout bounds one command, including a power cycle's wait (default 2m).
	CommandTimeout time.Duration
	// BMCTimeout bounds one request to a BMC (default 5s).
	BMCTimeout time.Duration
	// Concurrency is how many machines are worked on at once (default 8).
	Concurrency int
	// Protocol is the default BMC protocol: bmc.ProtocolIPMI (default) or bmc.ProtocolRedfish;
	// http(s):// BMC addresses always use Redfish.
	Protocol string
	// RedfishInsecure skips TLS verification of Redfish BMCs.
	RedfishInsecure bool
	// HTTPClient talks to metal-api (default: one with a 30s timeout).
	HTTPClient *http.Client
	// Dial, if set, opens the connections to BMCs.
	Dial bmc.DialFunc
	// Open builds a BMC from its config (default bmc.Open); tests put fakes here.
	Open func(bmc.Config) (bmc.BMC, error)
	Log  *slog.Logger
}

// Defaults fills zero fields.
func (c *Config) Defaults() {
	if c.PollInterval == 0 {
		c.PollInterval = 5 * time.Second
	}
	if c.ReportInterval == 0 {
		c.ReportInterval = time.Minute
	}
	if c.CommandTimeout == 0 {
		c.CommandTimeout = 2 * time.Minute
	}
	if c.BMCTimeout == 0 {
		c.BMCTimeout = 5 * time.Second
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 8
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if c.Open == nil {
		c.Open = bmc.Open
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

func (c *Config) validate() error {
	var errs []error
	if c.APIURL == "" {
		errs = append(errs, errors.New("api url is empty"))
	}
	if c.Token == "" {
		errs = append(errs, errors.New("token is empty"))
	}
	if c.Partition == "" {
		errs = append(errs, errors.New("partition is empty"))
	}
	if c.Protocol != "" && c.Protocol != bmc.ProtocolIPMI && c.Protocol != bmc.ProtocolRedfish {
		errs = append(errs, fmt.Errorf("protocol %q is not ipmi or redfish", c.Protocol))
	}
	return errors.Join(errs...)
}

// Agent is one running agent; Run is the usual entry point.
type Agent struct {
	cfg Config
	api *apiClient
	sem chan struct{}

	mu      sync.Mutex
	busy    map[string]bool               // machine IDs with a worker
	known   map[string]machineBMC         // machines seen in commands, for power reports
	acked   map[string]time.Time          // commands executed and acknowledged (skipped if listed again)
	unacked map[string]api.BMCCommandDone // commands executed whose done call failed
	wg      sync.WaitGroup
}

type machineBMC struct {
	bmc api.MachineBMC
	led string
}

// New checks cfg and returns an agent.
func New(cfg Config) (*Agent, error) {
	cfg.Defaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("bmc agent config: %w", err)
	}
	return &Agent{
		cfg:     cfg,
		api:     &apiClient{base: strings.TrimSuffix(cfg.APIURL, "/"), token: cfg.Token, hc: cfg.HTTPClient},
		sem:     make(chan struct{}, cfg.Concurrency),
		busy:    map[string]bool{},
		known:   map[string]machineBMC{},
		acked:   map[string]time.Time{},
		unacked: map[string]api.BMCCommandDone{},
	}, nil
}

// Run runs the agent until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	a, err := New(cfg)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

// Run polls and reports until ctx ends, then waits for running commands (which end with ctx).
func (a *Agent) Run(ctx context.Context) error {
	a.cfg.Log.Info("bmc agent started", "api", a.cfg.APIURL, "partition", a.cfg.Partition,
		"pollInterval", a.cfg.PollInterval.String(), "concurrency", a.cfg.Concurrency)
	poll := time.NewTicker(a.cfg.PollInterval)
	defer poll.Stop()
	report := time.NewTicker(a.cfg.ReportInterval)
	defer report.Stop()
	a.Poll(ctx)
	for {
		select {
		case <-ctx.Done():
			a.wg.Wait()
			a.cfg.Log.Info("bmc agent stopped")
			return nil
		case <-poll.C:
			a.Poll(ctx)
		case <-report.C:
			a.ReportAll(ctx)
		}
	}
}

// Poll fetches the pending commands once and starts a worker for every machine that has some and
// none running. It does not wait for the workers (Wait does).
func (a *Agent) Poll(ctx context.Context) {
	a.retryAcks(ctx)
	cmds, err := a.api.pending(ctx, a.cfg.Partition)
	if err != nil {
		a.cfg.Log.Warn("list pending bmc commands failed", "err", err)
		return
	}
	byMachine := map[string][]*api.BMCCommand{}
	var order []string
	a.mu.Lock()
	for id, t := range a.acked {
		if time.Since(t) > 10*time.Minute {
			delete(a.acked, id)
		}
	}
	for _, c := range cmds {
		if _, done := a.acked[c.ID]; done {
			continue
		}
		if _, pending := a.unacked[c.ID]; pending {
			continue
		}
		if c.BMC != nil && c.BMC.Address != "" {
			k := a.known[c.MachineID]
			k.bmc = *c.BMC
			a.known[c.MachineID] = k
		}
		if a.busy[c.MachineID] {
			continue // its worker is running; the command comes again with the next poll
		}
		if byMachine[c.MachineID] == nil {
			order = append(order, c.MachineID)
		}
		byMachine[c.MachineID] = append(byMachine[c.MachineID], c)
	}
	for _, m := range order {
		a.busy[m] = true
	}
	a.mu.Unlock()
	for _, m := range order {
		a.wg.Add(1)
		go a.work(ctx, m, byMachine[m])
	}
}

// Wait waits for the running workers.
func (a *Agent) Wait() { a.wg.Wait() }

// work executes the commands of one machine in order, then reports its power state.
func (a *Agent) work(ctx context.Context, machineID string, cmds []*api.BMCCommand) {
	defer a.wg.Done()
	defer func() {
		a.mu.Lock()
		delete(a.busy, machineID)
		a.mu.Unlock()
	}()
	select {
	case a.sem <- struct{}{}:
	case <-ctx.Done():
		return
	}
	defer func() { <-a.sem }()
	for _, c := range cmds {
		if ctx.Err() != nil {
			return
		}
		done := a.execute(ctx, c)
		if err := a.api.done(ctx, c.ID, done); err != nil {
			a.cfg.Log.Warn("mark bmc command done failed", "command", c.ID, "machine", machineID, "err", err)
			a.mu.Lock()
			a.unacked[c.ID] = done
			a.mu.Unlock()
			continue
		}
		a.mu.Lock()
		a.acked[c.ID] = time.Now()
		a.mu.Unlock()
	}
	a.report(ctx, machineID)
}

// execute runs one command and returns what to acknowledge.
func (a *Agent) execute(ctx context.Context, c *api.BMCCommand) api.BMCCommandDone {
	log := a.cfg.Log.With("command", c.ID, "machine", c.MachineID, "op", c.Command)
	if c.BMC == nil || c.BMC.Address == "" {
		log.Warn("bmc command skipped: machine has no bmc address")
		return api.BMCCommandDone{Error: "machine has no bmc address"}
	}
	b, err := a.open(*c.BMC)
	if err != nil {
		log.Warn("bmc command failed", "err", err)
		return api.BMCCommandDone{Error: err.Error()}
	}
	cctx, cancel := context.WithTimeout(ctx, a.cfg.CommandTimeout)
	defer cancel()
	start := time.Now()
	err = bmc.Execute(cctx, b, c.Command)
	if err != nil {
		log.Warn("bmc command failed", "err", err, "duration", time.Since(start).String())
		return api.BMCCommandDone{Error: err.Error()}
	}
	log.Info("bmc command executed", "duration", time.Since(start).String())
	if c.Command == api.LEDOn || c.Command == api.LEDOff {
		a.mu.Lock()
		k := a.known[c.MachineID]
		k.led = map[string]string{api.LEDOn: bmc.LEDStateOn, api.LEDOff: bmc.LEDStateOff}[c.Command]
		a.known[c.MachineID] = k
		a.mu.Unlock()
	}
	return api.BMCCommandDone{}
}

func (a *Agent) open(b api.MachineBMC) (bmc.BMC, error) {
	cfg := bmc.ConfigOf(b)
	cfg.Protocol = a.cfg.Protocol
	if strings.HasPrefix(b.Address, "http://") || strings.HasPrefix(b.Address, "https://") {
		cfg.Protocol = bmc.ProtocolRedfish
	}
	cfg.Timeout, cfg.Insecure, cfg.Dial = a.cfg.BMCTimeout, a.cfg.RedfishInsecure, a.cfg.Dial
	return a.cfg.Open(cfg)
}

// retryAcks re-sends done calls that failed, without executing the commands again.
func (a *Agent) retryAcks(ctx context.Context) {
	a.mu.Lock()
	pending := make(map[string]api.BMCCommandDone, len(a.unacked))
	for id, d := range a.unacked {
		pending[id] = d
	}
	a.mu.Unlock()
	for id, d := range pending {
		if err := a.api.done(ctx, id, d); err != nil {
			a.cfg.Log.Warn("mark bmc command done failed", "command", id, "err", err)
			continue
		}
		a.mu.Lock()
		delete(a.unacked, id)
		a.acked[id] = time.Now()
		a.mu.Unlock()
	}
}

// report reads and reports the power state of one known machine.
func (a *Agent) report(ctx context.Context, machineID string) {
	a.mu.Lock()
	k, ok := a.known[machineID]
	a.mu.Unlock()
	if !ok || k.bmc.Address == "" {
		return
	}
	b, err := a.open(k.bmc)
	if err != nil {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, 3*a.cfg.BMCTimeout)
	defer cancel()
	state, err := b.PowerState(rctx)
	if err != nil {
		a.cfg.Log.Warn("read power state failed", "machine", machineID, "err", err)
		return
	}
	if err := a.api.report(ctx, machineID, api.BMCReport{PowerState: state, LED: k.led}); err != nil {
		a.cfg.Log.Warn("report power state failed", "machine", machineID, "err", err)
	}
}

// ReportAll reports the power state of every known machine without a running worker, in
// parallel up to the concurrency bound, and waits for it.
func (a *Agent) ReportAll(ctx context.Context) {
	a.mu.Lock()
	var ids []string
	for id := range a.known {
		if !a.busy[id] {
			ids = append(ids, id)
		}
	}
	a.mu.Unlock()
	var wg sync.WaitGroup
	for _, id := range ids {
		select {
		case a.sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-a.sem }()
			a.report(ctx, id)
		}()
	}
	wg.Wait()
}
