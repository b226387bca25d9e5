package ipxe

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/metalforge/metalforge/pkg/api"
)

// Backend asks metal-api what a MAC boots.
type Backend interface {
	Boot(ctx context.Context, mac net.HardwareAddr) (*api.BootDecision, error)
}

// Config configures a Handler. BaseURL and Backend are required.
type Config struct {
	// BaseURL is where machines reach this server, e.g. http://10.0.0.1:8080 (no trailing slash).
	BaseURL string
	Hammer  Hammer
	// RetryDelay is how long a machine waits before retrying after an error (default 10s).
	RetryDelay time.Duration
	Backend    Backend
	// Timeout bounds each Backend call (default 5s).
	Timeout time.Duration
	Log     *slog.Logger
}

// Handler serves /boot.ipxe, /default.ipxe and /host/<mac>.ipxe.
type Handler struct {
	cfg Config
}

// New returns a handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Backend == nil || cfg.BaseURL == "" {
		return nil, errors.New("ipxe: base url and backend are required")
	}
	cfg.BaseURL = strings.TrimSuffix(cfg.BaseURL, "/")
	if cfg.RetryDelay <= 0 {
		cfg.RetryDelay = 10 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Handler{cfg: cfg}, nil
}

// Register adds the handler's routes to mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /boot.ipxe", func(w http.ResponseWriter, _ *http.Request) {
		script(w, Chain(h.cfg.BaseURL))
	})
	mux.HandleFunc("GET /default.ipxe", func(w http.ResponseWriter, _ *http.Request) {
		script(w, Retry("no boot script for this machine", h.cfg.BaseURL+"/boot.ipxe", h.cfg.RetryDelay))
	})
	mux.HandleFunc("GET /host/{file}", h.host)
}

// host renders the script for one MAC (hyphen-separated, as iPXE's ${mac:hexhyp}).
func (h *Handler) host(w http.ResponseWriter, r *http.Request) {
	file := r.PathValue("file")
	name, ok := strings.CutSuffix(file, ".ipxe")
	mac, err := net.ParseMAC(name)
	if !ok || err != nil || len(mac) != 6 {
		http.NotFound(w, r)
		return
	}
	self := h.cfg.BaseURL + "/host/" + file
	log := h.cfg.Log.With("mac", mac.String())
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.Timeout)
	defer cancel()
	d, err := h.cfg.Backend.Boot(ctx, mac)
	if err != nil {
		log.Warn("boot decision failed", "error", err)
		script(w, Retry("boot decision unavailable", self, h.cfg.RetryDelay))
		return
	}
	switch d.Action {
	case api.BootActionHammer:
		if d.Kernel == "" || d.Initrd == "" {
			log.Warn("partition boot config has no hammer kernel or initrd", "machineID", d.MachineID)
			script(w, Retry("partition has no hammer kernel or initrd", self, h.cfg.RetryDelay))
			return
		}
		log.Info("machine boots the hammer", "machineID", d.MachineID)
		script(w, HammerScript(*d, h.cfg.BaseURL, h.cfg.Hammer, h.cfg.RetryDelay))
	case api.BootActionDisk:
		log.Info("machine boots its disk", "machineID", d.MachineID)
		script(w, DiskScript(d.MachineID))
	default:
		log.Warn("unknown boot action", "machineID", d.MachineID, "action", d.Action)
		script(w, Retry("unknown boot action", self, h.cfg.RetryDelay))
	}
}

func script(w http.ResponseWriter, s string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte(s))
}
