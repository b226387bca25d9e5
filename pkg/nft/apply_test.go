package nft

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/metalforge/metalforge/pkg/nft/nfttest"
)

func TestApplyMatchesNftF(t *testing.T) {
	nfttest.NeedRoot(t)
	goNS, textNS := newNS(t, "go"), newNS(t, "txt")
	rs := fixture()
	res, err := newApplier(t, goNS).Apply(rs)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	if !res.Full {
		t.Fatalf("first apply was not a full replace: %+v", res)
	}
	applyText(t, textNS, rs)
	assertSameTable(t, goNS, textNS)
}

func TestApplySetOnlyChange(t *testing.T) {
	nfttest.NeedRoot(t)
	goNS, textNS := newNS(t, "go"), newNS(t, "txt")
	a := newApplier(t, goNS)
	rs := fixture()
	if _, err := a.Apply(rs); err != nil {
		t.Fatalf("apply: %v", err)
	}
	before := goNS.Run(t, "nft", "-a", "list", "chain", "inet", TableName, "egress")

	rs.Services[0].IP = netip.MustParseAddr("10.0.0.200")
	rs.FQDNSets[0].IPs = append(rs.FQDNSets[0].IPs[1:], netip.MustParseAddr("93.184.215.99"))
	rs.Services[1].SourceRanges = append(rs.Services[1].SourceRanges, netip.MustParsePrefix("203.0.113.0/24"))
	res, err := a.Apply(rs)
	if err != nil {
		t.Fatalf("apply change: %v", err)
	}
	if res.Full || res.Sets != 3 {
		t.Fatalf("result = %+v, want 3 sets updated without full replace", res)
	}
	// Rule handles unchanged: the chains were not recreated.
	if after := goNS.Run(t, "nft", "-a", "list", "chain", "inet", TableName, "egress"); after != before {
		t.Fatalf("egress chain changed on a set-only update:\n%s\n---\n%s", before, after)
	}
	applyText(t, textNS, rs)
	assertSameTable(t, goNS, textNS)

	// A change of a hooked chain's policy replaces the table.
	c, err := compile(rs)
	if err != nil {
		t.Fatal(err)
	}
	c.chains[len(c.chains)-1].policy = "drop" // postrouting
	if incremental(a.last, c) {
		t.Fatal("a changed base chain policy counts as incremental")
	}
	rs.Egress = rs.Egress[1:]
	a.Reset()
	if res, err := a.Apply(rs); err != nil || !res.Full {
		t.Fatalf("apply after Reset: result %+v, err %v", res, err)
	}
	applyText(t, textNS, rs)
	assertSameTable(t, goNS, textNS)
}

func TestApplyInvalidKeepsOldRuleset(t *testing.T) {
	nfttest.NeedRoot(t)
	ns := newNS(t, "inv")
	a := newApplier(t, ns)
	rs := fixture()
	if _, err := a.Apply(rs); err != nil {
		t.Fatalf("apply: %v", err)
	}
	want := ns.Run(t, "nft", "list", "table", "inet", TableName)

	bad := fixture()
	bad.Egress[0].CIDRs = []netip.Prefix{netip.PrefixFrom(netip.MustParseAddr("10.0.0.1"), 8)}
	if _, err := a.Apply(bad); err == nil || !strings.Contains(err.Error(), "host bits") {
		t.Fatalf("apply of bad cidr: err = %v", err)
	}

	// A batch the kernel rejects (a rule referencing a missing set) is
	// rejected whole after the table delete was already in the batch.
	c, err := compile(fixture())
	if err != nil {
		t.Fatal(err)
	}
	c.chains[2].rules = append(c.chains[2].rules, []stmt{lookup{set: "missing"}, verdict{code: 1}})
	conn, err := a.conn()
	if err != nil {
		t.Fatal(err)
	}
	if err := replace(conn, c, nil); err == nil {
		t.Fatal("kernel accepted a rule referencing a missing set")
	}
	_ = a.closeConn() // as Apply does after an error
	if got := ns.Run(t, "nft", "list", "table", "inet", TableName); got != want {
		t.Fatalf("ruleset changed after rejected batches:\n%s\n---\n%s", want, got)
	}
	// The applier still works afterwards.
	rs.Services[0].IP = netip.MustParseAddr("10.0.0.201")
	if _, err := a.Apply(rs); err != nil {
		t.Fatalf("apply after rejection: %v", err)
	}
}

func TestApplyManySetElements(t *testing.T) {
	nfttest.NeedRoot(t)
	ns := newNS(t, "many")
	rs := fixture()
	rs.FQDNSets[0].IPs = manyAddrs(5000)
	rs.Egress[0].CIDRs = manyPrefixes(3000)
	a := newApplier(t, ns)
	if _, err := a.Apply(rs); err != nil {
		t.Fatalf("apply: %v", err)
	}
	// A set-only update with 2,500 deletions and 2,500 additions, chunked.
	rs.FQDNSets[0].IPs = manyAddrs(7500)[2500:]
	if res, err := a.Apply(rs); err != nil || res.Full || res.Sets != 1 {
		t.Fatalf("set update: result %+v, err %v", res, err)
	}
	for set, want := range map[string]int{"fqdn_example_com": 5000, "out_allow_https_0": 3000} {
		out := ns.Run(t, "nft", "-j", "list", "set", "inet", TableName, set)
		// Each element is a JSON string or prefix object; count addresses.
		if got := strings.Count(out, `"10.`) + strings.Count(out, `"100.`); got != want {
			t.Errorf("set %s has %d elements, want %d", set, got, want)
		}
	}
}

// manyAddrs returns n distinct addresses in 100.64.0.0/10.
func manyAddrs(n int) []netip.Addr {
	out := make([]netip.Addr, n)
	for i := range out {
		out[i] = netip.AddrFrom4([4]byte{100, byte(64 + i>>16), byte(i >> 8), byte(i)})
	}
	return out
}

// manyPrefixes returns n disjoint, non-adjacent /30s in 10.0.0.0/8.
func manyPrefixes(n int) []netip.Prefix {
	out := make([]netip.Prefix, n)
	for i := range out {
		v := uint32(10)<<24 | uint32(i)*8
		out[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), 30)
	}
	return out
}
