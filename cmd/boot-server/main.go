// Command boot-server is the partition boot service: DHCP (full or proxy), iPXE scripts, boot
// assets and an image cache over HTTP, and TFTP for legacy PXE ROMs, asking metal-api per MAC.
// It maps flags (or BOOT_SERVER_* environment variables) onto pkg/boot's Config and runs it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/metalforge/metalforge/pkg/boot"
	"github.com/metalforge/metalforge/pkg/boot/dhcp"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr)
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case errors.Is(err, errUsage):
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "boot-server:", err)
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

// addrList is a comma-separated list of IP addresses.
type addrList []netip.Addr

func (l *addrList) String() string {
	s := make([]string, len(*l))
	for i, a := range *l {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

func (l *addrList) Set(v string) error {
	*l = nil
	for p := range strings.SplitSeq(v, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		a, err := netip.ParseAddr(p)
		if err != nil {
			return err
		}
		*l = append(*l, a)
	}
	return nil
}

// addr is an optional IP address flag.
type addr struct{ a *netip.Addr }

func (f addr) String() string {
	if f.a == nil || !f.a.IsValid() {
		return ""
	}
	return f.a.String()
}

func (f addr) Set(v string) error {
	a, err := netip.ParseAddr(v)
	if err == nil {
		*f.a = a
	}
	return err
}

// subnets collects repeated --relay-subnet flags.
type subnets []dhcp.Subnet

func (s *subnets) String() string { return fmt.Sprintf("%d subnets", len(*s)) }

func (s *subnets) Set(v string) error {
	sub, err := boot.ParseSubnet(v)
	if err == nil {
		*s = append(*s, sub)
	}
	return err
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	var cfg boot.Config
	var mode, netmask, logLevel string
	var dns addrList
	var relayed subnets
	fs := flag.NewFlagSet("boot-server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Interface, "interface", "", "PXE network interface for DHCP and router advertisements (empty: HTTP/TFTP only)")
	fs.StringVar(&mode, "mode", string(boot.DefaultMode), "DHCP mode: full or proxy")
	fs.Var(addr{&cfg.ServerIP}, "server-ip", "this server's IPv4 address on the interface (default: the interface's first)")
	fs.Var(addr{&cfg.Subnet.First}, "range-first", "first address of the DHCP range (full mode)")
	fs.Var(addr{&cfg.Subnet.Last}, "range-last", "last address of the DHCP range (full mode)")
	fs.StringVar(&netmask, "netmask", "", "netmask of the PXE network, e.g. 255.255.255.0 (default: from the interface)")
	fs.Var(addr{&cfg.Subnet.Router}, "router", "default gateway sent to clients (option 3)")
	fs.Var(&dns, "dns", "comma-separated DNS servers sent to clients (option 6)")
	fs.Var(&relayed, "relay-subnet", "network behind a DHCP relay: CIDR,FIRST-LAST[,ROUTER[,DNS...]] (repeatable)")
	fs.DurationVar(&cfg.LeaseTime, "lease-time", boot.DefaultLeaseTime, "DHCP lease time")
	fs.BoolVar(&cfg.DisableRA, "disable-ra", false, "do not answer IPv6 router solicitations")
	fs.StringVar(&cfg.HTTPListen, "http-listen", boot.DefaultHTTPListen, "HTTP listen address")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", "", "host:port machines use to reach the HTTP server (default: server ip and listen port)")
	fs.StringVar(&cfg.AssetsDir, "assets", "", "directory of boot assets (kernel, initrd) served under /assets/")
	fs.StringVar(&cfg.ImageUpstream, "image-upstream", "", "base URL OS images are proxied and cached from under /images/")
	fs.StringVar(&cfg.CacheDir, "cache-dir", boot.DefaultCacheDir, "directory of the image cache")
	fs.StringVar(&cfg.TFTPListen, "tftp-listen", boot.DefaultTFTPListen, "TFTP listen address")
	fs.StringVar(&cfg.TFTPDir, "tftp-dir", boot.DefaultTFTPDir, "directory served over TFTP (iPXE boot loaders)")
	fs.BoolVar(&cfg.DisableTFTP, "disable-tftp", false, "do not serve TFTP")
	fs.StringVar(&cfg.API, "api", "", "metal-api gRPC target, e.g. metal-api:50051")
	fs.StringVar(&cfg.Token, "token", "", "bearer token of this boot-server for metal-api")
	fs.StringVar(&cfg.PartitionID, "partition", "", "partition ID this boot-server serves")
	fs.StringVar(&cfg.HammerAPI, "hammer-api", "", "metal-api gRPC address as hammers reach it (default: --api)")
	fs.StringVar(&cfg.HammerToken, "hammer-token", "", "partition boot secret passed to hammers as mf.token")
	fs.DurationVar(&cfg.APITimeout, "api-timeout", boot.DefaultAPITimeout, "timeout of each metal-api call")
	fs.DurationVar(&cfg.RetryDelay, "retry-delay", boot.DefaultRetryDelay, "how long machines wait before retrying after an error")
	fs.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: boot-server [flags]\n\nEvery flag can also be set as BOOT_SERVER_<NAME> (e.g. BOOT_SERVER_TOKEN).\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if err := fromEnv(fs); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	cfg.Mode = dhcp.Mode(mode)
	cfg.Subnet.DNS = dns
	cfg.Relayed = relayed
	if netmask != "" {
		m, err := netip.ParseAddr(netmask)
		if err != nil || !m.Is4() {
			return fmt.Errorf("netmask %q is not an IPv4 mask", netmask)
		}
		ones, bits := net.IPMask(m.AsSlice()).Size()
		if bits == 0 {
			return fmt.Errorf("netmask %q is not contiguous", netmask)
		}
		at := cfg.ServerIP
		if !at.IsValid() {
			at = cfg.Subnet.First
		}
		if !at.IsValid() {
			return errors.New("netmask needs --server-ip or --range-first")
		}
		cfg.Subnet.Prefix = netip.PrefixFrom(at, ones).Masked()
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return fmt.Errorf("log level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	return boot.Run(ctx, cfg, log)
}

// fromEnv sets every flag not given on the command line from BOOT_SERVER_<NAME>, if set.
func fromEnv(fs *flag.FlagSet) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		env := "BOOT_SERVER_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok && !given[f.Name] {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", env, err))
			}
		}
	})
	return errors.Join(errs...)
}
