package bmc

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// redfishBMC drives the first ComputerSystem of a Redfish service with HTTP basic auth:
// ComputerSystem.Reset for power, Boot.BootSourceOverride* for boot-once, PowerState, and
// LocationIndicatorActive (IndicatorLED on services older than schema 2020.3) for the LED.
type redfishBMC struct {
	cfg  Config
	q    Quirks
	base string // scheme://host[:port]
	hc   *http.Client

	mu     sync.Mutex
	system string // @odata.id of the ComputerSystem, found on first use
}

func newRedfish(cfg Config, q Quirks) (*redfishBMC, error) {
	base := strings.TrimSuffix(cfg.Address, "/")
	base = strings.TrimSuffix(base, "/redfish/v1")
	if !strings.HasPrefix(base, "http://") && !strings.HasPrefix(base, "https://") {
		base = "https://" + base
	}
	hc := cfg.HTTPClient
	if hc == nil {
		tr := &http.Transport{
			TLSClientConfig:     &tls.Config{InsecureSkipVerify: cfg.Insecure}, //nolint:gosec // BMCs have self-signed certificates; the operator opts in
			TLSHandshakeTimeout: cfg.Timeout,
			MaxIdleConnsPerHost: 1,
			IdleConnTimeout:     10 * time.Second,
		}
		if cfg.Dial != nil {
			tr.DialContext = cfg.Dial
		}
		hc = &http.Client{Transport: tr, Timeout: cfg.Timeout}
	}
	return &redfishBMC{cfg: cfg, q: q, base: base, hc: hc}, nil
}

// rfSystem is the part of a ComputerSystem resource the client reads.
type rfSystem struct {
	ODataID    string `json:"@odata.id"`
	PowerState string `json:"PowerState"`
	Boot       struct {
		Target  string `json:"BootSourceOverrideTarget"`
		Enabled string `json:"BootSourceOverrideEnabled"`
		Mode    string `json:"BootSourceOverrideMode"`
	} `json:"Boot"`
	IndicatorLED            string `json:"IndicatorLED"`
	LocationIndicatorActive *bool  `json:"LocationIndicatorActive"`
	Actions                 struct {
		Reset struct {
			Target  string   `json:"target"`
			Allowed []string `json:"ResetType@Redfish.AllowableValues"`
		} `json:"#ComputerSystem.Reset"`
	} `json:"Actions"`
	etag string
}

// rfError is the Redfish error response body.
type rfError struct {
	Error struct {
		Code     string `json:"code"`
		Message  string `json:"message"`
		Extended []struct {
			MessageID string `json:"MessageId"`
			Message   string `json:"Message"`
		} `json:"@Message.ExtendedInfo"`
	} `json:"error"`
}

// do sends one request; out, if not nil, receives the JSON body of a 2xx answer.
func (b *redfishBMC) do(ctx context.Context, method, path string, body any, etag string, out any) (http.Header, error) {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, b.base+path, rd)
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth(b.cfg.User, b.cfg.Password)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("OData-Version", "4.0")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if etag != "" {
		req.Header.Set("If-Match", etag)
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read body: %w", method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, redfishStatus(method, path, resp.StatusCode, raw)
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return nil, fmt.Errorf("%s %s: decode: %w", method, path, err)
		}
	}
	return resp.Header, nil
}

func redfishStatus(method, path string, status int, raw []byte) error {
	var e rfError
	msg := strings.TrimSpace(string(raw))
	if json.Unmarshal(raw, &e) == nil && (e.Error.Message != "" || len(e.Error.Extended) > 0) {
		parts := []string{e.Error.Message}
		for _, x := range e.Error.Extended {
			parts = append(parts, x.MessageID+": "+x.Message)
		}
		msg = strings.Join(parts, "; ")
	}
	if len(msg) > 300 {
		msg = msg[:300]
	}
	err := fmt.Errorf("%s %s: status %d: %s", method, path, status, msg)
	if status == http.StatusNotImplemented || status == http.StatusMethodNotAllowed {
		err = errors.Join(err, ErrUnsupported)
	}
	return err
}

// systemPath finds the ComputerSystem the first time and remembers it.
func (b *redfishBMC) systemPath(ctx context.Context) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.system != "" {
		return b.system, nil
	}
	var coll struct {
		Members []struct {
			ID string `json:"@odata.id"`
		} `json:"Members"`
	}
	if _, err := b.do(ctx, http.MethodGet, "/redfish/v1/Systems", nil, "", &coll); err != nil {
		return "", err
	}
	if len(coll.Members) == 0 || coll.Members[0].ID == "" {
		return "", errors.New("the service lists no computer system")
	}
	b.system = coll.Members[0].ID
	return b.system, nil
}

func (b *redfishBMC) getSystem(ctx context.Context) (*rfSystem, string, error) {
	path, err := b.systemPath(ctx)
	if err != nil {
		return nil, "", err
	}
	var s rfSystem
	h, err := b.do(ctx, http.MethodGet, path, nil, "", &s)
	if err != nil {
		return nil, "", err
	}
	s.etag = h.Get("ETag")
	return &s, path, nil
}

