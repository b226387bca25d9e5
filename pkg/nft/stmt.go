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
	family bool // the rule already matched the network protocol
}

// needFamily matches the network protocol (ipv4 or ipv6) once per rule.
func (c *ectx) needFamily(v6 bool) []expr.Any {
	if c.family {
		return nil
	}
	c.family = true
	p := byte(unix.NFPROTO_IPV4)
	if v6 {
		p = unix.NFPROTO_IPV6
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}},
	}
}

// addrField is the nft name, offset and length of the source or destination
// address of the network header.
func addrField(v6, saddr bool) (name string, off, n uint32) {
	switch {
	case v6 && saddr:
		return "ip6 saddr", 8, 16
	case v6:
		return "ip6 daddr", 24, 16
	case saddr:
		return "ip saddr", 12, 4
	}
	return "ip daddr", 16, 4
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
	case unix.IPPROTO_ICMPV6:
		return "meta l4proto ipv6-icmp"
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
	v6     bool
}

func (l lookup) text() string {
	d, _, _ := addrField(l.v6, l.saddr)
	op := ""
	if l.invert {
		op = "!= "
	}
	return fmt.Sprintf("%s %s@%s", d, op, l.set)
}

func (l lookup) exprs(c *ectx) []expr.Any {
	_, off, n := addrField(l.v6, l.saddr)
	return append(c.needFamily(l.v6),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
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
	v6    bool
}

func (a addrPort) text() string {
	d, _, _ := addrField(a.v6, false)
	return fmt.Sprintf("%s . %s dport @%s", d, a.proto, a.set)
}

func (a addrPort) exprs(c *ectx) []expr.Any {
	_, off, n := addrField(a.v6, false)
	// The port follows the address in the registers: 32-bit register 9
	// after an ipv4 address, 128-bit register 2 after an ipv6 one (as nft).
	reg := uint32(9)
	if a.v6 {
		reg = 2
	}
	es := append(c.needFamily(a.v6), l4proto{proto: protoNum(a.proto)}.exprs(nil)...)
	return append(es,
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
		&expr.Payload{DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
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
// inline, the way nft encodes `ip daddr 10.0.0.0/8` or `ip6 daddr ::/0`.
type addrMatch struct {
	saddr bool
	p     netip.Prefix
}

func (m addrMatch) text() string {
	d, _, _ := addrField(m.p.Addr().Is6(), m.saddr)
	if m.p.IsSingleIP() {
		return fmt.Sprintf("%s %s", d, m.p.Addr())
	}
	return fmt.Sprintf("%s %s", d, m.p)
}

func (m addrMatch) exprs(c *ectx) []expr.Any {
	v6 := m.p.Addr().Is6()
	_, off, n := addrField(v6, m.saddr)
	a := m.p.Addr().AsSlice()
	bits := m.p.Bits()
	if bits > 0 && bits%8 == 0 {
		return append(c.needFamily(v6),
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: uint32(bits / 8)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a[:bits/8]})
	}
	mask := make([]byte, n)
	for i := 0; i < bits; i++ {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	return append(c.needFamily(v6),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: n, Mask: mask, Xor: make([]byte, n)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a})
}
