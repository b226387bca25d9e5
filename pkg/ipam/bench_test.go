package ipam

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

// BenchmarkNextFreeIP: a /16 whose first 10,000 usable addresses are in use,
// behind a map; the allocator has to step over all of them.
func BenchmarkNextFreeIP(b *testing.B) {
	p := pfx("10.20.0.0/16")
	used := make(map[netip.Addr]struct{}, 10000)
	for a := p.Addr().Next(); len(used) < 10000; a = a.Next() {
		used[a] = struct{}{}
	}
	isUsed := func(a netip.Addr) bool { _, ok := used[a]; return ok }
	ps := []netip.Prefix{p}
	b.ReportAllocs()
	for b.Loop() {
		got, err := NextFreeIP(ps, isUsed)
		if err != nil || got != addr("10.20.39.17") {
			b.Fatalf("NextFreeIP() = %v, %v", got, err)
		}
	}
}

// BenchmarkNextFreeChildPrefix: a /8 with 5,000 used /24s, shuffled, plus one
// hole at the end of them; "skip" is the package, "naive" a baseline that
// tries every child against every used prefix, for the ratio.
func BenchmarkNextFreeChildPrefix(b *testing.B) {
	parents := pfxs("10.0.0.0/8")
	var used []netip.Prefix
	for i := range 5001 {
		if i == 4000 {
			continue // the hole
		}
		used = append(used, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24))
	}
	rand.New(rand.NewPCG(7, 8)).Shuffle(len(used), func(i, j int) { used[i], used[j] = used[j], used[i] })
	want := pfx("10.15.160.0/24") // 4000 = 15*256 + 160

	b.Run("skip", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			got, err := NextFreeChildPrefix(parents, 24, used)
			if err != nil || got != want {
				b.Fatalf("NextFreeChildPrefix() = %v, %v", got, err)
			}
		}
	})
	b.Run("naive", func(b *testing.B) {
		for b.Loop() {
			got, ok := bruteChild(parents, 24, used)
			if !ok || got != want {
				b.Fatalf("bruteChild() = %v, %v", got, ok)
			}
		}
	})
}

// BenchmarkFirstOverlap: 5,000 /24s against 5,000 disjoint /24s.
func BenchmarkFirstOverlap(b *testing.B) {
	var a, c []netip.Prefix
	for i := range 5000 {
		a = append(a, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24))
		c = append(c, netip.PrefixFrom(netip.AddrFrom4([4]byte{11, byte(i >> 8), byte(i), 0}), 24))
	}
	c = slices.Clip(c)
	b.ReportAllocs()
	for b.Loop() {
		if Overlaps(a, c) {
			b.Fatal("unexpected overlap")
		}
	}
}
