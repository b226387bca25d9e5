package bmc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/command/chassis"
	"github.com/bougou/go-ipmi/pkg/types"
)

// ipmiBMC talks IPMI 2.0 over LAN (RMCP+, "lanplus"). Every operation opens its own session and
// closes it again: BMCs allow few concurrent sessions and drop idle ones, and an agent that talks
// to hundreds of machines must not hold any.
type ipmiBMC struct {
	cfg  Config
	q    Quirks
	host string
	port int
}

func newIPMI(cfg Config, q Quirks) (*ipmiBMC, error) {
	host, port := cfg.Address, 623
	if h, p, err := net.SplitHostPort(cfg.Address); err == nil {
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 || n > 65535 {
			return nil, fmt.Errorf("open bmc %s: bad port %q", cfg.Address, p)
		}
		host, port = h, n
	}
	if host == "" {
		return nil, fmt.Errorf("open bmc %s: no host", cfg.Address)
	}
	return &ipmiBMC{cfg: cfg, q: q, host: host, port: port}, nil
}

// dialer adapts a DialFunc to the proxy.Dialer go-ipmi takes for its UDP socket.
type dialer struct {
	dial    DialFunc
	timeout time.Duration
}

func (d dialer) Dial(network, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d.timeout)
	defer cancel()
	return d.dial(ctx, network, addr)
}

// session runs fn in one RMCP+ session.
func (b *ipmiBMC) session(ctx context.Context, op string, fn func(c *client.Client) error) (err error) {
	c, err := client.NewClient(b.host, b.port, b.cfg.User, b.cfg.Password)
	if err != nil {
		return fmt.Errorf("ipmi %s %s: %w", op, b.cfg.Address, err)
	}
	c.WithCipherSuiteID(types.CipherSuiteID(b.q.CipherSuite))
	c.WithTimeout(min(b.cfg.Timeout, 2*time.Second))
	c.WithRetry(2)
	if b.cfg.Dial != nil {
		c.WithUDPProxy(dialer{dial: b.cfg.Dial, timeout: b.cfg.Timeout})
	}
	ctx, cancel := context.WithTimeout(ctx, 3*b.cfg.Timeout)
	defer cancel()
	defer func() {
		// Close also releases the UDP socket after a failed Connect; the BMC may not answer it.
		cctx, ccancel := context.WithTimeout(context.Background(), time.Second)
		defer ccancel()
		_ = c.Close(cctx)
	}()
	if err := c.Connect(ctx); err != nil {
		return fmt.Errorf("ipmi %s %s: open session: %w", op, b.cfg.Address, err)
	}
	if err := fn(c); err != nil {
		return fmt.Errorf("ipmi %s %s: %w", op, b.cfg.Address, err)
	}
	return nil
}

func (b *ipmiBMC) control(ctx context.Context, op string, cc chassis.ChassisControl) error {
	return b.session(ctx, op, func(c *client.Client) error {
		_, err := c.ChassisControl(ctx, cc)
		return err
	})
}

func (b *ipmiBMC) PowerOn(ctx context.Context) error {
	return b.control(ctx, "power on", chassis.ChassisControlPowerUp)
}

func (b *ipmiBMC) PowerOff(ctx context.Context) error {
	return b.control(ctx, "power off", chassis.ChassisControlPowerDown)
}

func (b *ipmiBMC) PowerReset(ctx context.Context) error {
	return b.control(ctx, "power reset", chassis.ChassisControlHardReset)
}

// PowerCycle powers a machine that is off on (the IPMI spec leaves a cycle in S5 to the BMC, and
// many refuse it with "not supported in present state"), and cycles one that is on.
func (b *ipmiBMC) PowerCycle(ctx context.Context) error {
	state, err := b.PowerState(ctx)
	if err != nil {
		return err
	}
	if state == PowerStateOff {
		return b.PowerOn(ctx)
	}
	return b.control(ctx, "power cycle", chassis.ChassisControlPowerCycle)
}

func (b *ipmiBMC) BootOnce(ctx context.Context, dev string) error {
	var sel types.BootDeviceSelector
	switch dev {
	case BootPXE:
		sel = types.BootDeviceSelectorForcePXE
	case BootDisk:
		sel = types.BootDeviceSelectorForceHardDrive
	default:
		return fmt.Errorf("ipmi boot once %s: device %q: %w", b.cfg.Address, dev, ErrUnsupported)
	}
	if b.q.NoBootOverride {
		return nil
	}
	return b.session(ctx, "boot once "+dev, func(c *client.Client) error {
		return c.SetBootDevice(ctx, sel, types.BIOSBootType(b.q.EFIBoot), false)
	})
}

func (b *ipmiBMC) PowerState(ctx context.Context) (string, error) {
	state := ""
	err := b.session(ctx, "power status", func(c *client.Client) error {
		st, err := c.GetChassisStatus(ctx)
		if err != nil {
			return err
		}
		state = PowerStateOff
		if st.PowerIsOn {
			state = PowerStateOn
		}
		return nil
	})
	return state, err
}

// LED turns the identify LED on until turned off (Chassis Identify with "force on") or off
// (interval 0).
func (b *ipmiBMC) LED(ctx context.Context, on bool) error {
	if b.q.NoIdentify {
		return fmt.Errorf("ipmi identify %s: %w", b.cfg.Address, ErrUnsupported)
	}
	return b.session(ctx, "identify", func(c *client.Client) error {
		_, err := c.ChassisIdentify(ctx, 0, on)
		if rerr, ok := types.IsResponseError(err); ok && rerr.CompletionCode() == types.CodeInvalidCommand {
			return errors.Join(err, ErrUnsupported)
		}
		return err
	})
}
