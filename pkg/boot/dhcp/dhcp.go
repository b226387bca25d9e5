// Package dhcp is the DHCPv4 server of the boot service. In full mode it hands out addresses that
// metal-api leases per MAC (so several stateless boot-servers on one network agree), honours relay
// agents (giaddr) and picks the relay's subnet; in proxy mode it runs next to an existing DHCP
// server and only answers PXE clients with the boot file (ProxyDHCP, PXE spec 2.1). In both modes
// it chooses the boot file from the client's kind: an HTTP script URL for iPXE, undionly.kpxe for
// BIOS PXE ROMs and ipxe.efi for UEFI x64, and tells metal-api about every DISCOVER.
package dhcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
)

// Mode is how the server answers.
type Mode string

// Modes of the server.
const (
	// ModeFull is a complete DHCP server: addresses, network options and boot file.
	ModeFull Mode = "full"
	// ModeProxy answers PXE clients with the boot file only, next to another DHCP server.
	ModeProxy Mode = "proxy"
)

// Ports of the server.
const (
	// ServerPort is the DHCP server (and relay agent) port.
	ServerPort = 67
	// ClientPort is the DHCP client port.
	ClientPort = 68
	// PXEPort is where PXE clients send their boot server REQUEST after a ProxyDHCP offer.
	PXEPort = 4011
)

// Backend is what the server needs from metal-api.
type Backend interface {
	// Dhcp records that mac is PXE booting; unknown MACs are not an error.
	Dhcp(ctx context.Context, mac net.HardwareAddr) error
	// Lease returns the address of mac in [first, last], the same one on every call.
	Lease(ctx context.Context, mac net.HardwareAddr, first, last netip.Addr) (netip.Addr, error)
}

// Subnet is a network the server gives addresses in.
type Subnet struct {
	// Prefix is the network; its length is sent as the subnet mask.
	Prefix netip.Prefix
	// First and Last bound the dynamic range, inclusive.
	First, Last netip.Addr
	// Router is the default gateway (option 3), omitted when zero.
	Router netip.Addr
	// DNS are the name servers (option 6).
	DNS []netip.Addr
}

// Validate checks that the range lies inside the prefix.
func (s Subnet) Validate() error {
	switch {
	case !s.Prefix.IsValid() || !s.Prefix.Addr().Is4():
		return fmt.Errorf("subnet %s: not an IPv4 prefix", s.Prefix)
	case !s.First.Is4() || !s.Last.Is4() || s.Last.Less(s.First):
		return fmt.Errorf("subnet %s: range %s-%s is not two ascending IPv4 addresses", s.Prefix, s.First, s.Last)
	case !s.Prefix.Contains(s.First) || !s.Prefix.Contains(s.Last):
		return fmt.Errorf("subnet %s: range %s-%s is outside the prefix", s.Prefix, s.First, s.Last)
	case s.Router.IsValid() && !s.Prefix.Contains(s.Router):
		return fmt.Errorf("subnet %s: router %s is outside the prefix", s.Prefix, s.Router)
	}
	return nil
}

// Boot names the boot files the server hands out.
type Boot struct {
	// ScriptURL is the iPXE script for iPXE clients, e.g. http://10.0.0.1/boot.ipxe.
	ScriptURL string
	// TFTPServer is the next-server (siaddr) for TFTP boot files; the server IP when zero.
	TFTPServer netip.Addr
	// BIOSFile is the TFTP file for legacy BIOS PXE ROMs (client arch 0).
	BIOSFile string
	// EFIFile is the TFTP file for UEFI x64 PXE (client arch 7 and 9).
	EFIFile string
	// EFIHTTPURL is ipxe.efi over HTTP for UEFI HTTP boot clients (arch 16); empty: not offered.
	EFIHTTPURL string
}

// Config configures a Server. Backend and ServerIP are required; Subnet too in full mode.
type Config struct {
	Mode Mode
	// ServerIP is the server identifier: this server's address on the interface.
	ServerIP netip.Addr
	// Subnet is the network of the interface.
	Subnet Subnet
	// Relayed are networks behind DHCP relay agents; a relayed request gets an address of the one
	// containing its giaddr.
	Relayed []Subnet
	// LeaseTime is the lease duration sent to clients (default 1h).
	LeaseTime time.Duration
	Boot      Boot
	Backend   Backend
	// Timeout bounds each Backend call (default 5s).
	Timeout time.Duration
	// MaxInFlight bounds the packets handled at once; more are dropped (default 1024).
	MaxInFlight int
	Log         *slog.Logger
}

