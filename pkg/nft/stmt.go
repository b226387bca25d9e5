package nft

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// stmt is one match or statement of a rule, in both forms: nft text and the
// kernel expressions nft itself generates for that text.
type stmt interface {
	text() string
	exprs(c *ectx) []expr.Any
}

// ectx tracks the protocol dependencies already matched in a rule, as nft
// does, so that the expressions equal what `nft -f` produces.
type ectx struct {
	ipv4 bool
}

func (c *ectx) needIPv4() []expr.Any {
	if c.ipv4 {
		return nil
	}
	c.ipv4 = true
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
	}
}

func protoNum(p Protocol) byte {
	if p == UDP {
		return unix.IPPROTO_UDP
	}
	return unix.IPPROTO_TCP
}

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

func ifname(n string) []byte {
	b := make([]byte, 16)
	copy(b, n)
	return b
}

type ctEstablished struct{}

func (ctEstablished) text() string { return "ct state established,related" }
func (ctEstablished) exprs(*ectx) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binary.NativeEndian.AppendUint32(nil, expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED),
			Xor:  []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
	}
}

type iface struct {
	in   bool
	name string
}

func (i iface) text() string {
	if i.in {
		return fmt.Sprintf("iifname %q", i.name)
	}
	return fmt.Sprintf("oifname %q", i.name)
}

func (i iface) exprs(*ectx) []expr.Any {
	k := expr.MetaKeyOIFNAME
	if i.in {
		k = expr.MetaKeyIIFNAME
	}
	return []expr.Any{&expr.Meta{Key: k, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(i.name)}}
}

type l4proto struct{ proto byte }

func (l l4proto) text() string {
	switch l.proto {
	case unix.IPPROTO_ICMP:
		return "meta l4proto icmp"
	case unix.IPPROTO_UDP:
		return "meta l4proto udp"
	}
	return "meta l4proto tcp"
}

func (l l4proto) exprs(*ectx) []expr.Any {
	return []expr.Any{&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{l.proto}}}
}

type limit struct {
	rate uint32
	over bool
}

func (l limit) text() string {
	o := ""
	if l.over {
		o = "over "
	}
	return fmt.Sprintf("limit rate %s%d/second burst %d packets", o, l.rate, l.rate)
}

func (l limit) exprs(*ectx) []expr.Any {
	return []expr.Any{&expr.Limit{Type: expr.LimitTypePkts, Rate: uint64(l.rate), Over: l.over, Unit: expr.LimitTimeSecond, Burst: l.rate}}
}

type logStmt struct{ prefix string }

func (l logStmt) text() string { return fmt.Sprintf("log prefix %q", l.prefix) }
func (l logStmt) exprs(*ectx) []expr.Any {
	return []expr.Any{&expr.Log{Key: 1 << unix.NFTA_LOG_PREFIX, Data: []byte(l.prefix)}}
}

// lookup matches the source or destination address against a named set.
type lookup struct {
	saddr  bool
	set    string
	invert bool
}

func (l lookup) text() string {
	d, op := "daddr", ""
	if l.saddr {
		d = "saddr"
	}
	if l.invert {
		op = "!= "
	}
	return fmt.Sprintf("ip %s %s@%s", d, op, l.set)
}

func (l lookup) exprs(c *ectx) []expr.Any {
	off := uint32(16)
	if l.saddr {
		off = 12
	}
	return append(c.needIPv4(),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 4},
		&expr.Lookup{SourceRegister: 1, SetName: l.set, Invert: l.invert})
}

// port matches a destination port (range) of a protocol.
type port struct {
	proto     Protocol
	port, end uint16
}

func (p port) text() string {
	switch {
	case p.port == 0:
		return "meta l4proto " + string(p.proto)
	case p.end != 0 && p.end != p.port:
		return fmt.Sprintf("%s dport %d-%d", p.proto, p.port, p.end)
	}
	return fmt.Sprintf("%s dport %d", p.proto, p.port)
}

func (p port) exprs(*ectx) []expr.Any {
	es := l4proto{proto: protoNum(p.proto)}.exprs(nil)
	if p.port == 0 {
		return es
	}
	es = append(es, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2})
	if p.end != 0 && p.end != p.port {
		return append(es,
			&expr.Cmp{Op: expr.CmpOpGte, Register: 1, Data: be16(p.port)},
			&expr.Cmp{Op: expr.CmpOpLte, Register: 1, Data: be16(p.end)})
	}
	return append(es, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: be16(p.port)})
}

// addrPort matches destination address . port against a concatenated set.
type addrPort struct {
	proto Protocol
	set   string
}

func (a addrPort) text() string { return fmt.Sprintf("ip daddr . %s dport @%s", a.proto, a.set) }
func (a addrPort) exprs(c *ectx) []expr.Any {
	es := append(c.needIPv4(), l4proto{proto: protoNum(a.proto)}.exprs(nil)...)
	return append(es,
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Payload{DestRegister: 9, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: 1, SetName: a.set})
}

type objCounter struct{ name string }

func (o objCounter) text() string { return fmt.Sprintf("counter name %q", o.name) }
func (o objCounter) exprs(*ectx) []expr.Any {
	return []expr.Any{&expr.Objref{Type: 1, Name: o.name}}
}

type verdict struct {
	code  expr.VerdictKind
	chain string
}

func (v verdict) text() string {
	switch v.code {
	case expr.VerdictAccept:
		return "accept"
	case expr.VerdictJump:
		return "jump " + v.chain
	}
	return "drop"
}

func (v verdict) exprs(*ectx) []expr.Any {
	return []expr.Any{&expr.Verdict{Kind: v.code, Chain: v.chain}}
}

// snat translates to the egress range, or masquerades without one.
type snat struct{ first, last netip.Addr }

func (s snat) text() string {
	switch {
	case !s.first.IsValid():
		return "masquerade"
	case s.first == s.last:
		return "snat ip to " + s.first.String()
	}
	return fmt.Sprintf("snat ip to %s-%s", s.first, s.last)
}

func (s snat) exprs(*ectx) []expr.Any {
	if !s.first.IsValid() {
		return []expr.Any{&expr.Masq{}}
	}
	a := s.first.As4()
	es := []expr.Any{&expr.Immediate{Register: 1, Data: a[:]}}
	nat := &expr.NAT{Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1}
	if s.first != s.last {
		b := s.last.As4()
		es = append(es, &expr.Immediate{Register: 2, Data: b[:]})
		nat.RegAddrMax = 2
	}
	return append(es, nat)
}

// addrMatch matches the source or destination address against one prefix
// inline, the way nft encodes `ip daddr 10.0.0.0/8`.
type addrMatch struct {
	saddr bool
	p     netip.Prefix
}

func (m addrMatch) text() string {
	d := "daddr"
	if m.saddr {
		d = "saddr"
	}
	if m.p.Bits() == 32 {
		return fmt.Sprintf("ip %s %s", d, m.p.Addr())
	}
	return fmt.Sprintf("ip %s %s", d, m.p)
}

func (m addrMatch) exprs(c *ectx) []expr.Any {
	off := uint32(16)
	if m.saddr {
		off = 12
	}
	a := m.p.Addr().As4()
	bits := m.p.Bits()
	if bits > 0 && bits%8 == 0 {
		n := uint32(bits / 8)
		return append(c.needIPv4(),
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a[:n]})
	}
	mask := binary.BigEndian.AppendUint32(nil, ^uint32(0)<<(32-bits)&uint32(uint64(1)<<32-1))
	if bits == 0 {
		mask = []byte{0, 0, 0, 0}
	}
	return append(c.needIPv4(),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a[:]})
}
