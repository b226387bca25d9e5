package lldp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// htons converts a 16-bit value to network byte order for AF_PACKET protocol fields.
func htons(v uint16) uint16 { return v<<8 | v>>8 }

// Listen collects the LLDP neighbours seen on the interface ifname for the duration d (or until
// ctx ends), deduplicated by chassis and port. It opens an AF_PACKET socket bound to the interface
// and joins the LLDP multicast group, so the interface must be up. Frames that do not parse are
// skipped.
func Listen(ctx context.Context, ifname string, d time.Duration) ([]Neighbor, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("listen lldp on %s: %w", ifname, err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(EtherType)))
	if err != nil {
		return nil, fmt.Errorf("listen lldp on %s: socket: %w", ifname, err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(EtherType), Ifindex: ifi.Index}); err != nil {
		return nil, fmt.Errorf("listen lldp on %s: bind: %w", ifname, err)
	}
	mreq := unix.PacketMreq{Ifindex: int32(ifi.Index), Type: unix.PACKET_MR_MULTICAST, Alen: 6}
	mac := multicastMAC()
	copy(mreq.Address[:], mac[:])
	if err := unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mreq); err != nil {
		return nil, fmt.Errorf("listen lldp on %s: join multicast group: %w", ifname, err)
	}
	// Short receive timeouts bound every read, so the deadline and ctx are checked often.
	tv := unix.NsecToTimeval((200 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return nil, fmt.Errorf("listen lldp on %s: receive timeout: %w", ifname, err)
	}

	deadline := time.Now().Add(d)
	seen := map[[2]string]bool{}
	var out []Neighbor
	buf := make([]byte, 9216)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		switch {
		case errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return out, fmt.Errorf("listen lldp on %s: receive: %w", ifname, err)
		}
		nb, err := ParseFrame(buf[:n])
		if err != nil {
			continue
		}
		key := [2]string{nb.ChassisID, nb.PortID}
		if !seen[key] {
			seen[key] = true
			out = append(out, nb)
		}
	}
	return out, nil
}

// Send writes one LLDP frame with the given neighbour data from the interface ifname. It exists
// for tests and for lab tooling that needs to play a switch.
func Send(ifname string, n Neighbor) error {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return fmt.Errorf("send lldp on %s: %w", ifname, err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("send lldp on %s: socket: %w", ifname, err)
	}
	defer unix.Close(fd)
	frame := Frame(ifi.HardwareAddr, n)
	sa := &unix.SockaddrLinklayer{Protocol: htons(EtherType), Ifindex: ifi.Index, Halen: 6}
	dst := multicastMAC()
	copy(sa.Addr[:], dst[:])
	if err := unix.Sendto(fd, frame, 0, sa); err != nil {
		return fmt.Errorf("send lldp on %s: %w", ifname, err)
	}
	return nil
}

// Frame builds an Ethernet frame carrying n: chassis ID and port ID as locally assigned strings
// (subtype 7) unless they parse as MAC addresses, TTL, port description, system name, End.
func Frame(src net.HardwareAddr, n Neighbor) []byte {
	dst := multicastMAC()
	b := append([]byte{}, dst[:]...)
	b = append(b, src...)
	b = append(b, byte(EtherType>>8), byte(EtherType&0xff))
	id := func(typ int, macSub byte, v string) {
		if mac, err := net.ParseMAC(v); err == nil && len(mac) == 6 {
			b = appendTLV(b, typ, append([]byte{macSub}, mac...))
			return
		}
		b = appendTLV(b, typ, append([]byte{7}, v...))
	}
	id(tlvChassisID, chassisMAC, n.ChassisID)
	id(tlvPortID, portMAC, n.PortID)
	b = appendTLV(b, tlvTTL, []byte{byte(n.TTL >> 8), byte(n.TTL)})
	if n.PortDescription != "" {
		b = appendTLV(b, tlvPortDesc, []byte(n.PortDescription))
	}
	if n.SystemName != "" {
		b = appendTLV(b, tlvSystemName, []byte(n.SystemName))
	}
	return appendTLV(b, tlvEnd, nil)
}

func appendTLV(b []byte, typ int, v []byte) []byte {
	h := uint16(typ)<<9 | uint16(len(v))&0x1ff
	b = append(b, byte(h>>8), byte(h))
	return append(b, v...)
}