func (c *Config) defaults() {
	if c.Mode == "" {
		c.Mode = ModeFull
	}
	if c.LeaseTime <= 0 {
		c.LeaseTime = time.Hour
	}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 1024
	}
	if !c.Boot.TFTPServer.IsValid() {
		c.Boot.TFTPServer = c.ServerIP
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

func (c *Config) validate() error {
	if c.Backend == nil {
		return errors.New("dhcp: backend is required")
	}
	if !c.ServerIP.Is4() {
		return fmt.Errorf("dhcp: server ip %s is not IPv4", c.ServerIP)
	}
	switch c.Mode {
	case ModeProxy:
		return nil
	case ModeFull:
	default:
		return fmt.Errorf("dhcp: unknown mode %q", c.Mode)
	}
	if err := c.Subnet.Validate(); err != nil {
		return fmt.Errorf("dhcp: %w", err)
	}
	for _, s := range c.Relayed {
		if err := s.Validate(); err != nil {
			return fmt.Errorf("dhcp: relayed %w", err)
		}
	}
	return nil
}

// Server is the DHCP server. Create it with Listen, run it with Serve.
type Server struct {
	cfg  Config
	conn net.PacketConn // port 67
	pxe  net.PacketConn // port 4011, proxy mode only
	sem  chan struct{}
}

// Listen opens the server's sockets on iface: port 67, and port 4011 in proxy mode. It does all
// its network namespace dependent work before returning, so a caller may run it on a thread
// inside another namespace and Serve anywhere.
func Listen(iface string, cfg Config) (*Server, error) {
	cfg.defaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, sem: make(chan struct{}, cfg.MaxInFlight)}
	var err error
	if s.conn, err = server4.NewIPv4UDPConn(iface, &net.UDPAddr{Port: ServerPort}); err != nil {
		return nil, fmt.Errorf("dhcp: listen on %s port %d: %w", iface, ServerPort, err)
	}
	if cfg.Mode == ModeProxy {
		if s.pxe, err = server4.NewIPv4UDPConn(iface, &net.UDPAddr{Port: PXEPort}); err != nil {
			s.conn.Close()
			return nil, fmt.Errorf("dhcp: listen on %s port %d: %w", iface, PXEPort, err)
		}
	}
	return s, nil
}

// Close closes the sockets; Serve does it when its context ends.
func (s *Server) Close() error {
	err := s.conn.Close()
	if s.pxe != nil {
		err = errors.Join(err, s.pxe.Close())
	}
	return err
}

// Serve answers DHCP until ctx ends, then closes the sockets.
func (s *Server) Serve(ctx context.Context) error {
	conns := []net.PacketConn{s.conn}
	if s.pxe != nil {
		conns = append(conns, s.pxe)
	}
	errc := make(chan error, len(conns))
	for _, c := range conns {
		port := c.LocalAddr().(*net.UDPAddr).Port
		srv, err := server4.NewServer("", nil, func(conn net.PacketConn, peer net.Addr, m *dhcpv4.DHCPv4) {
			s.handle(ctx, conn, port, peer, m)
		}, server4.WithConn(c))
		if err != nil {
			return fmt.Errorf("dhcp: %w", err)
		}
		go func() { errc <- srv.Serve() }()
	}
	s.cfg.Log.Info("dhcp server started", "mode", string(s.cfg.Mode), "serverIP", s.cfg.ServerIP.String())
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		err = fmt.Errorf("dhcp: serve: %w", err)
	}
	s.Close()
	return err
}

// handle answers one packet; server4 calls it on its own goroutine.
func (s *Server) handle(ctx context.Context, conn net.PacketConn, port int, peer net.Addr, req *dhcpv4.DHCPv4) {
	if req.OpCode != dhcpv4.OpcodeBootRequest || len(req.ClientHWAddr) != 6 {
		return
	}
	select {
	case s.sem <- struct{}{}:
		defer func() { <-s.sem }()
	default:
		s.cfg.Log.Warn("dhcp packet dropped, too many in flight", "mac", req.ClientHWAddr.String())
		return
	}
	src, _ := peer.(*net.UDPAddr)
	resp, dst := s.Reply(ctx, req, port, src)
	if resp != nil {
		if _, err := conn.WriteTo(resp.ToBytes(), dst); err != nil {
			s.cfg.Log.Warn("dhcp reply not sent", "mac", req.ClientHWAddr.String(), "to", dst.String(), "error", err)
		} else {
			s.cfg.Log.Debug("dhcp reply sent", "mac", req.ClientHWAddr.String(), "type", resp.MessageType().String(),
				"yiaddr", resp.YourIPAddr.String(), "file", resp.BootFileName, "to", dst.String())
		}
	}
	if req.MessageType() == dhcpv4.MessageTypeDiscover && port == ServerPort && classify(req).netboot() {
		// Only network boot firmware (PXE, iPXE, UEFI HTTP) is "PXE Booting": an installed OS asking
		// for its address is not. After the reply, so that metal-api's latency never delays the OFFER.
		cctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
		defer cancel()
		if err := s.cfg.Backend.Dhcp(cctx, req.ClientHWAddr); err != nil {
			s.cfg.Log.Warn("pxe booting event not recorded", "mac", req.ClientHWAddr.String(), "error", err)
		}
	}
}

