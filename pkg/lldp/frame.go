// Package lldp encodes, decodes, sends and receives IEEE 802.1AB LLDP frames (ethertype 0x88cc)
// through AF_PACKET sockets, which can be opened inside any network namespace. The hammer learns
// which switch port each NIC is cabled to; the switch agent announces itself on its ports (system
// name = switch ID, port ID = port name) and learns the machine NICs on them.
package lldp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/metalforge/metalforge/pkg/api"
)

// EtherType is the Ethernet type of LLDP frames.
const EtherType = 0x88cc

// multicastMAC is the nearest-bridge group address LLDP frames are sent to.
func multicastMAC() [6]byte { return [6]byte{0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e} }

// TLV types this package decodes.
const (
	tlvEnd        = 0
	tlvChassisID  = 1
	tlvPortID     = 2
	tlvTTL        = 3
	tlvPortDesc   = 4
	tlvSystemName = 5
)

// maxTLV is the longest value a TLV header can describe.
const maxTLV = 511

// Chassis ID and port ID subtypes that need more than a string conversion.
const (
	chassisMAC     = 4
	chassisNetAddr = 5
	chassisLocal   = 7
	portMAC        = 3
	portNetAddr    = 4
	portIfName     = 5
)

// ErrNotLLDP is returned for frames that are not LLDP.
var ErrNotLLDP = errors.New("not an lldp frame")

// Neighbor is one LLDP advertisement: the switch and the port a frame came from.
type Neighbor struct {
	ChassisID       string
	PortID          string
	PortDescription string
	SystemName      string
	TTL             uint16
}

// API converts n to the wire type.
func (n Neighbor) API() api.LLDPNeighbor {
	return api.LLDPNeighbor{ChassisID: n.ChassisID, PortID: n.PortID, SystemName: n.SystemName}
}

// ParseFrame decodes an Ethernet frame (destination, source, optional 802.1Q tags, EtherType)
// carrying LLDP.
func ParseFrame(frame []byte) (Neighbor, error) {
	if len(frame) < 14 {
		return Neighbor{}, fmt.Errorf("frame of %d bytes: %w", len(frame), ErrNotLLDP)
	}
	off := 12
	typ := binary.BigEndian.Uint16(frame[off:])
	for typ == 0x8100 || typ == 0x88a8 { // VLAN tags
		off += 4
		if len(frame) < off+2 {
			return Neighbor{}, fmt.Errorf("truncated vlan tag: %w", ErrNotLLDP)
		}
		typ = binary.BigEndian.Uint16(frame[off:])
	}
	if typ != EtherType {
		return Neighbor{}, fmt.Errorf("ethertype %#04x: %w", typ, ErrNotLLDP)
	}
	return ParseTLVs(frame[off+2:])
}

// ParseTLVs decodes an LLDP data unit (the TLVs after the Ethernet header). Chassis ID, port ID
// and TTL are mandatory and must come first, in that order.
func ParseTLVs(b []byte) (Neighbor, error) {
	var n Neighbor
	for i := 0; ; i++ {
		if len(b) == 0 {
			if i == 0 {
				return n, errors.New("parse lldp: empty data unit")
			}
			break // some senders omit the End TLV
		}
		if len(b) < 2 {
			return n, errors.New("parse lldp: truncated tlv header")
		}
		h := binary.BigEndian.Uint16(b)
		typ, length := int(h>>9), int(h&0x1ff)
		b = b[2:]
		if len(b) < length {
			return n, fmt.Errorf("parse lldp: tlv type %d wants %d bytes, %d left", typ, length, len(b))
		}
		v := b[:length]
		b = b[length:]
		if want := [...]int{tlvChassisID, tlvPortID, tlvTTL}; i < len(want) && typ != want[i] {
			return n, fmt.Errorf("parse lldp: tlv %d is type %d, want %d", i, typ, want[i])
		}
		switch typ {
		case tlvEnd:
			return n, n.check()
		case tlvChassisID:
			if length < 2 {
				return n, errors.New("parse lldp: short chassis id")
			}
			n.ChassisID = idString(v[0], v[1:], chassisMAC, chassisNetAddr)
		case tlvPortID:
			if length < 2 {
				return n, errors.New("parse lldp: short port id")
			}
			n.PortID = idString(v[0], v[1:], portMAC, portNetAddr)
		case tlvTTL:
			if length != 2 {
				return n, fmt.Errorf("parse lldp: ttl of %d bytes", length)
			}
			n.TTL = binary.BigEndian.Uint16(v)
		case tlvPortDesc:
			n.PortDescription = text(v)
		case tlvSystemName:
			n.SystemName = text(v)
		}
	}
	return n, n.check()
}

