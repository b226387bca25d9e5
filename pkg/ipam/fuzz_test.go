package ipam

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// FuzzNextFreeChildPrefix checks, for arbitrary IPv4 parents, lengths and used
// lists, that a result is a child of the requested length inside a parent that
// overlaps no used prefix, that it is the first such child, and that
// ErrExhausted means there is none (both by enumeration, when the parents hold
// at most 2^12 children each).
func FuzzNextFreeChildPrefix(f *testing.F) {
	f.Add(uint32(0x0a000000), uint8(8), uint8(24), []byte{10, 0, 0, 0, 24, 10, 0, 1, 0, 24})
	f.Add(uint32(0x0a000000), uint8(16), uint8(24), []byte{10, 0, 0, 0, 8})
	f.Add(uint32(0xc0000200), uint8(24), uint8(30), []byte{192, 0, 2, 5, 32, 192, 0, 2, 8, 29})
	f.Add(uint32(0xffffff00), uint8(24), uint8(25), []byte{255, 255, 255, 0, 25})
	f.Add(uint32(0), uint8(0), uint8(1), []byte{0, 0, 0, 0, 1})
	f.Add(uint32(0x0a000000), uint8(24), uint8(16), []byte{})
	f.Fuzz(func(t *testing.T, parentAddr uint32, parentBits, childBits uint8, usedRaw []byte) {
		a := netip.AddrFrom4([4]byte{byte(parentAddr >> 24), byte(parentAddr >> 16), byte(parentAddr >> 8), byte(parentAddr)})
		parent := netip.PrefixFrom(a, int(parentBits%33)).Masked()
		bits := int(childBits % 34) // 33 is out of range on purpose
		var used []netip.Prefix
		for len(usedRaw) >= 5 && len(used) < 64 {
			u := netip.AddrFrom4([4]byte(usedRaw[:4]))
			used = append(used, netip.PrefixFrom(u, int(usedRaw[4]%33)))
			usedRaw = usedRaw[5:]
		}
		parents := []netip.Prefix{parent}

		got, err := NextFreeChildPrefix(parents, bits, used)
		if bits < parent.Bits() || bits > 32 {
			if err == nil || errors.Is(err, ErrExhausted) {
				t.Fatalf("NextFreeChildPrefix(%v, %d) = %v, %v; want a length error", parent, bits, got, err)
			}
			return
		}
		enumerable := bits-parent.Bits() <= 12
		if errors.Is(err, ErrExhausted) {
			if enumerable {
				if c, ok := bruteChild(parents, bits, used); ok {
					t.Fatalf("NextFreeChildPrefix(%v, %d, %v) exhausted, but %v is free", parent, bits, used, c)
				}
			}
			return
		}
		if err != nil {
			t.Fatalf("NextFreeChildPrefix(%v, %d, %v): %v", parent, bits, used, err)
		}
		if got.Bits() != bits || got != got.Masked() || !parent.Contains(got.Addr()) {
			t.Fatalf("NextFreeChildPrefix(%v, %d) = %v: not a canonical /%d child of the parent", parent, bits, got, bits)
		}
		if i := slices.IndexFunc(used, got.Overlaps); i >= 0 {
			t.Fatalf("NextFreeChildPrefix(%v, %d) = %v overlaps used %v", parent, bits, got, used[i])
		}
		if enumerable {
			if want, _ := bruteChild(parents, bits, used); want != got {
				t.Fatalf("NextFreeChildPrefix(%v, %d, %v) = %v, want the first free %v", parent, bits, used, got, want)
			}
		}
	})
}

// FuzzParsePrefixes checks that accepted lists are canonical, round-trip
// through String, and hold no overlapping pair.
func FuzzParsePrefixes(f *testing.F) {
	for _, s := range []string{
		"10.0.0.0/24,10.0.1.0/24",
		"10.0.0.1/24",
		"10.0.0.0/8,10.1.0.0/16",
		"2001:db8::/48,2001:db8:1::/48,192.0.2.0/24",
		"::ffff:10.0.0.0/104",
		"fe80::%eth0/64",
		"0.0.0.0/0,::/0",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		in := strings.Split(s, ",")
		got, err := ParsePrefixes(in)
		if err != nil {
			return
		}
		if len(got) != len(in) {
			t.Fatalf("ParsePrefixes(%q) returned %d prefixes", in, len(got))
		}
		for i, p := range got {
			if err := checkPrefix(p); err != nil {
				t.Fatalf("ParsePrefixes(%q) accepted %v: %v", in, p, err)
			}
			if q, err := netip.ParsePrefix(p.String()); err != nil || q != p {
				t.Fatalf("%v does not round-trip: %v, %v", p, q, err)
			}
			for _, o := range got[i+1:] {
				if p.Overlaps(o) {
					t.Fatalf("ParsePrefixes(%q) accepted overlapping %v and %v", in, p, o)
				}
			}
		}
		if Overlaps(got[:len(got)/2], got[len(got)/2:]) {
			t.Fatalf("Overlaps reports an overlap in an accepted list %v", got)
		}
	})
}