// Reply computes the answer to req, received on port from src, and where to send it; nil when the
// server stays silent.
func (s *Server) Reply(ctx context.Context, req *dhcpv4.DHCPv4, port int, src *net.UDPAddr) (*dhcpv4.DHCPv4, *net.UDPAddr) {
	log := s.cfg.Log.With("mac", req.ClientHWAddr.String(), "type", req.MessageType().String(), "giaddr", req.GatewayIPAddr.String())
	if s.cfg.Mode == ModeProxy {
		return s.proxyReply(req, port, src, log)
	}
	if port != ServerPort {
		return nil, nil
	}
	resp, err := s.fullReply(ctx, req, log)
	if err != nil {
		log.Warn("dhcp request not answered", "error", err)
		return nil, nil
	}
	if resp == nil {
		return nil, nil
	}
	return resp, s.destination(req, resp)
}

// destination follows RFC 2131 4.1: to the relay agent, to a configured client, or broadcast.
// Unicast to a not yet configured client would need an ARP entry for yiaddr; like most servers
// that do not write the ARP table, this one broadcasts instead.
func (s *Server) destination(req, resp *dhcpv4.DHCPv4) *net.UDPAddr {
	switch {
	case !isZero(req.GatewayIPAddr):
		return &net.UDPAddr{IP: req.GatewayIPAddr, Port: ServerPort}
	case resp.MessageType() != dhcpv4.MessageTypeNak && !isZero(req.ClientIPAddr):
		return &net.UDPAddr{IP: req.ClientIPAddr, Port: ClientPort}
	default:
		return &net.UDPAddr{IP: net.IPv4bcast, Port: ClientPort}
	}
}

func isZero(ip net.IP) bool { return ip == nil || ip.IsUnspecified() }

// subnet returns the subnet a request comes from: the interface's own, or the relayed one
// containing giaddr.
func (s *Server) subnet(giaddr net.IP) (Subnet, error) {
	if isZero(giaddr) {
		return s.cfg.Subnet, nil
	}
	a, ok := netip.AddrFromSlice(giaddr.To4())
	if !ok {
		return Subnet{}, fmt.Errorf("giaddr %s is not IPv4", giaddr)
	}
	if s.cfg.Subnet.Prefix.Contains(a) {
		return s.cfg.Subnet, nil
	}
	for _, sub := range s.cfg.Relayed {
		if sub.Prefix.Contains(a) {
			return sub, nil
		}
	}
	return Subnet{}, fmt.Errorf("no subnet for relay %s", a)
}

func (s *Server) lease(ctx context.Context, mac net.HardwareAddr, sub Subnet) (netip.Addr, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	ip, err := s.cfg.Backend.Lease(ctx, mac, sub.First, sub.Last)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("lease: %w", err)
	}
	if !sub.Prefix.Contains(ip) {
		return netip.Addr{}, fmt.Errorf("lease %s is outside %s", ip, sub.Prefix)
	}
	return ip, nil
}

