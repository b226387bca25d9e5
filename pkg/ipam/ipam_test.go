package ipam

import (
	"errors"
	"math/big"
	"math/rand/v2"
	"net/netip"
	"testing"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func addr(s string) netip.Addr  { return netip.MustParseAddr(s) }

func pfxs(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = pfx(s)
	}
	return out
}

func set(ss ...string) func(netip.Addr) bool {
	m := make(map[netip.Addr]bool, len(ss))
	for _, s := range ss {
		m[addr(s)] = true
	}
	return func(a netip.Addr) bool { return m[a] }
}

// allUsedIn marks every address of p as used.
func allUsedIn(p netip.Prefix) func(netip.Addr) bool {
	return func(a netip.Addr) bool { return p.Contains(a) }
}

func TestNextFreeIP(t *testing.T) {
	tests := []struct {
		name      string
		prefixes  []netip.Prefix
		used      func(netip.Addr) bool
		want      string
		exhausted bool
		wantErr   bool
	}{
		{name: "v4 empty", prefixes: pfxs("10.0.0.0/24"), want: "10.0.0.1"},
		{name: "v4 skips used", prefixes: pfxs("10.0.0.0/24"), used: set("10.0.0.1", "10.0.0.2"), want: "10.0.0.3"},
		{name: "v4 fills hole", prefixes: pfxs("10.0.0.0/24"), used: set("10.0.0.1", "10.0.0.3"), want: "10.0.0.2"},
		{name: "v4 network used does not matter", prefixes: pfxs("10.0.0.0/24"), used: set("10.0.0.0"), want: "10.0.0.1"},
		{name: "v4 full", prefixes: pfxs("10.0.0.0/24"), used: allUsedIn(pfx("10.0.0.0/24")), exhausted: true},
		{name: "v4 broadcast never", prefixes: pfxs("10.0.0.0/30"), used: set("10.0.0.1", "10.0.0.2"), exhausted: true},
		{name: "v4 /31 both usable", prefixes: pfxs("10.0.0.0/31"), want: "10.0.0.0"},
		{name: "v4 /31 second", prefixes: pfxs("10.0.0.0/31"), used: set("10.0.0.0"), want: "10.0.0.1"},
		{name: "v4 /32", prefixes: pfxs("192.0.2.7/32"), want: "192.0.2.7"},
		{name: "v4 /32 used", prefixes: pfxs("192.0.2.7/32"), used: set("192.0.2.7"), exhausted: true},
		{name: "v4 end of space /31", prefixes: pfxs("255.255.255.254/31"), used: set("255.255.255.254"), want: "255.255.255.255"},
		{name: "v4 end of space full", prefixes: pfxs("255.255.255.254/31"), used: set("255.255.255.254", "255.255.255.255"), exhausted: true},
		{name: "v4 end of space /24", prefixes: pfxs("255.255.255.0/24"), used: func(a netip.Addr) bool { return a != addr("255.255.255.254") }, want: "255.255.255.254"},
		{name: "second prefix", prefixes: pfxs("10.0.0.0/30", "10.1.0.0/24"), used: set("10.0.0.1", "10.0.0.2"), want: "10.1.0.1"},
		{name: "caller order", prefixes: pfxs("10.1.0.0/24", "10.0.0.0/24"), want: "10.1.0.1"},
		{name: "v6 skips anycast", prefixes: pfxs("2001:db8::/64"), want: "2001:db8::1"},
		{name: "v6 used", prefixes: pfxs("2001:db8::/64"), used: set("2001:db8::1", "2001:db8::2"), want: "2001:db8::3"},
		{name: "v6 /127", prefixes: pfxs("2001:db8::/127"), want: "2001:db8::"},
		{name: "v6 /128", prefixes: pfxs("2001:db8::5/128"), want: "2001:db8::5"},
		{name: "v6 /126 full", prefixes: pfxs("2001:db8::/126"), used: set("2001:db8::1", "2001:db8::2", "2001:db8::3"), exhausted: true},
		{name: "v6 end of space", prefixes: pfxs("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffc/126"), used: set("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffd", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"), want: "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
		{name: "mixed families", prefixes: pfxs("10.0.0.0/32", "2001:db8::/64"), used: set("10.0.0.0"), want: "2001:db8::1"},
		{name: "no prefixes", exhausted: true},
		{name: "non-canonical", prefixes: pfxs("10.0.0.1/24"), wantErr: true},
		{name: "invalid", prefixes: []netip.Prefix{{}}, wantErr: true},
		{name: "4in6", prefixes: pfxs("::ffff:10.0.0.0/120"), wantErr: true},
		{name: "bad one after good", prefixes: pfxs("10.0.0.0/24", "10.0.1.1/24"), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NextFreeIP(tt.prefixes, tt.used)
			switch {
			case tt.exhausted:
				if !errors.Is(err, ErrExhausted) {
					t.Fatalf("NextFreeIP() = %v, %v; want ErrExhausted", got, err)
				}
			case tt.wantErr:
				if err == nil || errors.Is(err, ErrExhausted) {
					t.Fatalf("NextFreeIP() = %v, %v; want a validation error", got, err)
				}
			case err != nil:
				t.Fatalf("NextFreeIP() error: %v", err)
			case got != addr(tt.want):
				t.Fatalf("NextFreeIP() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestContainsIPAndUsable(t *testing.T) {
	ps := pfxs("10.0.0.0/24", "192.0.2.0/31", "2001:db8::/64", "2001:db8:1::/127")
	tests := []struct {
		addr             string
		contains, usable bool
	}{
		{"10.0.0.0", true, false},
		{"10.0.0.1", true, true},
		{"10.0.0.254", true, true},
		{"10.0.0.255", true, false},
		{"10.0.1.0", false, false},
		{"192.0.2.0", true, true},
		{"192.0.2.1", true, true},
		{"192.0.2.2", false, false},
		{"2001:db8::", true, false},
		{"2001:db8::1", true, true},
		{"2001:db8:0:0:ffff:ffff:ffff:ffff", true, true},
		{"2001:db8:1::", true, true},
		{"2001:db8:1::1", true, true},
		{"2001:db8:1::2", false, false},
		{"::ffff:10.0.0.1", false, false},
	}
	for _, tt := range tests {
		if got := ContainsIP(ps, addr(tt.addr)); got != tt.contains {
			t.Errorf("ContainsIP(%s) = %v, want %v", tt.addr, got, tt.contains)
		}
		if got := Usable(ps, addr(tt.addr)); got != tt.usable {
			t.Errorf("Usable(%s) = %v, want %v", tt.addr, got, tt.usable)
		}
	}
	if ContainsIP(nil, addr("10.0.0.1")) || Usable(nil, addr("10.0.0.1")) {
		t.Error("empty prefix list contains an address")
	}
	if Usable(pfxs("10.0.0.1/24"), addr("10.0.0.2")) {
		t.Error("Usable accepts a non-canonical prefix that NextFreeIP rejects")
	}
}

func TestCapacity(t *testing.T) {
	pow2 := func(n uint) *big.Int { return new(big.Int).Lsh(big.NewInt(1), n) }
	minus := func(x *big.Int, n int64) *big.Int { return new(big.Int).Sub(x, big.NewInt(n)) }
	tests := []struct {
		name     string
		prefixes []netip.Prefix
		want     *big.Int
	}{
		{"empty", nil, big.NewInt(0)},
		{"v4 /24", pfxs("10.0.0.0/24"), big.NewInt(254)},
		{"v4 /30", pfxs("10.0.0.0/30"), big.NewInt(2)},
		{"v4 /31", pfxs("10.0.0.0/31"), big.NewInt(2)},
		{"v4 /32", pfxs("10.0.0.0/32"), big.NewInt(1)},
		{"v4 /0", pfxs("0.0.0.0/0"), minus(pow2(32), 2)},
		{"v4 two", pfxs("10.0.0.0/24", "10.0.1.0/24"), big.NewInt(508)},
		{"duplicate", pfxs("10.0.0.0/24", "10.0.0.0/24"), big.NewInt(254)},
		{"nested", pfxs("10.0.0.0/25", "10.0.0.0/24"), big.NewInt(254)},
		{"nested /32 at network", pfxs("10.0.0.0/24", "10.0.0.0/32"), big.NewInt(255)},
		{"nested /31 at broadcast", pfxs("10.0.0.0/24", "10.0.0.254/31"), big.NewInt(255)},
		{"nested both ends", pfxs("10.0.0.0/24", "10.0.0.0/31", "10.0.0.255/32"), big.NewInt(256)},
		{"v6 /64", pfxs("2001:db8::/64"), minus(pow2(64), 1)},
		{"v6 /127", pfxs("2001:db8::/127"), big.NewInt(2)},
		{"v6 /128", pfxs("2001:db8::/128"), big.NewInt(1)},
		{"v6 /0", pfxs("::/0"), minus(pow2(128), 1)},
		{"v6 nested /128 at anycast", pfxs("2001:db8::/64", "2001:db8::/128"), pow2(64)},
		{"mixed", pfxs("10.0.0.0/24", "2001:db8::/120"), big.NewInt(254 + 255)},
		{"invalid counts zero", []netip.Prefix{{}, pfx("10.0.0.1/24"), pfx("10.0.0.0/30")}, big.NewInt(2)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Capacity(tt.prefixes); got.Cmp(tt.want) != 0 {
				t.Fatalf("Capacity() = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestCapacityMatchesNextFreeIP allocates until exhaustion from random small
// prefix lists (nested and repeated ones included) and checks that the count
// equals Capacity and that every address handed out is Usable and fresh.
func TestCapacityMatchesNextFreeIP(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for iter := range 200 {
		var ps []netip.Prefix
		for range 1 + r.IntN(4) {
			if r.IntN(2) == 0 {
				// Somewhere in 10.0.0.0/23, length /23../32.
				bits := 23 + r.IntN(10)
				a := netip.AddrFrom4([4]byte{10, 0, byte(r.IntN(2)), byte(r.IntN(256))})
				ps = append(ps, netip.PrefixFrom(a, bits).Masked())
			} else {
				// Somewhere in 2001:db8::/119, length /119../128.
				bits := 119 + r.IntN(10)
				b := addr("2001:db8::").As16()
				b[14], b[15] = byte(r.IntN(2)), byte(r.IntN(256))
				ps = append(ps, netip.PrefixFrom(netip.AddrFrom16(b), bits).Masked())
			}
		}
		used := map[netip.Addr]bool{}
		for {
			a, err := NextFreeIP(ps, func(a netip.Addr) bool { return used[a] })
			if errors.Is(err, ErrExhausted) {
				break
			}
			if err != nil {
				t.Fatalf("iteration %d %v: %v", iter, ps, err)
			}
			if used[a] || !Usable(ps, a) {
				t.Fatalf("iteration %d %v: got %v twice or not usable", iter, ps, a)
			}
			used[a] = true
		}
		if c := Capacity(ps); c.Cmp(big.NewInt(int64(len(used)))) != 0 {
			t.Fatalf("iteration %d %v: allocated %d addresses, Capacity says %v", iter, ps, len(used), c)
		}
	}
}

func TestLastAddrAndAlignUp(t *testing.T) {
	tests := []struct{ p, last string }{
		{"10.0.0.0/24", "10.0.0.255"},
		{"10.0.0.0/23", "10.0.1.255"},
		{"10.0.0.0/32", "10.0.0.0"},
		{"0.0.0.0/0", "255.255.255.255"},
		{"10.0.0.128/25", "10.0.0.255"},
		{"2001:db8::/64", "2001:db8::ffff:ffff:ffff:ffff"},
		{"2001:db8::/61", "2001:db8:0:7:ffff:ffff:ffff:ffff"},
		{"::/0", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
	}
	for _, tt := range tests {
		if got := lastAddr(pfx(tt.p)); got != addr(tt.last) {
			t.Errorf("lastAddr(%s) = %v, want %s", tt.p, got, tt.last)
		}
	}
	aligns := []struct {
		a    string
		bits int
		want string // "" for none
	}{
		{"10.0.0.0", 24, "10.0.0.0"},
		{"10.0.0.1", 24, "10.0.1.0"},
		{"10.0.0.255", 24, "10.0.1.0"},
		{"255.255.255.1", 24, ""},
		{"2001:db8::1", 64, "2001:db8:0:1::"},
	}
	for _, tt := range aligns {
		got := alignUp(addr(tt.a), tt.bits)
		if (tt.want == "" && got.IsValid()) || (tt.want != "" && got != addr(tt.want)) {
			t.Errorf("alignUp(%s, %d) = %v, want %q", tt.a, tt.bits, got, tt.want)
		}
	}
}
