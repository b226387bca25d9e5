// Package inband talks to the local BMC through the host's IPMI system interface (/dev/ipmi0 of
// the Linux ipmi_devintf driver). The hammer uses it to find out how the BMC is reached out of
// band — its LAN IP and MAC (Get LAN Configuration Parameters 3 and 5) and its vendor (Get
// Device ID) — and to create or update a user with a fresh random password, which together become
// the machine's api.MachineBMC.
//
// The package links into the hammer: it imports the standard library, golang.org/x/sys/unix,
// pkg/api and pkg/bmc/vendor only.
package inband

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/bmc/vendor"
)

// Network functions.
const (
	NetFnApp       = 0x06
	NetFnTransport = 0x0c
)

// Commands.
const (
	CmdGetDeviceID     = 0x01 // App
	CmdSetUserAccess   = 0x43 // App
	CmdGetUserAccess   = 0x44 // App
	CmdSetUserName     = 0x45 // App
	CmdGetUserName     = 0x46 // App
	CmdSetUserPassword = 0x47 // App
	CmdGetChannelInfo  = 0x42 // App
	CmdGetLANConfig    = 0x02 // Transport
	LANParamIP         = 3
	LANParamIPSource   = 4
	LANParamMAC        = 5
	LANParamNetmask    = 6
	mediumLAN          = 0x04 // 802.3 LAN, Get Channel Info byte 3
	privAdmin          = 0x04
	passwordOpDisable  = 0x00
	passwordOpEnable   = 0x01
	passwordOpSet      = 0x02
	passwordOpTest     = 0x03
	maxUserName        = 16
)

// Transport sends one request to the BMC and returns the response data after the completion
// code; a non-zero completion code is a *CompletionError.
type Transport interface {
	Send(ctx context.Context, netfn, cmd uint8, data []byte) ([]byte, error)
}

// CompletionError is a response with a non-zero completion code.
type CompletionError struct {
	NetFn, Cmd, Code uint8
}

func (e *CompletionError) Error() string {
	return fmt.Sprintf("netfn 0x%02x cmd 0x%02x: completion code 0x%02x", e.NetFn, e.Cmd, e.Code)
}

// Client issues the IPMI commands the hammer needs.
type Client struct {
	t Transport
}

// New returns a client over t (a Device, or a fake in tests).
func New(t Transport) *Client { return &Client{t: t} }

// DeviceID is the decoded Get Device ID response.
type DeviceID struct {
	DeviceID       uint8
	DeviceRevision uint8
	Firmware       string // major.minor (minor is BCD)
	IPMIVersion    string
	ManufacturerID uint32
	ProductID      uint16
}

// DeviceID reads Get Device ID.
func (c *Client) DeviceID(ctx context.Context) (DeviceID, error) {
	r, err := c.t.Send(ctx, NetFnApp, CmdGetDeviceID, nil)
	if err != nil {
		return DeviceID{}, fmt.Errorf("get device id: %w", err)
	}
	return decodeDeviceID(r)
}

func decodeDeviceID(r []byte) (DeviceID, error) {
	if len(r) < 11 {
		return DeviceID{}, fmt.Errorf("get device id: response of %d bytes, want at least 11", len(r))
	}
	return DeviceID{
		DeviceID:       r[0],
		DeviceRevision: r[1] & 0x0f,
		Firmware:       fmt.Sprintf("%d.%02x", r[2]&0x7f, r[3]),
		IPMIVersion:    fmt.Sprintf("%d.%d", r[4]&0x0f, r[4]>>4),
		ManufacturerID: uint32(r[6]) | uint32(r[7])<<8 | uint32(r[8]&0x0f)<<16,
		ProductID:      uint16(r[9]) | uint16(r[10])<<8,
	}, nil
}

// LANChannel returns the first channel (1..11) whose medium is 802.3 LAN; BMCs that do not
// answer Get Channel Info get channel 1, where nearly all of them have their LAN.
func (c *Client) LANChannel(ctx context.Context) (uint8, error) {
	answered := false
	for ch := uint8(1); ch <= 11; ch++ {
		r, err := c.t.Send(ctx, NetFnApp, CmdGetChannelInfo, []byte{ch})
		if ctx.Err() != nil {
			return 0, fmt.Errorf("get channel info: %w", ctx.Err())
		}
		var ce *CompletionError
		if errors.As(err, &ce) {
			continue // no such channel
		}
		if err != nil {
			return 0, fmt.Errorf("get channel info %d: %w", ch, err)
		}
		answered = true
		if len(r) >= 2 && r[1]&0x7f == mediumLAN {
			return ch, nil
		}
	}
	if answered {
		return 0, errors.New("the bmc has no lan channel")
	}
	return 1, nil
}

