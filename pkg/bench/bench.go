// Package bench measures metal-api under load, all scenarios in one run so the figures can be
// compared side by side: an embedded SQLite control plane, PostgreSQL with one replica and with two
// replicas sharing the database. Each scenario registers Config.Machines waiting machines, keeps
// them alive with heartbeats over the gRPC boot service while it measures REST get, find and
// allocate latencies and the allocation rate. Nothing is asserted; goals are printed next to the
// figures.
package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sort"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/metalforge/metalforge/pkg/apiserver"
	"github.com/metalforge/metalforge/pkg/pgtest"
)

// Config sets the size of the run.
type Config struct {
	Machines    int // registered waiting machines (default 10000)
	Samples     int // get and find requests per scenario (default 2000)
	Allocations int // allocations per scenario (default 1000)
	Concurrency int // concurrent REST clients (default 16)
	Postgres    bool
	// Heartbeat is how often every machine sends an Alive event (default 60s, spread evenly).
	Heartbeat time.Duration
}

func (c *Config) defaults() {
	if c.Machines == 0 {
		c.Machines = 10000
	}
	if c.Samples == 0 {
		c.Samples = 2000
	}
	if c.Allocations == 0 {
		c.Allocations = 1000
	}
	if c.Concurrency == 0 {
		c.Concurrency = 16
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = time.Minute
	}
}

const token = "bench-admin-secret"

// result of one scenario.
type result struct {
	name                 string
	get, find, alloc     []time.Duration
	allocRate            float64
	heartbeats, hbErrors int
	seed                 time.Duration
}

// Run runs every scenario and writes the report to w.
func Run(ctx context.Context, log *slog.Logger, w io.Writer, cfg Config) error {
	cfg.defaults()
	var results []result
	dir, err := os.MkdirTemp("", "metal-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	r, err := scenario(ctx, log, cfg, "sqlite (embedded)", []apiserver.Config{{DataDir: dir + "/sqlite"}})
	if err != nil {
		return fmt.Errorf("sqlite: %w", err)
	}
	results = append(results, r)
	if cfg.Postgres {
		pg, err := pgtest.New(ctx, "")
		if err != nil {
			return fmt.Errorf("start postgres: %w", err)
		}
		defer pg.Stop()
		for _, replicas := range []int{1, 2} {
			dsn, err := pg.CreateDB(ctx, fmt.Sprintf("bench%d", replicas))
			if err != nil {
				return err
			}
			var cfgs []apiserver.Config
			for range replicas {
				cfgs = append(cfgs, apiserver.Config{DB: dsn})
			}
			r, err := scenario(ctx, log, cfg, fmt.Sprintf("postgres, %d replica(s)", replicas), cfgs)
			if err != nil {
				return fmt.Errorf("postgres x%d: %w", replicas, err)
			}
			results = append(results, r)
		}
	}
	report(w, cfg, results)
	return nil
}

// scenario seeds a store, starts the replicas and measures them.
func scenario(ctx context.Context, log *slog.Logger, cfg Config, name string, replicas []apiserver.Config) (result, error) {
	res := result{name: name}
	start := time.Now()
	if err := seedStore(ctx, replicas[0], cfg.Machines); err != nil {
		return res, fmt.Errorf("seed: %w", err)
	}
	res.seed = time.Since(start)
	log.Info("seeded", "scenario", name, "machines", cfg.Machines, "took", res.seed.Round(time.Millisecond).String())

	sctx, stop := context.WithCancel(ctx)
	defer stop()
	var rest, grpc []string
	var wg sync.WaitGroup
	errs := make(chan error, len(replicas))
	for _, c := range replicas {
		ready := make(chan struct{})
		c.Listen, c.GRPCListen, c.AdminToken = "127.0.0.1:0", "127.0.0.1:0", token
		c.Ready = func(r, g net.Addr) {
			rest, grpc = append(rest, r.String()), append(grpc, g.String())
			close(ready)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := apiserver.Start(sctx, c, log.With("scenario", name)); err != nil {
				errs <- err
			}
		}()
		select {
		case <-ready:
		case err := <-errs:
			return res, err
		case <-time.After(time.Minute):
			return res, fmt.Errorf("replica did not start")
		}
	}
	defer func() { stop(); wg.Wait() }()

	hb := startHeartbeats(sctx, grpc, cfg)
	clients := newClients(rest, cfg.Concurrency)
	var err error
	if res.get, err = measure(sctx, clients, cfg.Samples, getMachine(cfg.Machines)); err != nil {
		return res, fmt.Errorf("get: %w", err)
	}
	if res.find, err = measure(sctx, clients, cfg.Samples/4, findMachines); err != nil {
		return res, fmt.Errorf("find: %w", err)
	}
	t0 := time.Now()
	if res.alloc, err = measure(sctx, clients, cfg.Allocations, allocate); err != nil {
		return res, fmt.Errorf("allocate: %w", err)
	}
	res.allocRate = float64(cfg.Allocations) / time.Since(t0).Seconds()
	stop()
	res.heartbeats, res.hbErrors = hb.wait()
	return res, nil
}

func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d.Microseconds())/1000) }

func report(w io.Writer, cfg Config, rs []result) {
	fmt.Fprintf(w, "\nmetal-api with %d registered machines, %d concurrent clients, heartbeats every %s per machine\n\n",
		cfg.Machines, cfg.Concurrency, cfg.Heartbeat)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tget p50 ms\tget p99 ms\tfind p50 ms\tfind p99 ms\talloc p50 ms\talloc p99 ms\tallocations/s\theartbeats\tseed s\t")
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.0f\t%d (%d err)\t%.1f\t\n", r.name,
			ms(pct(r.get, .5)), ms(pct(r.get, .99)), ms(pct(r.find, .5)), ms(pct(r.find, .99)),
			ms(pct(r.alloc, .5)), ms(pct(r.alloc, .99)), r.allocRate, r.heartbeats, r.hbErrors, r.seed.Seconds())
	}
	tw.Flush()
	if len(rs) > 1 {
		fmt.Fprintf(w, "\nratios against %s (same run):\n", rs[0].name)
		for _, r := range rs[1:] {
			fmt.Fprintf(w, "  %-24s get p99 x%.2f  find p99 x%.2f  alloc p99 x%.2f  allocations/s x%.2f\n", r.name,
				ratio(pct(r.get, .99), pct(rs[0].get, .99)), ratio(pct(r.find, .99), pct(rs[0].find, .99)),
				ratio(pct(r.alloc, .99), pct(rs[0].alloc, .99)), r.allocRate/rs[0].allocRate)
		}
	}
	fmt.Fprintf(w, "\ngoals: p99 < 50 ms for get, find and allocate; >= 200 allocations/s embedded (%s: %.0f/s)\n",
		rs[0].name, rs[0].allocRate)
}

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}
