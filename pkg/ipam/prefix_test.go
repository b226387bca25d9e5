package ipam

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParsePrefixes(t *testing.T) {
	tests := []struct {
		name    string
		in      []string
		want    []netip.Prefix
		wantErr string // substring
	}{
		{name: "empty", in: nil, want: []netip.Prefix{}},
		{name: "v4 and v6 keep order", in: []string{"10.0.1.0/24", "2001:db8::/48", "10.0.0.0/24"}, want: pfxs("10.0.1.0/24", "2001:db8::/48", "10.0.0.0/24")},
		{name: "host routes", in: []string{"192.0.2.1/32", "2001:db8::1/128"}, want: pfxs("192.0.2.1/32", "2001:db8::1/128")},
		{name: "adjacent is fine", in: []string{"10.0.0.0/25", "10.0.0.128/25"}, want: pfxs("10.0.0.0/25", "10.0.0.128/25")},
		{name: "non-canonical", in: []string{"10.0.0.1/24"}, wantErr: "10.0.0.1/24 is not canonical (host bits set), want 10.0.0.0/24"},
		{name: "non-canonical v6", in: []string{"2001:db8::1/64"}, wantErr: "want 2001:db8::/64"},
		{name: "not a prefix", in: []string{"10.0.0.0"}, wantErr: `"10.0.0.0"`},
		{name: "bad length", in: []string{"10.0.0.0/33"}, wantErr: "10.0.0.0/33"},
		{name: "garbage", in: []string{"10.0.0.0/24", "foo"}, wantErr: `"foo"`},
		{name: "zone", in: []string{"fe80::%eth0/64"}, wantErr: "fe80::%eth0/64"},
		{name: "4in6", in: []string{"::ffff:10.0.0.0/120"}, wantErr: "IPv4-mapped"},
		{name: "duplicate", in: []string{"10.0.0.0/24", "10.0.0.0/24"}, wantErr: "10.0.0.0/24 overlaps 10.0.0.0/24"},
		{name: "nested, later inside earlier", in: []string{"10.0.0.0/16", "192.0.2.0/24", "10.0.5.0/24"}, wantErr: "10.0.5.0/24 overlaps 10.0.0.0/16"},
		{name: "nested, later contains earlier", in: []string{"10.0.5.0/24", "10.0.0.0/16"}, wantErr: "10.0.0.0/16 overlaps 10.0.5.0/24"},
		{name: "nested with a sibling in between", in: []string{"10.0.0.0/8", "10.1.0.0/16", "10.200.0.0/16"}, wantErr: "10.1.0.0/16 overlaps 10.0.0.0/8"},
		{name: "v6 overlap", in: []string{"2001:db8::/32", "2001:db8:1::/48"}, wantErr: "2001:db8:1::/48 overlaps 2001:db8::/32"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePrefixes(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParsePrefixes() = %v, %v; want error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePrefixes() error: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
				t.Fatalf("ParsePrefixes() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFirstOverlap(t *testing.T) {
	type result struct{ A, B string }
	tests := []struct {
		name string
		a, b []netip.Prefix
		want *result
	}{
		{name: "empty", a: nil, b: pfxs("10.0.0.0/8"), want: nil},
		{name: "disjoint", a: pfxs("10.0.0.0/24", "2001:db8::/64"), b: pfxs("10.0.1.0/24", "2001:db8:1::/64"), want: nil},
		{name: "equal", a: pfxs("10.0.0.0/24"), b: pfxs("10.0.0.0/24"), want: &result{"10.0.0.0/24", "10.0.0.0/24"}},
		{name: "a inside b", a: pfxs("10.0.5.0/24"), b: pfxs("192.0.2.0/24", "10.0.0.0/16"), want: &result{"10.0.5.0/24", "10.0.0.0/16"}},
		{name: "b inside a", a: pfxs("10.0.0.0/16"), b: pfxs("10.0.9.0/24", "10.0.3.0/24"), want: &result{"10.0.0.0/16", "10.0.3.0/24"}},
		{name: "first of a wins", a: pfxs("192.0.2.0/24", "10.0.0.0/8", "10.0.0.0/24"), b: pfxs("10.0.0.0/24", "192.0.2.128/25"), want: &result{"192.0.2.0/24", "192.0.2.128/25"}},
		{name: "lowest of b: container before contained", a: pfxs("10.0.0.0/16"), b: pfxs("10.0.1.0/24", "10.0.0.0/8"), want: &result{"10.0.0.0/16", "10.0.0.0/8"}},
		{name: "families never overlap", a: pfxs("0.0.0.0/0"), b: pfxs("::/0"), want: nil},
		{name: "v6", a: pfxs("2001:db8::/48"), b: pfxs("2001:db8:0:ff::/64"), want: &result{"2001:db8::/48", "2001:db8:0:ff::/64"}},
		{name: "non-canonical as given", a: pfxs("10.0.0.7/24"), b: pfxs("10.0.0.9/30"), want: &result{"10.0.0.7/24", "10.0.0.9/30"}},
		{name: "invalid ignored", a: []netip.Prefix{{}}, b: []netip.Prefix{{}}, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pa, pb, ok := FirstOverlap(tt.a, tt.b)
			var got *result
			if ok {
				got = &result{pa.String(), pb.String()}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Fatalf("FirstOverlap() mismatch (-want +got):\n%s", diff)
			}
			if Overlaps(tt.a, tt.b) != (tt.want != nil) {
				t.Fatalf("Overlaps() = %v, want %v", !ok, ok)
			}
		})
	}
}

// randPrefix returns a random prefix within 10.0.0.0/16 or 2001:db8::/112,
// short enough that random lists often nest and overlap.
func randPrefix(r *rand.Rand) netip.Prefix {
	if r.IntN(2) == 0 {
		a := netip.AddrFrom4([4]byte{10, 0, byte(r.IntN(256)), byte(r.IntN(256))})
		return netip.PrefixFrom(a, 16+r.IntN(17)).Masked()
	}
	b := addr("2001:db8::").As16()
	b[14], b[15] = byte(r.IntN(256)), byte(r.IntN(256))
	return netip.PrefixFrom(netip.AddrFrom16(b), 112+r.IntN(17)).Masked()
}

func TestFirstOverlapMatchesBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for iter := range 2000 {
		a := make([]netip.Prefix, r.IntN(6))
		for i := range a {
			a[i] = randPrefix(r)
		}
		b := make([]netip.Prefix, r.IntN(6))
		for i := range b {
			b[i] = randPrefix(r)
		}
		// Brute force: first a, then the lowest overlapping b.
		var wantOK bool
		var wantA, wantB netip.Prefix
		for _, x := range a {
			var hits []netip.Prefix
			for _, y := range b {
				if x.Overlaps(y) {
					hits = append(hits, y)
				}
			}
			if len(hits) > 0 {
				wantOK, wantA, wantB = true, x, slices.MinFunc(hits, comparePrefix)
				break
			}
		}
		pa, pb, ok := FirstOverlap(a, b)
		if ok != wantOK || pa != wantA || pb != wantB {
			t.Fatalf("iteration %d: FirstOverlap(%v, %v) = %v, %v, %v; want %v, %v, %v", iter, a, b, pa, pb, ok, wantA, wantB, wantOK)
		}
	}
}

func TestNextFreeChildPrefix(t *testing.T) {
	tests := []struct {
		name      string
		parents   []netip.Prefix
		bits      int
		used      []netip.Prefix
		want      string
		exhausted bool
		wantErr   string
	}{
		{name: "empty parent", parents: pfxs("10.0.0.0/8"), bits: 24, want: "10.0.0.0/24"},
		{name: "skips used", parents: pfxs("10.0.0.0/8"), bits: 24, used: pfxs("10.0.0.0/24", "10.0.1.0/24"), want: "10.0.2.0/24"},
		{name: "fills hole", parents: pfxs("10.0.0.0/8"), bits: 24, used: pfxs("10.0.1.0/24", "10.0.0.0/24", "10.0.3.0/24"), want: "10.0.2.0/24"},
		{name: "bigger used block", parents: pfxs("10.0.0.0/8"), bits: 24, used: pfxs("10.0.0.0/16"), want: "10.1.0.0/24"},
		{name: "smaller used block", parents: pfxs("10.0.0.0/8"), bits: 24, used: pfxs("10.0.0.77/32"), want: "10.0.1.0/24"},
		{name: "nested used", parents: pfxs("10.0.0.0/8"), bits: 16, used: pfxs("10.0.0.0/16", "10.0.5.0/24", "10.1.0.0/24"), want: "10.2.0.0/16"},
		{name: "used with host bits", parents: pfxs("10.0.0.0/8"), bits: 24, used: pfxs("10.0.0.5/24"), want: "10.0.1.0/24"},
		{name: "used outside parent", parents: pfxs("10.0.0.0/8"), bits: 24, used: pfxs("192.168.0.0/16", "2001:db8::/32"), want: "10.0.0.0/24"},
		{name: "used covers parent", parents: pfxs("10.0.0.0/16"), bits: 24, used: pfxs("10.0.0.0/8"), exhausted: true},
		{name: "parent itself", parents: pfxs("10.0.0.0/24"), bits: 24, want: "10.0.0.0/24"},
		{name: "parent itself used", parents: pfxs("10.0.0.0/24"), bits: 24, used: pfxs("10.0.0.0/24"), exhausted: true},
		{name: "next parent", parents: pfxs("10.0.0.0/23", "10.9.0.0/16"), bits: 24, used: pfxs("10.0.0.0/24", "10.0.1.0/25"), want: "10.9.0.0/24"},
		{name: "partly used /23 exhausts /24s", parents: pfxs("10.0.0.0/23"), bits: 24, used: pfxs("10.0.0.128/25", "10.0.1.0/32"), exhausted: true},
		{name: "end of v4 space", parents: pfxs("255.255.255.0/24"), bits: 25, used: pfxs("255.255.255.0/25"), want: "255.255.255.128/25"},
		{name: "end of v4 space full", parents: pfxs("255.255.255.0/24"), bits: 25, used: pfxs("255.255.255.0/25", "255.255.255.255/32"), exhausted: true},
		{name: "/32 children", parents: pfxs("192.0.2.0/30"), bits: 32, used: pfxs("192.0.2.0/31"), want: "192.0.2.2/32"},
		{name: "whole v4 space", parents: pfxs("0.0.0.0/0"), bits: 1, used: pfxs("0.0.0.0/1"), want: "128.0.0.0/1"},
		{name: "v6 /64 from /48", parents: pfxs("2001:db8::/48"), bits: 64, used: pfxs("2001:db8::/64", "2001:db8:0:1::/64", "2001:db8:0:2::/63"), want: "2001:db8:0:4::/64"},
		{name: "v6 end of space", parents: pfxs("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/120"), bits: 121, used: pfxs("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/121", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"), exhausted: true},
		{name: "mixed families", parents: pfxs("10.0.0.0/24", "2001:db8::/48"), bits: 24, used: pfxs("10.0.0.0/24"), wantErr: "does not fit in parent 2001:db8::/48"},
		{name: "v6 after v4", parents: pfxs("10.0.0.0/24", "2001:db8::/48"), bits: 64, wantErr: "does not fit in parent 10.0.0.0/24"},
		{name: "no parents", bits: 24, exhausted: true},
		{name: "shorter than parent", parents: pfxs("10.0.0.0/16"), bits: 8, wantErr: "length /8 does not fit in parent 10.0.0.0/16"},
		{name: "longer than address", parents: pfxs("10.0.0.0/16"), bits: 33, wantErr: "length /33 does not fit"},
		{name: "negative", parents: pfxs("10.0.0.0/16"), bits: -1, wantErr: "does not fit"},
		{name: "non-canonical parent", parents: pfxs("10.0.0.1/16"), bits: 24, wantErr: "not canonical"},
		{name: "invalid used", parents: pfxs("10.0.0.0/16"), bits: 24, used: []netip.Prefix{{}}, wantErr: "used prefix 0 is invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NextFreeChildPrefix(tt.parents, tt.bits, tt.used)
			switch {
			case tt.exhausted:
				if !errors.Is(err, ErrExhausted) {
					t.Fatalf("NextFreeChildPrefix() = %v, %v; want ErrExhausted", got, err)
				}
			case tt.wantErr != "":
				if err == nil || errors.Is(err, ErrExhausted) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("NextFreeChildPrefix() = %v, %v; want error containing %q", got, err, tt.wantErr)
				}
			case err != nil:
				t.Fatalf("NextFreeChildPrefix() error: %v", err)
			case got != pfx(tt.want):
				t.Fatalf("NextFreeChildPrefix() = %v, want %v", got, tt.want)
			}
		})
	}
}

// bruteChild enumerates the children of each parent in order and returns the
// first that overlaps none of used.
func bruteChild(parents []netip.Prefix, bits int, used []netip.Prefix) (netip.Prefix, bool) {
	for _, p := range parents {
		for c := p.Addr(); c.IsValid() && p.Contains(c); c = lastAddr(netip.PrefixFrom(c, bits)).Next() {
			child := netip.PrefixFrom(c, bits)
			if !slices.ContainsFunc(used, child.Overlaps) {
				return child, true
			}
		}
	}
	return netip.Prefix{}, false
}

func TestNextFreeChildPrefixMatchesBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for iter := range 3000 {
		v6 := r.IntN(2) == 0
		var parents []netip.Prefix
		for range 1 + r.IntN(3) {
			p := randPrefix(r)
			for p.Addr().Is6() != v6 {
				p = randPrefix(r)
			}
			parents = append(parents, p)
		}
		maxParent := 0
		for _, p := range parents {
			maxParent = max(maxParent, p.Bits())
		}
		bits := maxParent + r.IntN(min(8, parents[0].Addr().BitLen()-maxParent)+1)
		used := make([]netip.Prefix, r.IntN(40))
		for i := range used {
			used[i] = randPrefix(r)
			if r.IntN(2) == 0 { // make used blocks about the child size
				used[i] = netip.PrefixFrom(used[i].Addr(), max(used[i].Bits(), min(bits, used[i].Addr().BitLen()))).Masked()
			}
		}
		want, wantOK := bruteChild(parents, bits, used)
		got, err := NextFreeChildPrefix(parents, bits, used)
		desc := fmt.Sprintf("iteration %d: NextFreeChildPrefix(%v, %d, %v)", iter, parents, bits, used)
		if !wantOK {
			if !errors.Is(err, ErrExhausted) {
				t.Fatalf("%s = %v, %v; want ErrExhausted", desc, got, err)
			}
			continue
		}
		if err != nil || got != want {
			t.Fatalf("%s = %v, %v; want %v", desc, got, err, want)
		}
	}
}