// LANParam reads one LAN configuration parameter of a channel (without the revision byte).
func (c *Client) LANParam(ctx context.Context, ch, param uint8) ([]byte, error) {
	r, err := c.t.Send(ctx, NetFnTransport, CmdGetLANConfig, []byte{ch & 0x0f, param, 0, 0})
	if err != nil {
		return nil, fmt.Errorf("get lan parameter %d of channel %d: %w", param, ch, err)
	}
	if len(r) < 1 {
		return nil, fmt.Errorf("get lan parameter %d of channel %d: empty response", param, ch)
	}
	return r[1:], nil
}

// LANAddress reads the IP (parameter 3) and MAC (parameter 5) of a LAN channel.
func (c *Client) LANAddress(ctx context.Context, ch uint8) (netip.Addr, net.HardwareAddr, error) {
	ipb, err := c.LANParam(ctx, ch, LANParamIP)
	if err != nil {
		return netip.Addr{}, nil, err
	}
	if len(ipb) < 4 {
		return netip.Addr{}, nil, fmt.Errorf("lan ip parameter has %d bytes", len(ipb))
	}
	macb, err := c.LANParam(ctx, ch, LANParamMAC)
	if err != nil {
		return netip.Addr{}, nil, err
	}
	if len(macb) < 6 {
		return netip.Addr{}, nil, fmt.Errorf("lan mac parameter has %d bytes", len(macb))
	}
	return netip.AddrFrom4([4]byte(ipb[:4])), net.HardwareAddr(bytes.Clone(macb[:6])), nil
}

// userName reads the name of a user ID ("" for an empty slot).
func (c *Client) userName(ctx context.Context, id uint8) (string, error) {
	r, err := c.t.Send(ctx, NetFnApp, CmdGetUserName, []byte{id & 0x3f})
	if err != nil {
		return "", fmt.Errorf("get user name %d: %w", id, err)
	}
	return string(bytes.TrimRight(r, "\x00")), nil
}

// maxUsers reads how many user IDs the BMC has (Get User Access byte 1).
func (c *Client) maxUsers(ctx context.Context, ch uint8) (uint8, error) {
	r, err := c.t.Send(ctx, NetFnApp, CmdGetUserAccess, []byte{ch & 0x0f, 1})
	if err != nil {
		return 0, fmt.Errorf("get user access: %w", err)
	}
	if len(r) < 1 || r[0]&0x3f < 2 {
		return 0, fmt.Errorf("get user access: bad response % x", r)
	}
	return r[0] & 0x3f, nil
}

// EncodeSetUserName is the request data of Set User Name.
func EncodeSetUserName(id uint8, name string) ([]byte, error) {
	if name == "" || len(name) > maxUserName {
		return nil, fmt.Errorf("user name %q: want 1 to %d bytes", name, maxUserName)
	}
	b := make([]byte, 1+maxUserName)
	b[0] = id & 0x3f
	copy(b[1:], name)
	return b, nil
}

// EncodeSetUserPassword is the request data of Set User Password: op 0..3; passwords of up to
// 16 bytes use the 16 byte form, longer ones (up to 20) the 20 byte form.
func EncodeSetUserPassword(id, op uint8, password string) ([]byte, error) {
	b := []byte{id & 0x3f, op & 0x03}
	if op != passwordOpSet && op != passwordOpTest {
		return b, nil
	}
	size := 16
	if len(password) > 16 {
		size = 20
		b[0] |= 0x80
	}
	if len(password) > 20 || password == "" {
		return nil, errors.New("password: want 1 to 20 bytes")
	}
	pw := make([]byte, size)
	copy(pw, password)
	return append(b, pw...), nil
}

// EncodeSetUserAccess is the request data of Set User Access: change the bits, enable IPMI
// messaging and link authentication, privilege limit, on channel ch.
func EncodeSetUserAccess(ch, id, priv uint8) []byte {
	return []byte{0x80 | 0x20 | 0x10 | ch&0x0f, id & 0x3f, priv & 0x0f}
}

