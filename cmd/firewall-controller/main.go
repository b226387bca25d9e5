// Command firewall-controller runs on a tenant cluster's firewall machine: it reads the firewall's
// allocation (written by metal-osinit), watches the cluster's ClusterwideNetworkPolicies and
// Services and keeps `table inet firewall` in step with them (controllers/firewall).
//
//	firewall-controller [--config /etc/metalforge/firewall.json] [--kubeconfig path] \
//	  [--metrics-bind-address 127.0.0.1:2112] [--health-probe-bind-address 127.0.0.1:8081] [--log-level info]
//
// --kubeconfig overrides the config's kubeconfig; without any the controller applies the base
// ruleset (tenant networks, SNAT, rate limits) and keeps running.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/metalforge/metalforge/controllers/firewall"
	"github.com/metalforge/metalforge/pkg/api"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("firewall-controller", flag.ContinueOnError)
	configPath := fs.String("config", api.FirewallConfigPath, "firewall config (JSON, written by metal-osinit)")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig of the tenant cluster (overrides the config's)")
	// Loopback by default: the firewall faces the internet and its own ports are not filtered
	// by the forward chain. Pass the firewall's private address to let the cluster scrape it.
	metricsAddr := fs.String("metrics-bind-address", "127.0.0.1:2112", "address of /metrics (0: off)")
	healthAddr := fs.String("health-probe-bind-address", "127.0.0.1:8081", "address of /healthz and /readyz (0: off)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	dnsMinTTL := fs.Duration("dns-min-ttl", 0, "shortest time a learned FQDN address stays allowed (0: proxy default)")
	dnsMaxTTL := fs.Duration("dns-max-ttl", 0, "longest time a learned FQDN address stays allowed (0: proxy default)")
	resync := fs.Duration("resync", 10*time.Minute, "re-apply the ruleset this often")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "firewall-controller: --log-level: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	fw, err := readConfig(*configPath)
	if err != nil {
		log.Error("read firewall config", "err", err)
		return 1
	}
	if *kubeconfig != "" {
		fw.Kubeconfig = *kubeconfig
	}
	cfg := firewall.Config{
		Firewall:               fw,
		MetricsBindAddress:     *metricsAddr,
		HealthProbeBindAddress: *healthAddr,
		DNS:                    firewall.DNSConfig{MinTTL: *dnsMinTTL, MaxTTL: *dnsMaxTTL},
		Resync:                 *resync,
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := firewall.Run(ctx, cfg, log); err != nil {
		log.Error("firewall-controller failed", "err", err)
		return 1
	}
	return 0
}

func readConfig(path string) (api.FirewallConfig, error) {
	var fw api.FirewallConfig
	b, err := os.ReadFile(path)
	if err != nil {
		return fw, fmt.Errorf("read %s: %w", path, err)
	}
	if err := json.Unmarshal(b, &fw); err != nil {
		return fw, fmt.Errorf("parse %s: %w", path, err)
	}
	return fw, nil
}
