package firewall

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

func (c *Controller) metricsHandler() http.Handler {
	mux := http.NewServeMux()
	// Ours plus controller-runtime's (workqueue, reconcile and client metrics, which it registers
	// in its own registry).
	g := prometheus.Gatherers{c.cfg.Registry, ctrlmetrics.Registry}
	mux.Handle("/metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	return mux
}

func (c *Controller) healthHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !c.ready.Load() {
			http.Error(w, "no ruleset applied yet", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	return mux
}

// MetricsAddr returns the address /metrics is served on, nil until it listens.
func (c *Controller) MetricsAddr() net.Addr { return load(&c.metricsAddr) }

// HealthAddr returns the address /healthz and /readyz are served on, nil until it listens.
func (c *Controller) HealthAddr() net.Addr { return load(&c.healthAddr) }

func load(p *atomic.Pointer[net.Addr]) net.Addr {
	if a := p.Load(); a != nil {
		return *a
	}
	return nil
}

// serveHTTP serves h on addr until ctx is done; "" or "0" serves nothing.
func serveHTTP(ctx context.Context, addr string, h http.Handler, log *slog.Logger, bound *atomic.Pointer[net.Addr]) error {
	if addr == "" || addr == "0" {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	a := ln.Addr()
	bound.Store(&a)
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	log.Info("serving http", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", addr, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shut down %s: %w", addr, err)
	}
	return nil
}