// fullReply answers as the network's DHCP server.
func (s *Server) fullReply(ctx context.Context, req *dhcpv4.DHCPv4, log *slog.Logger) (*dhcpv4.DHCPv4, error) {
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		sub, err := s.subnet(req.GatewayIPAddr)
		if err != nil {
			return nil, err
		}
		ip, err := s.lease(ctx, req.ClientHWAddr, sub)
		if err != nil {
			return nil, err
		}
		return s.addressReply(req, dhcpv4.MessageTypeOffer, ip, sub)

	case dhcpv4.MessageTypeRequest:
		if sid := req.ServerIdentifier(); sid != nil && !sid.Equal(s.cfg.ServerIP.AsSlice()) {
			return nil, nil // the client took another server's offer
		}
		want := req.RequestedIPAddress()
		if isZero(want) {
			want = req.ClientIPAddr
		}
		wanted, ok := netip.AddrFromSlice(want.To4())
		if !ok || wanted.IsUnspecified() {
			return nil, errors.New("request without an address")
		}
		sub, err := s.subnet(req.GatewayIPAddr)
		if err != nil {
			return nil, err
		}
		if !sub.Prefix.Contains(wanted) {
			log.Info("dhcp nak", "requested", wanted.String(), "reason", "wrong network")
			return s.nak(req, "wrong network")
		}
		ip, err := s.lease(ctx, req.ClientHWAddr, sub)
		if err != nil {
			return nil, err
		}
		if ip != wanted {
			log.Info("dhcp nak", "requested", wanted.String(), "leased", ip.String())
			return s.nak(req, "address not leased to this client")
		}
		return s.addressReply(req, dhcpv4.MessageTypeAck, ip, sub)

	case dhcpv4.MessageTypeInform:
		sub, err := s.subnet(req.GatewayIPAddr)
		if err != nil {
			return nil, err
		}
		resp, err := s.addressReply(req, dhcpv4.MessageTypeAck, netip.IPv4Unspecified(), sub)
		if err != nil {
			return nil, err
		}
		// RFC 2131 4.3.5: no lease time and no yiaddr in the answer to an INFORM.
		resp.Options.Del(dhcpv4.OptionIPAddressLeaseTime)
		resp.Options.Del(dhcpv4.OptionRenewTimeValue)
		resp.Options.Del(dhcpv4.OptionRebindingTimeValue)
		return resp, nil

	case dhcpv4.MessageTypeRelease:
		// Leases are kept per MAC in metal-api, so the client gets the same address next time;
		// there is nothing to free.
		log.Info("dhcp release", "ciaddr", req.ClientIPAddr.String())
		return nil, nil

	case dhcpv4.MessageTypeDecline:
		// The client found its leased address in use by something metal-api does not know.
		// Another lease would hand out the same address again, so all we can do is tell someone.
		log.Warn("dhcp decline: leased address in use on the network", "requested", req.RequestedIPAddress().String())
		return nil, nil
	}
	return nil, nil
}

// addressReply is an OFFER or ACK for ip in sub, with the boot file for the client's kind.
func (s *Server) addressReply(req *dhcpv4.DHCPv4, mt dhcpv4.MessageType, ip netip.Addr, sub Subnet) (*dhcpv4.DHCPv4, error) {
	resp, err := dhcpv4.NewReplyFromRequest(req,
		dhcpv4.WithMessageType(mt),
		dhcpv4.WithYourIP(ip.AsSlice()),
		dhcpv4.WithClientIP(req.ClientIPAddr),
		dhcpv4.WithServerIP(net.IPv4zero),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(s.cfg.ServerIP.AsSlice())),
		dhcpv4.WithOption(dhcpv4.OptSubnetMask(net.CIDRMask(sub.Prefix.Bits(), 32))),
		dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(s.cfg.LeaseTime)),
		dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(s.cfg.LeaseTime/2)),
		dhcpv4.WithOption(dhcpv4.OptRebindingTimeValue(s.cfg.LeaseTime*7/8)),
	)
	if err != nil {
		return nil, fmt.Errorf("build reply: %w", err)
	}
	if sub.Router.IsValid() {
		resp.UpdateOption(dhcpv4.OptRouter(sub.Router.AsSlice()))
	}
	if len(sub.DNS) > 0 {
		ips := make([]net.IP, 0, len(sub.DNS))
		for _, a := range sub.DNS {
			ips = append(ips, a.AsSlice())
		}
		resp.UpdateOption(dhcpv4.OptDNS(ips...))
	}
	s.setBoot(resp, classify(req), false)
	return resp, nil
}

func (s *Server) nak(req *dhcpv4.DHCPv4, msg string) (*dhcpv4.DHCPv4, error) {
	resp, err := dhcpv4.NewReplyFromRequest(req,
		dhcpv4.WithMessageType(dhcpv4.MessageTypeNak),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(s.cfg.ServerIP.AsSlice())),
		dhcpv4.WithOption(dhcpv4.OptMessage(msg)),
	)
	if err != nil {
		return nil, fmt.Errorf("build nak: %w", err)
	}
	if !isZero(req.GatewayIPAddr) {
		resp.SetBroadcast() // RFC 2131 4.3.2: the relay must broadcast a NAK
	}
	return resp, nil
}