func (n Neighbor) check() error {
	if n.ChassisID == "" || n.PortID == "" {
		return errors.New("parse lldp: chassis id or port id missing")
	}
	return nil
}

// idString renders a chassis or port ID by its subtype: MAC addresses in colon notation, network
// addresses (IANA family 1 = IPv4, 2 = IPv6) as IPs, everything else as text.
func idString(subtype byte, v []byte, macSubtype, addrSubtype byte) string {
	switch {
	case subtype == macSubtype && len(v) == 6:
		return net.HardwareAddr(v).String()
	case subtype == addrSubtype && len(v) == 5 && v[0] == 1:
		return netip.AddrFrom4([4]byte(v[1:])).String()
	case subtype == addrSubtype && len(v) == 17 && v[0] == 2:
		return netip.AddrFrom16([16]byte(v[1:])).String()
	}
	return text(v)
}

// text trims the NUL padding and blanks some switches send.
func text(v []byte) string {
	return strings.Trim(string(v), "\x00 \t\r\n")
}

// Marshal encodes n as an Ethernet frame from src to the LLDP multicast address: chassis and port
// IDs that parse as MAC addresses with the MAC subtype, others as local name (chassis) or
// interface name (port); TTL (120 s when zero), port description and system name when set, End.
func Marshal(src net.HardwareAddr, n Neighbor) ([]byte, error) {
	if len(src) != 6 {
		return nil, fmt.Errorf("marshal lldp: source %q is not an ethernet address", src)
	}
	if n.ChassisID == "" || n.PortID == "" {
		return nil, errors.New("marshal lldp: chassis id and port id are required")
	}
	dst := multicastMAC()
	b := make([]byte, 0, 128)
	b = append(b, dst[:]...)
	b = append(b, src...)
	b = binary.BigEndian.AppendUint16(b, EtherType)
	id := func(s string, macSub, nameSub byte) []byte {
		if mac, err := net.ParseMAC(s); err == nil && len(mac) == 6 {
			return append([]byte{macSub}, mac...)
		}
		return append([]byte{nameSub}, s...)
	}
	ttl := n.TTL
	if ttl == 0 {
		ttl = 120
	}
	tlvs := []struct {
		typ int
		val []byte
	}{
		{tlvChassisID, id(n.ChassisID, chassisMAC, chassisLocal)},
		{tlvPortID, id(n.PortID, portMAC, portIfName)},
		{tlvTTL, binary.BigEndian.AppendUint16(nil, ttl)},
		{tlvPortDesc, []byte(n.PortDescription)},
		{tlvSystemName, []byte(n.SystemName)},
		{tlvEnd, nil},
	}
	for _, t := range tlvs {
		if len(t.val) == 0 && (t.typ == tlvPortDesc || t.typ == tlvSystemName) {
			continue
		}
		if len(t.val) > maxTLV {
			return nil, fmt.Errorf("marshal lldp: tlv %d is %d bytes long", t.typ, len(t.val))
		}
		b = binary.BigEndian.AppendUint16(b, uint16(t.typ)<<9|uint16(len(t.val)))
		b = append(b, t.val...)
	}
	return b, nil
}
