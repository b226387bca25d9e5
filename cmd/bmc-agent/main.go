// Command bmc-agent is a partition's BMC agent: it executes metal-api's queued power, boot and LED
// commands on the machines' BMCs (IPMI over LAN, or Redfish) and reports their power state.
//
//	bmc-agent --api-url http://metal-api:8080 --partition lab --token-file /etc/metalforge/bmc-agent.token
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/metalforge/metalforge/pkg/bmc/agent"
)

var version = "dev"

func main() {
	var c agent.Config
	fs := flag.NewFlagSet("bmc-agent", flag.ExitOnError)
	fs.StringVar(&c.APIURL, "api-url", env("BMC_AGENT_API_URL", "http://127.0.0.1:8080"), "metal-api REST base URL")
	fs.StringVar(&c.Partition, "partition", env("BMC_AGENT_PARTITION", ""), "partition whose commands to execute")
	tokenFile := fs.String("token-file", env("BMC_AGENT_TOKEN_FILE", ""), "file holding the service token (else $BMC_AGENT_TOKEN)")
	fs.DurationVar(&c.PollInterval, "poll-interval", 5*time.Second, "how often to fetch pending commands")
	fs.DurationVar(&c.ReportInterval, "report-interval", time.Minute, "how often to report the power state of known machines")
	fs.DurationVar(&c.CommandTimeout, "command-timeout", 2*time.Minute, "upper bound of one command")
	fs.DurationVar(&c.BMCTimeout, "bmc-timeout", 5*time.Second, "upper bound of one request to a BMC")
	fs.IntVar(&c.Concurrency, "concurrency", 8, "machines worked on at once")
	fs.StringVar(&c.Protocol, "protocol", env("BMC_AGENT_PROTOCOL", "ipmi"), "default BMC protocol: ipmi or redfish (http(s):// addresses are always redfish)")
	fs.BoolVar(&c.RedfishInsecure, "redfish-insecure", false, "skip TLS verification of Redfish BMCs (self-signed certificates)")
	logLevel := fs.String("log-level", env("BMC_AGENT_LOG_LEVEL", "info"), "debug, info, warn or error")
	showVersion := fs.Bool("version", false, "print the version and exit")
	_ = fs.Parse(os.Args[1:])
	if *showVersion {
		fmt.Println(version)
		return
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "bmc-agent: %v\n", err)
		os.Exit(2)
	}
	c.Token = os.Getenv("BMC_AGENT_TOKEN")
	if *tokenFile != "" {
		raw, err := os.ReadFile(*tokenFile)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bmc-agent: read token: %v\n", err)
			os.Exit(2)
		}
		c.Token = strings.TrimSpace(string(raw))
	}
	c.Log = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := agent.Run(ctx, c); err != nil {
		c.Log.Error("bmc agent failed", "err", err)
		os.Exit(1)
	}
}

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