func (b *redfishBMC) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("redfish %s %s: %w", op, b.base, err)
}

// reset posts ComputerSystem.Reset with the first of types the service allows (all of them are
// tried in order when it does not say what it allows).
func (b *redfishBMC) reset(ctx context.Context, s *rfSystem, path string, types ...string) error {
	target := s.Actions.Reset.Target
	if target == "" {
		target = path + "/Actions/ComputerSystem.Reset"
	}
	t := types[0]
	if len(s.Actions.Reset.Allowed) > 0 {
		i := slices.IndexFunc(types, func(t string) bool { return slices.Contains(s.Actions.Reset.Allowed, t) })
		if i < 0 {
			return fmt.Errorf("reset types %v not in %v: %w", types, s.Actions.Reset.Allowed, ErrUnsupported)
		}
		t = types[i]
	}
	_, err := b.do(ctx, http.MethodPost, target, map[string]string{"ResetType": t}, "", nil)
	return err
}

func (b *redfishBMC) resetOp(ctx context.Context, op string, types ...string) error {
	s, path, err := b.getSystem(ctx)
	if err != nil {
		return b.wrap(op, err)
	}
	return b.wrap(op, b.reset(ctx, s, path, types...))
}

func (b *redfishBMC) PowerOn(ctx context.Context) error { return b.resetOp(ctx, "power on", "On") }

func (b *redfishBMC) PowerOff(ctx context.Context) error {
	return b.resetOp(ctx, "power off", "ForceOff")
}

func (b *redfishBMC) PowerReset(ctx context.Context) error {
	return b.resetOp(ctx, "power reset", "ForceRestart")
}

// PowerCycle powers an off machine on; an on machine is cycled with ResetType PowerCycle when
// the service allows it, else off, wait until off, on.
func (b *redfishBMC) PowerCycle(ctx context.Context) error {
	s, path, err := b.getSystem(ctx)
	if err != nil {
		return b.wrap("power cycle", err)
	}
	if s.PowerState == "Off" {
		return b.wrap("power cycle", b.reset(ctx, s, path, "On"))
	}
	if len(s.Actions.Reset.Allowed) == 0 || slices.Contains(s.Actions.Reset.Allowed, "PowerCycle") {
		return b.wrap("power cycle", b.reset(ctx, s, path, "PowerCycle"))
	}
	if err := b.reset(ctx, s, path, "ForceOff"); err != nil {
		return b.wrap("power cycle", err)
	}
	wctx, cancel := context.WithTimeout(ctx, b.q.OffTimeout)
	defer cancel()
	if err := WaitPowerState(wctx, b, PowerStateOff, 500*time.Millisecond); err != nil {
		return b.wrap("power cycle", err)
	}
	return b.wrap("power cycle", b.reset(ctx, s, path, "On"))
}

func (b *redfishBMC) BootOnce(ctx context.Context, dev string) error {
	target := map[string]string{BootPXE: "Pxe", BootDisk: "Hdd"}[dev]
	if target == "" {
		return b.wrap("boot once", fmt.Errorf("device %q: %w", dev, ErrUnsupported))
	}
	if b.q.NoBootOverride {
		return nil
	}
	s, path, err := b.getSystem(ctx)
	if err != nil {
		return b.wrap("boot once", err)
	}
	boot := map[string]string{"BootSourceOverrideEnabled": "Once", "BootSourceOverrideTarget": target}
	if b.q.EFIBoot {
		boot["BootSourceOverrideMode"] = "UEFI"
	}
	_, err = b.do(ctx, http.MethodPatch, path, map[string]any{"Boot": boot}, s.etag, nil)
	return b.wrap("boot once", err)
}

func (b *redfishBMC) PowerState(ctx context.Context) (string, error) {
	s, _, err := b.getSystem(ctx)
	if err != nil {
		return "", b.wrap("power state", err)
	}
	switch s.PowerState {
	case "On", "PoweringOff", "Paused":
		return PowerStateOn, nil
	case "Off", "PoweringOn":
		return PowerStateOff, nil
	}
	return "", b.wrap("power state", fmt.Errorf("unknown PowerState %q", s.PowerState))
}

func (b *redfishBMC) LED(ctx context.Context, on bool) error {
	if b.q.NoIdentify {
		return b.wrap("identify", ErrUnsupported)
	}
	s, path, err := b.getSystem(ctx)
	if err != nil {
		return b.wrap("identify", err)
	}
	var patch map[string]any
	switch {
	case s.LocationIndicatorActive != nil:
		patch = map[string]any{"LocationIndicatorActive": on}
	case s.IndicatorLED != "":
		led := "Off"
		if on {
			led = "Lit"
		}
		patch = map[string]any{"IndicatorLED": led}
	default:
		return b.wrap("identify", fmt.Errorf("system has no indicator: %w", ErrUnsupported))
	}
	_, err = b.do(ctx, http.MethodPatch, path, patch, s.etag, nil)
	return b.wrap("identify", err)
}