// EnsureUser makes name an enabled administrator with password on channel ch: it reuses the user
// ID that already has the name, else takes the first empty one (never ID 1, the anonymous
// user). It returns the user ID.
func (c *Client) EnsureUser(ctx context.Context, ch uint8, name, password string) (uint8, error) {
	max, err := c.maxUsers(ctx, ch)
	if err != nil {
		return 0, err
	}
	var id, free uint8
	for i := uint8(2); i <= max; i++ {
		n, err := c.userName(ctx, i)
		if err != nil {
			return 0, err
		}
		if n == name {
			id = i
			break
		}
		if n == "" && free == 0 {
			free = i
		}
	}
	if id == 0 {
		if free == 0 {
			return 0, fmt.Errorf("ensure user %s: all %d user ids are taken", name, max)
		}
		id = free
		req, err := EncodeSetUserName(id, name)
		if err != nil {
			return 0, err
		}
		if _, err := c.t.Send(ctx, NetFnApp, CmdSetUserName, req); err != nil {
			return 0, fmt.Errorf("set user name %d: %w", id, err)
		}
	}
	req, err := EncodeSetUserPassword(id, passwordOpSet, password)
	if err != nil {
		return 0, err
	}
	if _, err := c.t.Send(ctx, NetFnApp, CmdSetUserPassword, req); err != nil {
		return 0, fmt.Errorf("set user password %d: %w", id, err)
	}
	if _, err := c.t.Send(ctx, NetFnApp, CmdSetUserAccess, EncodeSetUserAccess(ch, id, privAdmin)); err != nil {
		return 0, fmt.Errorf("set user access %d: %w", id, err)
	}
	enable, _ := EncodeSetUserPassword(id, passwordOpEnable, "")
	if _, err := c.t.Send(ctx, NetFnApp, CmdSetUserPassword, enable); err != nil {
		return 0, fmt.Errorf("enable user %d: %w", id, err)
	}
	return id, nil
}

// RandomPassword returns n random characters from [A-Za-z0-9], which every BMC's password rules
// accept (n up to 20; 16 fits the IPMI 1.5 16-byte form).
func RandomPassword(n int) (string, error) {
	const chars = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"
	if n < 8 || n > 20 {
		return "", fmt.Errorf("password length %d: want 8 to 20", n)
	}
	out := make([]byte, n)
	buf := make([]byte, 2*n)
	for i := 0; i < n; {
		if _, err := rand.Read(buf); err != nil {
			return "", err
		}
		for _, b := range buf {
			if i == n {
				break
			}
			if int(b) < 256-256%len(chars) { // no modulo bias
				out[i] = chars[int(b)%len(chars)]
				i++
			}
		}
	}
	return string(out), nil
}

// ProvisionConfig says which user to create.
type ProvisionConfig struct {
	// User is the name of the user metal-api's BMC agent logs in with (default "metal").
	User string
	// Password, if empty, is a random 16 character password.
	Password string
}

// Provision reads the BMC's vendor and LAN address and creates (or resets) the user of cfg; the
// result is what the hammer registers as the machine's BMC.
func (c *Client) Provision(ctx context.Context, cfg ProvisionConfig) (api.MachineBMC, error) {
	if cfg.User == "" {
		cfg.User = "metal"
	}
	if cfg.Password == "" {
		pw, err := RandomPassword(16)
		if err != nil {
			return api.MachineBMC{}, fmt.Errorf("provision bmc: %w", err)
		}
		cfg.Password = pw
	}
	dev, err := c.DeviceID(ctx)
	if err != nil {
		return api.MachineBMC{}, fmt.Errorf("provision bmc: %w", err)
	}
	ch, err := c.LANChannel(ctx)
	if err != nil {
		return api.MachineBMC{}, fmt.Errorf("provision bmc: %w", err)
	}
	ip, mac, err := c.LANAddress(ctx, ch)
	if err != nil {
		return api.MachineBMC{}, fmt.Errorf("provision bmc: %w", err)
	}
	if !ip.IsValid() || ip.IsUnspecified() {
		return api.MachineBMC{}, fmt.Errorf("provision bmc: lan channel %d has no ip address", ch)
	}
	if _, err := c.EnsureUser(ctx, ch, cfg.User, cfg.Password); err != nil {
		return api.MachineBMC{}, fmt.Errorf("provision bmc: %w", err)
	}
	v := vendor.FromIANA(dev.ManufacturerID)
	if v == "" {
		v = fmt.Sprintf("IANA %d", dev.ManufacturerID)
	}
	return api.MachineBMC{Address: ip.String(), MAC: mac.String(), User: cfg.User, Password: cfg.Password, Vendor: v}, nil
}
