// Package ipam allocates IP addresses and child prefixes out of IPv4 and IPv6
// prefixes. It is a pure library on net/netip: it keeps no state and knows no
// store; the caller says what is already in use and persists what it takes.
//
// Address rules, shared by NextFreeIP, Usable and Capacity:
//   - IPv4 prefixes shorter than /31 never hand out their network (first) and
//     broadcast (last) addresses; in a /31 (RFC 3021) and a /32 every address
//     is usable.
//   - IPv6 prefixes shorter than /127 never hand out their subnet-router
//     anycast address (the first one); in a /127 (RFC 6164) and a /128 every
//     address is usable.
//
// Prefixes passed to the allocators must be valid and canonical (no host bits
// set, as ParsePrefixes guarantees) and not IPv4-mapped IPv6; the allocators
// return an error otherwise. Allocation is first-fit, in the order the caller
// lists the prefixes, so results are deterministic.
package ipam

import (
	"cmp"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"slices"
)

// ErrExhausted is returned (wrapped) when no free address or prefix is left.
var ErrExhausted = errors.New("address space exhausted")

// NextFreeIP returns the first usable address, in the order of prefixes and
// then of addresses, for which used reports false. A nil used means nothing is
// in use. It returns an error wrapping ErrExhausted when every usable address
// is in use, and a plain error when a prefix is invalid or not canonical.
//
// NextFreeIP asks used about consecutive addresses from the start of each
// prefix, so its cost is linear in the number of used addresses it steps over
// (bounded by the size of a set backing used); used must be cheap, e.g. a map
// lookup.
func NextFreeIP(prefixes []netip.Prefix, used func(netip.Addr) bool) (netip.Addr, error) {
	for _, p := range prefixes {
		if err := checkPrefix(p); err != nil {
			return netip.Addr{}, fmt.Errorf("next free ip: %w", err)
		}
	}
	for _, p := range prefixes {
		for a := p.Addr(); a.IsValid() && p.Contains(a); a = a.Next() {
			if reserved(p, a) {
				continue
			}
			if used == nil || !used(a) {
				return a, nil
			}
		}
	}
	return netip.Addr{}, fmt.Errorf("next free ip: every usable address of %d prefixes in use: %w", len(prefixes), ErrExhausted)
}

// ContainsIP reports whether addr lies inside any of prefixes, reserved
// addresses included. Use Usable to ask whether NextFreeIP could hand it out.
func ContainsIP(prefixes []netip.Prefix, addr netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// Usable reports whether addr is an address NextFreeIP could hand out from
// prefixes: inside a valid, canonical prefix and not reserved in it (see the
// package documentation). Callers use it to validate a requested static
// address.
func Usable(prefixes []netip.Prefix, addr netip.Addr) bool {
	for _, p := range prefixes {
		if checkPrefix(p) == nil && usable(p, addr) {
			return true
		}
	}
	return false
}

// Capacity returns the number of distinct addresses NextFreeIP can hand out
// from prefixes, that is the size of the union of their usable addresses.
// It is exact for IPv4 and IPv6 alike, hence a *big.Int: a single IPv6 /64
// holds 2^64-1 usable addresses, more than a uint64 can count with the
// reserved one. Overlapping or repeated prefixes are counted once. Prefixes
// NextFreeIP would reject (invalid, not canonical) count zero.
//
// Utilisation is then used/Capacity, e.g. with big.Rat or, for display,
// new(big.Float).SetInt(c).
func Capacity(prefixes []netip.Prefix) *big.Int {
	valid := make([]netip.Prefix, 0, len(prefixes))
	for _, p := range prefixes {
		if checkPrefix(p) == nil {
			valid = append(valid, p)
		}
	}
	slices.SortFunc(valid, comparePrefix)
	valid = slices.Compact(valid)

	total := new(big.Int)
	for i := 0; i < len(valid); {
		root := valid[i]
		// Prefixes either nest or are disjoint, and sorting puts a prefix
		// before everything it contains: valid[i+1:j] are inside root.
		j := i + 1
		for j < len(valid) && root.Contains(valid[j].Addr()) {
			j++
		}
		members := valid[i+1 : j]
		res := reservedAddrs(root)
		total.Add(total, size(root))
		total.Sub(total, big.NewInt(int64(len(res))))
		// A reserved address of root can still be usable in a smaller
		// prefix of the list (e.g. 10.0.0.0/32 inside 10.0.0.0/24).
		for _, x := range res {
			for _, m := range members {
				if usable(m, x) {
					total.Add(total, big.NewInt(1))
					break
				}
			}
		}
		i = j
	}
	return total
}

// comparePrefix orders prefixes by address (IPv4 before IPv6), then by
// length, shortest first, so that a prefix sorts before those it contains.
func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}
