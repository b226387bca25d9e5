// Package rest is metal-api's REST interface under /v1: one route table drives the HTTP mux and the
// OpenAPI 2.0 spec (served at /v1/openapi.json and committed as pkg/client/openapi.json), bearer-token
// authentication, tenant scoping, JSON decoding that rejects unknown fields, errors as
// {code, message}, and Prometheus metrics per route.
package rest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/apierror"
	"github.com/metalforge/metalforge/pkg/auth"
	"github.com/metalforge/metalforge/pkg/machine"
	"github.com/metalforge/metalforge/pkg/store"
)

// maxBody bounds request bodies.
const maxBody = 1 << 20

// Config wires the REST server.
type Config struct {
	Store    store.Store
	Machines *machine.Service
	Auth     *auth.Authenticator
	Log      *slog.Logger
	Version  string
	// Registry receives the HTTP metrics; nil registers nothing and serves no /metrics.
	Registry *prometheus.Registry
}

// Server serves the REST API.
type Server struct {
	cfg      Config
	routes   []route
	mux      *http.ServeMux
	duration *prometheus.HistogramVec
}

// New builds the server and its routes.
func New(cfg Config) *Server {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, mux: http.NewServeMux()}
	s.routes = s.table()
	s.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "metal_api_request_duration_seconds",
		Help:    "Duration of REST requests by operation and status code.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
	}, []string{"operation", "code"})
	if cfg.Registry != nil {
		cfg.Registry.MustRegister(s.duration)
		s.mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{}))
	}
	for _, r := range s.routes {
		s.mux.Handle(r.method+" "+r.path, s.wrap(r))
	}
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := cfg.Store.Read(r.Context(), func(store.Tx) error { return nil }); err != nil {
			writeError(w, fmt.Errorf("store: %w", err))
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	spec := s.Spec()
	s.mux.HandleFunc("GET /v1/openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(spec)
	})
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, fmt.Errorf("%s %s: %w", r.Method, r.URL.Path, store.ErrNotFound))
	})
	return s
}

// Handler returns the HTTP handler.
func (s *Server) Handler() http.Handler { return s.mux }

// call is one request in a handler.
type call struct {
	ctx context.Context
	r   *http.Request
	p   auth.Principal
	s   *Server
}

func (c *call) path(name string) string { return c.r.PathValue(name) }

func (c *call) intQuery(name string, def int) (int, error) {
	v := c.r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, apierror.Invalid("query parameter %s=%q is not a non-negative integer", name, v)
	}
	return n, nil
}

func (s *Server) wrap(r route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		start := time.Now()
		code := http.StatusOK
		defer func() {
			if v := recover(); v != nil {
				s.cfg.Log.Error("handler panicked", "operation", r.opID, "panic", v)
				code = http.StatusInternalServerError
				writeError(w, fmt.Errorf("panic: %v", v))
			}
			s.duration.WithLabelValues(r.opID, strconv.Itoa(code)).Observe(time.Since(start).Seconds())
		}()
		c := &call{ctx: req.Context(), r: req, s: s}
		if r.access != public {
			p, err := s.cfg.Auth.Authenticate(req.Context(), req.Header.Get("Authorization"))
			if err == nil {
				err = allowed(r.access, p)
			}
			if err != nil {
				code = apierror.Status(err)
				writeError(w, err)
				return
			}
			c.p = p
			c.ctx = auth.WithPrincipal(c.ctx, p)
		}
		out, err := r.handle(c)
		if err != nil {
			code = apierror.Status(err)
			if code >= 500 {
				s.cfg.Log.Error("request failed", "operation", r.opID, "err", err)
			}
			writeError(w, err)
			return
		}
		code = r.status
		writeJSON(w, code, out)
	})
}

func allowed(a access, p auth.Principal) error {
	switch a {
	case admin:
		if !p.IsAdmin() {
			return fmt.Errorf("admin role required: %w", apierror.ErrForbidden)
		}
	case service:
		if !p.IsAdmin() && p.Role != api.RoleService {
			return fmt.Errorf("admin or service role required: %w", apierror.ErrForbidden)
		}
	case user:
		if p.Role == auth.RoleBoot || p.Role == auth.RoleMachine {
			return fmt.Errorf("a %s token is only for the boot service: %w", p.Role, apierror.ErrForbidden)
		}
	}
	return nil
}

// decode reads a JSON body strictly: unknown fields, trailing data and oversized bodies are errors.
// The Content-Type is not checked: the body must be JSON whatever the header says.
func decode(r *http.Request, v any) error {
	return DecodeJSON(io.LimitReader(r.Body, maxBody+1), v)
}

// DecodeJSON decodes exactly one JSON value from r into v, rejecting unknown fields, trailing data
// and more than 1 MiB.
func DecodeJSON(r io.Reader, v any) error {
	lr := &countingReader{r: r}
	dec := json.NewDecoder(lr)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if lr.n > maxBody {
			return apierror.Invalid("request body is larger than %d bytes", maxBody)
		}
		if errors.Is(err, io.EOF) {
			return apierror.Invalid("request body is empty")
		}
		return apierror.Invalid("malformed request body: %v", err)
	}
	if dec.More() {
		return apierror.Invalid("malformed request body: data after the JSON value")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return apierror.Invalid("malformed request body: data after the JSON value")
	}
	return nil
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, err error) {
	b := apierror.Body(err)
	writeJSON(w, b.Code, b)
}
