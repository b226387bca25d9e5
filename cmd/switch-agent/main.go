// Command switch-agent runs on a leaf switch: it registers the switch with metal-api, keeps its
// FRR and interface configuration in sync with the desired state, and reports sync results, port
// and BGP states and LLDP neighbours.
//
//	switch-agent --api https://metal-api:8080 --token-file /etc/metalforge/token --partition p1 \
//	  --asn 64513 --loopback 10.255.0.11 --uplinks swp31,swp32 --ports swp1,swp2 --target cumulus
//
// The lab target (--target lab) drives a leaf that is a network namespace, with VRFs as network
// namespaces (see switch-agent/nsvrf); pkg/lab/fabric starts the same library in-process.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/frr"
	"github.com/metalforge/metalforge/switch-agent/agent"
	"github.com/metalforge/metalforge/switch-agent/nos"
	"github.com/metalforge/metalforge/switch-agent/nsvrf"
	"github.com/metalforge/metalforge/switch-agent/render"
)

var version = "dev"

func main() {
	host, _ := os.Hostname()
	fs := flag.NewFlagSet("switch-agent", flag.ExitOnError)
	var c agent.Config
	fs.StringVar(&c.SwitchID, "id", env("SWITCH_ID", host), "switch ID in metal-api")
	fs.StringVar(&c.PartitionID, "partition", env("SWITCH_PARTITION", ""), "partition of the switch")
	fs.StringVar(&c.RackID, "rack", env("SWITCH_RACK", ""), "rack of the switch")
	fs.StringVar(&c.ManagementIP, "management-ip", env("SWITCH_MANAGEMENT_IP", ""), "management address reported to metal-api")
	fs.StringVar(&c.API, "api", env("METAL_API_URL", ""), "metal-api REST base URL")
	tokenFile := fs.String("token-file", env("METAL_API_TOKEN_FILE", ""), "file with the service token (or METAL_API_TOKEN)")
	asn := fs.Uint("asn", 0, "ASN of the switch")
	loopback := fs.String("loopback", "", "loopback address: router ID and VTEP")
	uplinks := fs.String("uplinks", "", "comma-separated fabric ports")
	ports := fs.String("ports", "", "comma-separated machine-facing ports")
	target := fs.String("target", "cumulus", "cumulus (files + ifreload + frr-reload) or lab (netns as VRF)")
	root := fs.String("root", "/", "cumulus: root directory of the files")
	netns := fs.String("netns", "", "lab: path of the switch's network namespace (default: the agent's own)")
	vrfDir := fs.String("vrf-dir", "", "lab: directory of the VRF namespaces, FRR's /run/netns")
	pxeNetns := fs.String("pxe-netns", "", "lab: namespace of the PXE bridge")
	pathspace := fs.String("frr-pathspace", "", "FRR instance (vtysh -N)")
	keepalive := fs.Int("bgp-keepalive", 0, "BGP keepalive in seconds (0: datacenter default 3)")
	hold := fs.Int("bgp-hold", 0, "BGP hold time in seconds (0: datacenter default 9)")
	connect := fs.Int("bgp-connect-retry", 0, "BGP connect retry in seconds (0: default 10)")
	raInterval := fs.Int("ra-interval", 0, "router advertisement interval on machine ports in seconds (0: FRR's 10)")
	fs.DurationVar(&c.PollInterval, "poll", time.Second, "desired state poll interval")
	fs.BoolVar(&c.LLDP, "lldp", true, "announce the switch and learn neighbours by LLDP")
	osVendor := fs.String("os-vendor", "Cumulus", "network OS vendor reported to metal-api")
	osVersion := fs.String("os-version", "", "network OS version reported to metal-api")
	logLevel := fs.String("log-level", env("SWITCH_AGENT_LOG_LEVEL", "info"), "debug, info, warn or error")
	showVersion := fs.Bool("version", false, "print the version and exit")
	_ = fs.Parse(os.Args[1:])
	if *showVersion {
		fmt.Println(version)
		return
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fail(err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	c.Log = log
	c.Token = os.Getenv("METAL_API_TOKEN")
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			fail(err)
		}
		c.Token = strings.TrimSpace(string(b))
	}
	lo, err := netip.ParseAddr(*loopback)
	if err != nil {
		fail(fmt.Errorf("--loopback: %w", err))
	}
	c.Switch = render.Switch{ASN: uint32(*asn), Loopback: lo, Uplinks: split(*uplinks), Keepalive: *keepalive, Hold: *hold,
		ConnectRetry: *connect, RAInterval: *raInterval}
	c.OS = api.SwitchOS{Vendor: *osVendor, Version: *osVersion}
	tools := frr.Tools{Pathspace: *pathspace}
	c.Validator = tools
	switch *target {
	case "cumulus":
		c.Renderer = render.Cumulus{}
		c.Device, err = nos.New(nos.Config{Root: *root, Ports: split(*ports), FRR: tools, Log: log})
	case "lab":
		c.Renderer = render.Lab{}
		c.Device, err = nsvrf.New(nsvrf.Config{Netns: *netns, VRFDir: *vrfDir, PXENetns: *pxeNetns, Ports: split(*ports), FRR: tools, Log: log})
	default:
		err = fmt.Errorf("--target %q is not cumulus or lab", *target)
	}
	if err != nil {
		fail(err)
	}
	a, err := agent.New(c)
	if err != nil {
		fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log.Info("switch agent started", "switch", c.SwitchID, "target", *target, "version", version)
	if err := a.Run(ctx); err != nil {
		log.Error("switch agent failed", "err", err)
		stop()
		os.Exit(1)
	}
}

func split(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "switch-agent: %v\n", err)
	os.Exit(2)
}
