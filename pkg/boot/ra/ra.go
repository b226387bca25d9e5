// Package ra answers IPv6 Router Solicitations on the PXE network with a minimal Router
// Advertisement: router lifetime 0 and no prefix, so nobody uses this server as a router, but
// iPXE stops waiting for IPv6 autoconfiguration at once (measured: 28 s to 11 s to boot).
package ra

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"syscall"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// ndpHopLimit is the hop limit every Neighbor Discovery message must carry (RFC 4861 6.1.1).
const ndpHopLimit = 255

// Responder answers Router Solicitations on one interface. Create it with Listen.
type Responder struct {
	ifi  *net.Interface
	conn *ipv6.PacketConn
	log  *slog.Logger
}

// Listen opens a raw ICMPv6 socket bound to the interface and joins all-routers (ff02::2). Like
// every Listen of the boot service, it does its namespace-dependent work before returning.
func Listen(ifname string, log *slog.Logger) (*Responder, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("ra: %w", err)
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) { serr = unix.BindToDevice(int(fd), ifname) }); err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(context.Background(), "ip6:ipv6-icmp", "::")
	if err != nil {
		return nil, fmt.Errorf("ra: listen on %s: %w", ifname, err)
	}
	conn := ipv6.NewPacketConn(pc)
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeRouterSolicitation)
	err = errors.Join(
		conn.SetICMPFilter(&f),
		conn.SetControlMessage(ipv6.FlagHopLimit|ipv6.FlagInterface, true),
		conn.JoinGroup(ifi, &net.IPAddr{IP: net.IPv6linklocalallrouters}),
		conn.SetMulticastInterface(ifi),
		conn.SetMulticastHopLimit(ndpHopLimit),
		conn.SetHopLimit(ndpHopLimit),
	)
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("ra: configure socket on %s: %w", ifname, err)
	}
	return &Responder{ifi: ifi, conn: conn, log: log}, nil
}

// Close closes the socket of a responder that is not served.
func (r *Responder) Close() error { return r.conn.Close() }

// Serve answers solicitations until ctx ends.
func (r *Responder) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { r.conn.Close() })
	defer stop()
	r.log.Info("router advertisement responder started", "interface", r.ifi.Name)
	ra := Advertisement(r.ifi.HardwareAddr)
	buf := make([]byte, 1500)
	for {
		n, cm, src, err := r.conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("ra: read: %w", err)
		}
		from, ok := src.(*net.IPAddr)
		if !ok || !solicitation(buf[:n], cm, r.ifi.Index) {
			continue
		}
		// An RS from the unspecified address gets the answer on all-nodes (RFC 4861 6.2.6). The
		// zone is the numeric index: a name would be looked up in the namespace of whatever
		// thread runs this, which need not be the socket's.
		dst := &net.IPAddr{IP: from.IP, Zone: strconv.Itoa(r.ifi.Index)}
		if from.IP.IsUnspecified() {
			dst.IP = net.IPv6linklocalallnodes
		}
		if _, err := r.conn.WriteTo(ra, &ipv6.ControlMessage{IfIndex: r.ifi.Index, HopLimit: ndpHopLimit}, dst); err != nil {
			r.log.Warn("router advertisement not sent", "to", dst.String(), "error", err)
			continue
		}
		r.log.Debug("router advertisement sent", "to", dst.String())
	}
}

// solicitation validates an RS as RFC 4861 6.1.1 asks: hop limit 255, code 0, right interface.
func solicitation(b []byte, cm *ipv6.ControlMessage, ifindex int) bool {
	if cm == nil || cm.HopLimit != ndpHopLimit || (cm.IfIndex != 0 && cm.IfIndex != ifindex) {
		return false
	}
	m, err := icmp.ParseMessage(ipv6.ICMPTypeRouterSolicitation.Protocol(), b)
	return err == nil && m.Type == ipv6.ICMPTypeRouterSolicitation && m.Code == 0
}

// Advertisement is the Router Advertisement the responder sends: no default router (lifetime 0),
// no managed/other configuration flags, no prefixes, and the source link-layer address option
// when mac is known. The kernel fills in the checksum.
func Advertisement(mac net.HardwareAddr) []byte {
	body := make([]byte, 12) // cur hop limit, flags, router lifetime, reachable time, retrans timer
	if len(mac) == 6 {
		body = append(body, 1, 1) // source link-layer address, length 1 (8 bytes)
		body = append(body, mac...)
	}
	binary.BigEndian.PutUint16(body[2:4], 0) // router lifetime: not a default router
	m := icmp.Message{Type: ipv6.ICMPTypeRouterAdvertisement, Body: &icmp.RawBody{Data: body}}
	b, _ := m.Marshal(nil) // cannot fail for a raw body
	return b
}
