// Command metal-autoscaler serves cluster-autoscaler's externalgrpc CloudProvider for metalforge
// node groups (pkg/autoscaler): run an unmodified cluster-autoscaler with
// --cloud-provider=externalgrpc and a cloud config pointing at it.
//
//	metal-autoscaler --api-url https://metal-api:8080 --token-file /etc/metalforge/token \
//	  --config /etc/metalforge/node-groups.yaml --listen :8086 \
//	  --tls-cert tls.crt --tls-key tls.key --tls-client-ca ca.crt
//
// Every flag can also be set as METAL_AUTOSCALER_<NAME> (e.g. METAL_AUTOSCALER_API_URL); the
// token itself as METAL_AUTOSCALER_TOKEN when no token file is given.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/metalforge/metalforge/pkg/autoscaler"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr, nil)
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case errors.Is(err, errUsage):
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "metal-autoscaler:", err)
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

const envPrefix = "METAL_AUTOSCALER_"

// run parses args and serves until ctx ends; ready, if set, gets the listen address.
func run(ctx context.Context, args []string, stderr io.Writer, ready func(net.Addr)) error {
	var cfg autoscaler.Config
	var tokenFile, capacityTokenFile, configFile, certFile, keyFile, clientCAFile, logLevel string
	fs := flag.NewFlagSet("metal-autoscaler", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Listen, "listen", autoscaler.DefaultListen, "gRPC listen address")
	fs.StringVar(&cfg.MetalAPIURL, "api-url", "", "metal-api REST base URL")
	fs.StringVar(&tokenFile, "token-file", "", "file with the metal-api token (editor of the node groups' project, or admin); else $"+envPrefix+"TOKEN")
	fs.StringVar(&capacityTokenFile, "capacity-token-file", "", "file with a service or admin token that counts waiting machines (default: the token)")
	fs.StringVar(&configFile, "config", "", "node groups file (YAML or JSON: nodeGroups: [{id, cluster, partition, size, project, image, min, max, ...}])")
	fs.StringVar(&certFile, "tls-cert", "", "server certificate (PEM); serves TLS when set")
	fs.StringVar(&keyFile, "tls-key", "", "server key (PEM)")
	fs.StringVar(&clientCAFile, "tls-client-ca", "", "CA (PEM) that client certificates must chain to; requires client certificates when set")
	fs.DurationVar(&cfg.APITimeout, "api-timeout", autoscaler.DefaultAPITimeout, "timeout of each metal-api call")
	fs.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: metal-autoscaler [flags]\n\nEvery flag can also be set as %s<NAME> (e.g. %sAPI_URL).\n\n", envPrefix, envPrefix)
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
	var err error
	if cfg.Token, err = secret(tokenFile, os.Getenv(envPrefix+"TOKEN")); err != nil {
		return err
	}
	if cfg.CapacityToken, err = secret(capacityTokenFile, ""); err != nil {
		return err
	}
	if configFile == "" {
		return errors.New("no node groups: --config is required")
	}
	if cfg.NodeGroups, err = autoscaler.LoadNodeGroups(configFile); err != nil {
		return err
	}
	if cfg.TLS, err = serverTLS(certFile, keyFile, clientCAFile); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return fmt.Errorf("log level: %w", err)
	}
	cfg.Ready = ready
	return autoscaler.Start(ctx, cfg, slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})))
}

// secret is the trimmed content of file, or fallback when no file is given.
func secret(file, fallback string) (string, error) {
	if file == "" {
		return fallback, nil
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("read token: %w", err)
	}
	return strings.TrimSpace(string(raw)), nil
}

// serverTLS is the TLS config of the flags: nil without a certificate, mutual TLS with a client CA.
func serverTLS(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	switch {
	case certFile == "" && keyFile == "" && clientCAFile == "":
		return nil, nil
	case certFile == "" || keyFile == "":
		return nil, errors.New("tls: --tls-cert and --tls-key go together (and --tls-client-ca needs them)")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load tls key pair: %w", err)
	}
	c := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if clientCAFile != "" {
		raw, err := os.ReadFile(clientCAFile)
		if err != nil {
			return nil, fmt.Errorf("read client ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(raw) {
			return nil, fmt.Errorf("client ca %s: no PEM certificate", clientCAFile)
		}
		c.ClientCAs, c.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return c, nil
}

// fromEnv sets every flag not given on the command line from METAL_AUTOSCALER_<NAME>, if set.
func fromEnv(fs *flag.FlagSet) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		env := envPrefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok && !given[f.Name] {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", env, err))
			}
		}
	})
	return errors.Join(errs...)
}
