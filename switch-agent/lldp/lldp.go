// Package lldp sends and receives LLDP frames (IEEE 802.1AB, ethertype 0x88cc) on one interface
// through an AF_PACKET socket, which can be opened inside any network namespace. The switch agent
// announces itself on its ports (system name = switch ID, port ID = port name) and learns the
// machine NICs on them; a machine learns which switch port it is plugged into.
package lldp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
)

// EtherType of LLDP.
const EtherType = 0x88cc

// multicast is the nearest-bridge LLDP destination address.
func multicast() [6]byte { return [6]byte{0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e} }

// TLV types and subtypes used here.
const (
	tlvEnd        = 0
	tlvChassisID  = 1
	tlvPortID     = 2
	tlvTTL        = 3
	tlvSystemName = 5

	chassisMAC   = 4
	chassisLocal = 7
	portMAC      = 3
	portIfName   = 5
	portLocal    = 7
)

// Frame is the part of an LLDP frame this project uses.
type Frame struct {
	// ChassisID and PortID are MAC addresses (formatted aa:bb:...) or names.
	ChassisID  string
	PortID     string
	SystemName string
	// TTL in seconds.
	TTL uint16
}

// Marshal encodes f as an Ethernet frame from src to the LLDP multicast address. IDs that parse as
// MAC addresses are sent with the MAC subtype, others as interface name (port) or local (chassis).
func (f Frame) Marshal(src net.HardwareAddr) ([]byte, error) {
	if len(src) != 6 {
		return nil, fmt.Errorf("lldp: source %q is not an ethernet address", src)
	}
	if f.ChassisID == "" || f.PortID == "" {
		return nil, errors.New("lldp: chassis id and port id are required")
	}
	b := make([]byte, 0, 128)
	dst := multicast()
	b = append(b, dst[:]...)
	b = append(b, src...)
	b = binary.BigEndian.AppendUint16(b, EtherType)
	tlv := func(typ int, val []byte) error {
		if len(val) > 511 {
			return fmt.Errorf("lldp: tlv %d is %d bytes long", typ, len(val))
		}
		b = binary.BigEndian.AppendUint16(b, uint16(typ)<<9|uint16(len(val)))
		b = append(b, val...)
		return nil
	}
	id := func(s string, macSub, nameSub byte) []byte {
		if hw, err := net.ParseMAC(s); err == nil && len(hw) == 6 {
			return append([]byte{macSub}, hw...)
		}
		return append([]byte{nameSub}, s...)
	}
	ttl := f.TTL
	if ttl == 0 {
		ttl = 120
	}
	for _, err := range []error{
		tlv(tlvChassisID, id(f.ChassisID, chassisMAC, chassisLocal)),
		tlv(tlvPortID, id(f.PortID, portMAC, portIfName)),
		tlv(tlvTTL, binary.BigEndian.AppendUint16(nil, ttl)),
		tlv(tlvSystemName, []byte(f.SystemName)),
		tlv(tlvEnd, nil),
	} {
		if err != nil {
			return nil, err
		}
	}
	return b, nil
}

// Parse decodes an Ethernet frame carrying LLDP.
func Parse(b []byte) (Frame, error) {
	if len(b) < 14 || binary.BigEndian.Uint16(b[12:14]) != EtherType {
		return Frame{}, errors.New("lldp: not an lldp frame")
	}
	b = b[14:]
	var f Frame
	seen := 0
	for len(b) >= 2 {
		h := binary.BigEndian.Uint16(b)
		typ, n := int(h>>9), int(h&0x1ff)
		if len(b) < 2+n {
			return Frame{}, errors.New("lldp: truncated tlv")
		}
		val := b[2 : 2+n]
		b = b[2+n:]
		switch typ {
		case tlvEnd:
			b = nil
		case tlvChassisID, tlvPortID:
			if n < 2 {
				return Frame{}, fmt.Errorf("lldp: tlv %d too short", typ)
			}
			s := idString(val[0], val[1:], typ == tlvChassisID)
			if typ == tlvChassisID {
				f.ChassisID = s
			} else {
				f.PortID = s
			}
			seen |= 1 << typ
		case tlvTTL:
			if n != 2 {
				return Frame{}, errors.New("lldp: bad ttl tlv")
			}
			f.TTL = binary.BigEndian.Uint16(val)
			seen |= 1 << typ
		case tlvSystemName:
			f.SystemName = string(val)
		}
	}
	if seen != 1<<tlvChassisID|1<<tlvPortID|1<<tlvTTL {
		return Frame{}, errors.New("lldp: chassis id, port id or ttl missing")
	}
	return f, nil
}

func idString(sub byte, val []byte, chassis bool) string {
	mac := (chassis && sub == chassisMAC) || (!chassis && sub == portMAC)
	if mac && len(val) == 6 {
		return net.HardwareAddr(val).String()
	}
	return string(val)
}
