package ipam

import (
	"fmt"
	"math/big"
	"net/netip"
)

// checkPrefix rejects prefixes the allocators cannot work with: invalid ones,
// non-canonical ones (host bits set) and IPv4-mapped IPv6 ones.
func checkPrefix(p netip.Prefix) error {
	if !p.IsValid() {
		return fmt.Errorf("invalid prefix %q", p.String())
	}
	if p.Addr().Is4In6() {
		return fmt.Errorf("prefix %s is IPv4-mapped IPv6, use the IPv4 form", p)
	}
	if m := p.Masked(); m != p {
		return fmt.Errorf("prefix %s is not canonical (host bits set), want %s", p, m)
	}
	return nil
}

// lastAddr returns the highest address in p (the IPv4 broadcast address).
// p must be valid; host bits of p.Addr() are ignored.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr()
	bits := p.Bits()
	if a.Is4() {
		b := a.As4()
		setHostBits(b[:], bits)
		return netip.AddrFrom4(b)
	}
	b := a.As16()
	setHostBits(b[:], bits)
	return netip.AddrFrom16(b)
}

// setHostBits sets every bit after the first bits bits of b to one.
func setHostBits(b []byte, bits int) {
	for i := range b {
		switch {
		case bits >= 8:
			bits -= 8
		case bits <= 0:
			b[i] = 0xff
		default:
			b[i] |= 0xff >> bits
			bits = 0
		}
	}
}

// reserved reports whether a is one of the addresses of p that NextFreeIP
// never hands out: the network and broadcast addresses of IPv4 prefixes
// shorter than /31 (RFC 3021 makes both addresses of a /31 usable), and the
// subnet-router anycast address (the first one) of IPv6 prefixes shorter
// than /127 (RFC 6164 makes both addresses of a /127 usable).
// a must be inside p.
func reserved(p netip.Prefix, a netip.Addr) bool {
	if p.Addr().Is4() {
		if p.Bits() >= 31 {
			return false
		}
		return a == p.Addr() || a == lastAddr(p)
	}
	if p.Bits() >= 127 {
		return false
	}
	return a == p.Addr()
}

// reservedAddrs lists the reserved addresses of p (see reserved).
func reservedAddrs(p netip.Prefix) []netip.Addr {
	switch {
	case p.Addr().Is4() && p.Bits() < 31:
		return []netip.Addr{p.Addr(), lastAddr(p)}
	case p.Addr().Is6() && p.Bits() < 127:
		return []netip.Addr{p.Addr()}
	}
	return nil
}

// usable reports whether a is an address NextFreeIP may return from p.
func usable(p netip.Prefix, a netip.Addr) bool {
	return p.Contains(a) && !reserved(p, a)
}

// size returns the number of addresses in p.
func size(p netip.Prefix) *big.Int {
	n := new(big.Int)
	return n.Lsh(big.NewInt(1), uint(p.Addr().BitLen()-p.Bits()))
}

// alignUp returns the first address at or after a that starts a block of
// length bits, or the invalid Addr if there is none before the end of the
// address space.
func alignUp(a netip.Addr, bits int) netip.Addr {
	p := netip.PrefixFrom(a, bits).Masked()
	if p.Addr() == a {
		return a
	}
	return lastAddr(p).Next()
}

// addrRange is an inclusive range of addresses of one family.
type addrRange struct {
	first, last netip.Addr
	src         netip.Prefix
}

func rangeOf(p netip.Prefix) addrRange {
	return addrRange{first: p.Addr(), last: lastAddr(p), src: p}
}
