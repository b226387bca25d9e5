// Package bmc drives baseboard management controllers out of band: power on/off/cycle/reset,
// boot-once from the network or disk, power state and the identify LED. Two protocols sit behind
// one small interface: IPMI over LAN (RMCP+, pure Go through github.com/bougou/go-ipmi) and
// Redfish (net/http + JSON). Vendor differences live in one quirks table (quirks.go).
//
// The in-band side (the hammer reading and provisioning the BMC through /dev/ipmi0) is
// pkg/bmc/inband; the partition's agent that executes metal-api's BMC command queue is
// pkg/bmc/agent.
package bmc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/bmc/vendor"
)

// BMC is one machine's management controller.
type BMC interface {
	PowerOn(ctx context.Context) error
	PowerOff(ctx context.Context) error
	PowerCycle(ctx context.Context) error
	PowerReset(ctx context.Context) error
	// BootOnce makes the next boot (only) start from dev, BootPXE or BootDisk.
	BootOnce(ctx context.Context, dev string) error
	// PowerState is PowerStateOn or PowerStateOff.
	PowerState(ctx context.Context) (string, error)
	// LED switches the identify LED.
	LED(ctx context.Context, on bool) error
}

// Power states as metal-api stores them (api.MachineBMC.PowerState).
const (
	PowerStateOn  = "ON"
	PowerStateOff = "OFF"
)

// LED states as reported to metal-api (api.BMCReport.LED).
const (
	LEDStateOn  = "LED-ON"
	LEDStateOff = "LED-OFF"
)

// Boot devices of BootOnce.
const (
	BootPXE  = api.BootPXE
	BootDisk = api.BootDisk
)

// Protocols.
const (
	ProtocolIPMI    = "ipmi"
	ProtocolRedfish = "redfish"
)

// ErrUnsupported is returned for an operation the BMC (or its quirks entry) does not support.
var ErrUnsupported = errors.New("not supported by this bmc")

// DialFunc opens a connection; it lets callers reach BMCs in another network namespace.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Config says how to reach one BMC.
type Config struct {
	// Address is host or host:port for IPMI (port 623 by default), or an http(s):// URL for
	// Redfish (the service root is <URL>/redfish/v1).
	Address  string
	User     string
	Password string
	// Vendor selects the quirks (see package vendor); free-form names are normalized.
	Vendor string
	// Protocol is ProtocolIPMI or ProtocolRedfish; empty means Redfish for http(s):// addresses
	// and IPMI otherwise.
	Protocol string
	// Timeout bounds one request to the BMC (default 5s); ctx bounds the whole operation.
	Timeout time.Duration
	// Insecure skips TLS verification for Redfish (BMCs mostly have self-signed certificates).
	Insecure bool
	// Dial, if set, opens the connections (UDP for IPMI, TCP for Redfish).
	Dial DialFunc
	// HTTPClient, if set, is used for Redfish instead of one built from Dial/Insecure/Timeout.
	HTTPClient *http.Client
}

// Open returns the BMC of cfg for its protocol. It does not contact the BMC.
func Open(cfg Config) (BMC, error) {
	if cfg.Address == "" {
		return nil, errors.New("open bmc: address is empty")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	proto := cfg.Protocol
	if proto == "" {
		proto = ProtocolIPMI
		if strings.HasPrefix(cfg.Address, "http://") || strings.HasPrefix(cfg.Address, "https://") {
			proto = ProtocolRedfish
		}
	}
	q := QuirksFor(cfg.Vendor)
	switch proto {
	case ProtocolIPMI:
		return newIPMI(cfg, q)
	case ProtocolRedfish:
		return newRedfish(cfg, q)
	}
	return nil, fmt.Errorf("open bmc %s: protocol %q is not ipmi or redfish", cfg.Address, cfg.Protocol)
}

// ConfigOf returns the Config of a machine's BMC as metal-api hands it to the agent.
func ConfigOf(b api.MachineBMC) Config {
	return Config{Address: b.Address, User: b.User, Password: b.Password, Vendor: vendor.Normalize(b.Vendor)}
}

// Execute runs one metal-api BMC command (api.PowerOn, api.BootPXE, api.LEDOn, ...) on b.
func Execute(ctx context.Context, b BMC, command string) error {
	switch command {
	case api.PowerOn:
		return b.PowerOn(ctx)
	case api.PowerOff:
		return b.PowerOff(ctx)
	case api.PowerCycle:
		return b.PowerCycle(ctx)
	case api.PowerReset:
		return b.PowerReset(ctx)
	case api.BootPXE, api.BootDisk:
		return b.BootOnce(ctx, command)
	case api.LEDOn:
		return b.LED(ctx, true)
	case api.LEDOff:
		return b.LED(ctx, false)
	}
	return fmt.Errorf("bmc command %q: %w", command, ErrUnsupported)
}

// WaitPowerState polls b until it reports want, or ctx ends; it polls every interval.
func WaitPowerState(ctx context.Context, b BMC, want string, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	var last string
	var lastErr error
	for {
		s, err := b.PowerState(ctx)
		if err == nil && s == want {
			return nil
		}
		last, lastErr = s, err
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return fmt.Errorf("wait for power %s: %w (last error: %v)", want, ctx.Err(), lastErr)
			}
			return fmt.Errorf("wait for power %s: %w (last state %s)", want, ctx.Err(), last)
		case <-t.C:
		}
	}
}
