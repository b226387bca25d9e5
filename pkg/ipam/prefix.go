package ipam

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
)

// ParsePrefixes parses CIDR strings such as "10.0.0.0/24" or "2001:db8::/48"
// into prefixes, in the same order. It rejects strings that are not prefixes,
// non-canonical ones with host bits set (e.g. "10.0.0.1/24"), IPv4-mapped IPv6
// ones, and lists in which two prefixes overlap (duplicates included). An empty
// list yields an empty result.
func ParsePrefixes(ss []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(ss))
	for _, s := range ss {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("parse prefixes: %w", err)
		}
		if err := checkPrefix(p); err != nil {
			return nil, fmt.Errorf("parse prefixes: %w", err)
		}
		out = append(out, p)
	}
	// Among sorted prefixes, an overlapping pair implies an overlapping
	// neighbour pair: whatever sorts between a prefix and one it contains
	// starts inside it.
	order := make([]int, len(out))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(i, j int) int { return comparePrefix(out[i], out[j]) })
	for k := 1; k < len(order); k++ {
		i, j := order[k-1], order[k]
		if out[i].Overlaps(out[j]) {
			i, j = min(i, j), max(i, j)
			return nil, fmt.Errorf("parse prefixes: %s overlaps %s", out[j], out[i])
		}
	}
	return out, nil
}

// Overlaps reports whether any prefix of a overlaps any prefix of b.
func Overlaps(a, b []netip.Prefix) bool {
	_, _, ok := FirstOverlap(a, b)
	return ok
}

// FirstOverlap returns the first prefix of a, in a's order, that overlaps a
// prefix of b, together with the lowest prefix of b (by address, then by
// length, shortest first) that it overlaps; ok is false when none do.
// Invalid prefixes never overlap anything. It runs in
// O((len(a)·L + len(b))·log len(b)), L being the address length in bits,
// so it is fit for lists of thousands.
func FirstOverlap(a, b []netip.Prefix) (pa, pb netip.Prefix, ok bool) {
	if len(a) == 0 || len(b) == 0 {
		return netip.Prefix{}, netip.Prefix{}, false
	}
	orig := make(map[netip.Prefix]netip.Prefix, len(b)) // masked -> as given
	sorted := make([]netip.Prefix, 0, len(b))
	for _, p := range b {
		if !p.IsValid() {
			continue
		}
		m := p.Masked()
		if _, dup := orig[m]; !dup {
			orig[m] = p
			sorted = append(sorted, m)
		}
	}
	slices.SortFunc(sorted, comparePrefix)

	for _, x := range a {
		if !x.IsValid() {
			continue
		}
		xm := x.Masked()
		// Prefixes of b containing x (or equal to it): one candidate per
		// length, the shortest one being the lowest.
		for l := 0; l <= xm.Bits(); l++ {
			q := netip.PrefixFrom(xm.Addr(), l).Masked()
			if p, found := orig[q]; found {
				return x, p, true
			}
		}
		// Prefixes of b inside x: the first one starting at or after x.
		i := sort.Search(len(sorted), func(i int) bool {
			return sorted[i].Addr().Compare(xm.Addr()) >= 0
		})
		if i < len(sorted) && xm.Contains(sorted[i].Addr()) {
			return x, orig[sorted[i]], true
		}
	}
	return netip.Prefix{}, netip.Prefix{}, false
}

// NextFreeChildPrefix returns the first prefix of length bits, in the order of
// parents and then of addresses, that lies inside a parent and overlaps none
// of used. It returns an error wrapping ErrExhausted when there is none, and a
// plain error when a parent is invalid or not canonical, when bits is shorter
// than a parent's length or longer than its address, or when a used prefix is
// invalid. Host bits of used prefixes are ignored (10.0.0.5/24 occupies
// 10.0.0.0/24).
//
// It sorts used once and then jumps over used ranges, so its cost is
// O(len(used)·log len(used)) whatever the sizes involved; e.g. a /8 parent
// with thousands of used /24s is cheap.
func NextFreeChildPrefix(parents []netip.Prefix, bits int, used []netip.Prefix) (netip.Prefix, error) {
	for _, p := range parents {
		if err := checkPrefix(p); err != nil {
			return netip.Prefix{}, fmt.Errorf("next free child prefix: parent: %w", err)
		}
		if bits < p.Bits() || bits > p.Addr().BitLen() {
			return netip.Prefix{}, fmt.Errorf("next free child prefix: length /%d does not fit in parent %s", bits, p)
		}
	}
	ranges, err := disjointRanges(used)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("next free child prefix: %w", err)
	}
	for _, parent := range parents {
		c := parent.Addr()
		for {
			child := netip.PrefixFrom(c, bits)
			// First used range not entirely before the candidate.
			i := sort.Search(len(ranges), func(i int) bool {
				return ranges[i].last.Compare(c) >= 0
			})
			if i == len(ranges) || ranges[i].first.Compare(lastAddr(child)) > 0 {
				return child, nil
			}
			// ranges[i] overlaps the candidate: move to the first aligned
			// block after it.
			next := ranges[i].last.Next()
			if !next.IsValid() {
				break // end of the address space
			}
			c = alignUp(next, bits)
			if !c.IsValid() || !parent.Contains(c) {
				break
			}
		}
	}
	return netip.Prefix{}, fmt.Errorf("next free child prefix /%d in %d parents: %w", bits, len(parents), ErrExhausted)
}

// disjointRanges turns used prefixes into sorted, disjoint address ranges.
// CIDR blocks either nest or are disjoint, so dropping the ones contained in
// an earlier one is enough.
func disjointRanges(used []netip.Prefix) ([]addrRange, error) {
	ps := make([]netip.Prefix, 0, len(used))
	for i, p := range used {
		if !p.IsValid() {
			return nil, fmt.Errorf("used prefix %d is invalid", i)
		}
		ps = append(ps, p.Masked())
	}
	slices.SortFunc(ps, comparePrefix)
	out := make([]addrRange, 0, len(ps))
	for _, p := range ps {
		if n := len(out); n > 0 && out[n-1].src.Contains(p.Addr()) {
			continue
		}
		out = append(out, rangeOf(p))
	}
	return out, nil
}
