// Package apiserver is the metal-api control plane as a library: it opens the store (embedded
// SQLite in a data directory, or PostgreSQL), makes sure an admin token exists, and serves REST on
// one listener and the gRPC boot service on another, plus the liveliness job. cmd/metal-api maps
// flags onto Config; the lab and the tests start the same library in-process.
package apiserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/auth"
	"github.com/metalforge/metalforge/pkg/bootrpc"
	"github.com/metalforge/metalforge/pkg/machine"
	"github.com/metalforge/metalforge/pkg/rest"
	"github.com/metalforge/metalforge/pkg/store"
	"github.com/metalforge/metalforge/pkg/store/postgres"
	"github.com/metalforge/metalforge/pkg/store/sqlite"
)

// Config is everything metal-api needs. Zero values take the defaults in Defaults.
type Config struct {
	// Listen is the REST address, GRPCListen the boot service address.
	Listen     string
	GRPCListen string
	// DataDir holds the SQLite database and the admin token file.
	DataDir string
	// DB is a PostgreSQL URL; when set, it is the store instead of SQLite.
	DB string
	// AdminToken, when set, is ensured as an admin token (for automation); otherwise one is created on
	// first start and written to DataDir/admin-token.
	AdminToken string
	// Version is reported by /v1/version.
	Version string
	// LivelinessInterval is how often silent machines are checked (default 30s).
	LivelinessInterval time.Duration
	// AuthCacheTTL bounds how long a revoked token keeps working on other replicas (default 5s).
	AuthCacheTTL time.Duration
	// Ready, if set, receives the bound addresses once both listeners are up.
	Ready func(rest, grpc net.Addr)
}

// Defaults fills zero fields.
func (c *Config) Defaults() {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8080"
	}
	if c.GRPCListen == "" {
		c.GRPCListen = "127.0.0.1:50051"
	}
	if c.DataDir == "" && c.DB == "" {
		c.DataDir = "data"
	}
	if c.LivelinessInterval == 0 {
		c.LivelinessInterval = 30 * time.Second
	}
	if c.AuthCacheTTL == 0 {
		c.AuthCacheTTL = 5 * time.Second
	}
	if c.Version == "" {
		c.Version = "dev"
	}
}

// OpenStore opens the configured store.
func OpenStore(ctx context.Context, c Config) (store.Store, error) {
	if c.DB != "" {
		if !strings.HasPrefix(c.DB, "postgres://") && !strings.HasPrefix(c.DB, "postgresql://") {
			return nil, fmt.Errorf("db %q is not a postgres:// URL", c.DB)
		}
		return postgres.Open(ctx, c.DB)
	}
	return sqlite.Open(ctx, c.DataDir)
}

// Start runs metal-api until ctx ends.
func Start(ctx context.Context, c Config, log *slog.Logger) error {
	c.Defaults()
	st, err := OpenStore(ctx, c)
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	defer st.Close()
	if err := ensureAdmin(ctx, st, c, log); err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if s, ok := st.(interface{ Stats() (int64, int64) }); ok {
		reg.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "metal_api_store_writes_total",
				Help: "Committed or failed write transactions."}, func() float64 { w, _ := s.Stats(); return float64(w) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "metal_api_store_retries_total",
				Help: "Write transactions retried after a conflict with a concurrent writer."}, func() float64 { _, r := s.Stats(); return float64(r) }),
		)
	}
	authn := auth.NewAuthenticator(st, c.AuthCacheTTL)
	machines := machine.New(machine.Config{Store: st, Log: log})
	restSrv := rest.New(rest.Config{Store: st, Machines: machines, Auth: authn, Log: log, Version: c.Version, Registry: reg})
	boot := bootrpc.New(bootrpc.Config{Machines: machines, Auth: authn, Log: log})
	grpcSrv := grpc.NewServer(boot.ServerOptions()...)
	boot.Register(grpcSrv)

	restL, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("listen rest: %w", err)
	}
	grpcL, err := net.Listen("tcp", c.GRPCListen)
	if err != nil {
		restL.Close()
		return fmt.Errorf("listen grpc: %w", err)
	}
	httpSrv := &http.Server{Handler: restSrv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	log.Info("metal-api started", "rest", restL.Addr().String(), "grpc", grpcL.Addr().String(), "store", st.Backend())
	if c.Ready != nil {
		c.Ready(restL.Addr(), grpcL.Addr())
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := httpSrv.Serve(restL); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve rest: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		if err := grpcSrv.Serve(grpcL); err != nil {
			return fmt.Errorf("serve grpc: %w", err)
		}
		return nil
	})
	g.Go(func() error { return machines.RunLiveliness(gctx, c.LivelinessInterval) })
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = httpSrv.Shutdown(sctx)
		stopped := make(chan struct{})
		go func() { grpcSrv.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-sctx.Done():
			grpcSrv.Stop()
		}
		return nil
	})
	return g.Wait()
}

// ensureAdmin makes sure the configured admin token exists, or creates one on first start.
func ensureAdmin(ctx context.Context, st store.Store, c Config, log *slog.Logger) error {
	if c.AdminToken != "" {
		return st.Write(ctx, func(tx store.Tx) error {
			if _, err := tx.Lookup(ctx, store.KindToken, "hash:"+auth.Hash(c.AdminToken)); err == nil {
				return nil
			}
			tok := &api.Token{Meta: api.Meta{ID: "admin-" + auth.Hash(c.AdminToken)[:12], Name: "configured admin"},
				Role: api.RoleAdmin, Secret: auth.Hash(c.AdminToken)}
			return tx.Tokens().Create(ctx, tok)
		})
	}
	var secret string
	err := st.Write(ctx, func(tx store.Tx) error {
		secret = ""
		n, err := tx.Tokens().Count(ctx, store.Query{Key1: api.RoleAdmin})
		if err != nil || n > 0 {
			return err
		}
		secret, _, err = auth.Issue(ctx, tx, api.Token{Meta: api.Meta{Name: "initial admin"}, Role: api.RoleAdmin})
		return err
	})
	if err != nil {
		return fmt.Errorf("create admin token: %w", err)
	}
	if secret == "" {
		return nil
	}
	if c.DataDir != "" {
		path := filepath.Join(c.DataDir, "admin-token")
		if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
			return fmt.Errorf("write admin token: %w", err)
		}
		log.Info("created the initial admin token", "file", path)
		return nil
	}
	fmt.Fprintf(os.Stderr, "initial admin token (shown once): %s\n", secret)
	return nil
}
