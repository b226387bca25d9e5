// Command metal-bench measures metal-api (get, find, allocate latency and allocation rate) on the
// embedded SQLite store and on PostgreSQL with one and two replicas, in one run. `make bench`.
package main

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/metalforge/metalforge/pkg/bench"
)

func main() {
	var c bench.Config
	flag.IntVar(&c.Machines, "machines", 10000, "registered waiting machines")
	flag.IntVar(&c.Samples, "samples", 2000, "get requests per scenario (find: a quarter)")
	flag.IntVar(&c.Allocations, "allocations", 1000, "allocations per scenario")
	flag.IntVar(&c.Concurrency, "concurrency", 16, "concurrent REST clients")
	flag.BoolVar(&c.Postgres, "postgres", true, "also run the PostgreSQL scenarios (starts a throwaway server)")
	flag.DurationVar(&c.Heartbeat, "heartbeat", 0, "Alive event interval per machine (default 1m)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			slog.Error("cpu profile", "err", err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			slog.Error("cpu profile", "err", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := bench.Run(ctx, log, os.Stdout, c); err != nil {
		log.Error("benchmark failed", "err", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}
