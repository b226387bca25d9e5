package nft

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables/expr"

	"github.com/metalforge/metalforge/pkg/nft/nfttest"
)

// TestApplyIncremental applies a sequence of changes to one Applier and
// checks after each that the batch touched only what changed and that the
// kernel's table equals `nft -f` of the rendered ruleset.
func TestApplyIncremental(t *testing.T) {
	nfttest.NeedRoot(t)
	goNS, textNS := newNS(t, "go"), newNS(t, "txt")
	a := newApplier(t, goNS)
	rs := fixture()
	if res, err := a.Apply(rs); err != nil || !res.Full {
		t.Fatalf("first apply: result %+v, err %v", res, err)
	}
	p := netip.MustParsePrefix
	steps := []struct {
		name   string
		change func(*Ruleset)
		want   Result
		same   []string // chains whose rules (with handles) must stay
	}{
		{"one policy", func(r *Ruleset) { r.Egress[4].Port = 124 }, // allow-ntp
			Result{Chains: 1}, []string{"forward", "egress", "ingress", "out_allow_https", "out_allow_dns"}},
		{"one policy gains a rule", func(r *Ruleset) {
			r.Egress = append(r.Egress, Rule{Policy: "allow-https", CIDRs: []netip.Prefix{p("198.18.0.0/15"), p("198.20.0.0/16")}, Protocol: TCP, Port: 8443})
		}, Result{Chains: 1, Sets: 1}, []string{"egress", "out_allow_ntp"}},
		{"set of a policy", func(r *Ruleset) { r.Egress[1].CIDRs = append(r.Egress[1].CIDRs, p("192.0.2.55/32")) }, // allow-dns
			Result{Sets: 1}, []string{"egress", "out_allow_dns"}},
		{"add policy", func(r *Ruleset) {
			r.Egress = append(r.Egress, Rule{Policy: "allow-smtp", CIDRs: []netip.Prefix{p("203.0.113.25/32"), p("203.0.113.26/32")}, Protocol: TCP, Port: 25})
			r.Ingress = append(r.Ingress, Rule{Policy: "allow-smtp", CIDRs: []netip.Prefix{p("198.51.100.25/32")}, Protocol: TCP, Port: 25})
		}, Result{Chains: 4, Sets: 1}, []string{"forward", "out_allow_https"}},
		{"remove policy", func(r *Ruleset) { r.Egress = append(r.Egress[:1], r.Egress[2:]...) }, // allow-dns
			Result{Chains: 2, Sets: 2}, []string{"ingress", "out_allow_https", "out_allow_smtp"}},
		{"add service", func(r *Ruleset) {
			r.Services = append(r.Services, Service{Name: "mail", IP: netip.MustParseAddr("10.0.0.102"), Ports: []ServicePort{{TCP, 25}, {UDP, 25}}})
		}, Result{Chains: 1, Sets: 2}, []string{"egress", "in_allow_admin"}},
		{"remove service", func(r *Ruleset) { r.Services = r.Services[1:] }, // web
			Result{Chains: 1, Sets: 1}, []string{"egress", "in_allow_admin"}},
		{"network", func(r *Ruleset) { r.Networks[0].Prefixes = append(r.Networks[0].Prefixes, p("10.0.8.0/24")) },
			Result{Sets: 1}, []string{"forward", "postrouting"}},
		{"forward chain", func(r *Ruleset) { r.ICMPRate = 50 }, Result{Chains: 1}, []string{"egress", "postrouting"}},
		{"nothing", func(*Ruleset) {}, Result{}, []string{"forward", "egress", "ingress"}},
	}
	for _, s := range steps {
		before := map[string]string{}
		for _, ch := range s.same {
			before[ch] = goNS.Run(t, "nft", "-a", "list", "chain", "inet", TableName, ch)
		}
		s.change(rs)
		res, err := a.Apply(rs)
		if err != nil {
			t.Fatalf("%s: apply: %v", s.name, err)
		}
		if res != s.want {
			t.Errorf("%s: result %+v, want %+v", s.name, res, s.want)
		}
		for _, ch := range s.same {
			if got := goNS.Run(t, "nft", "-a", "list", "chain", "inet", TableName, ch); got != before[ch] {
				t.Errorf("%s: chain %s was rewritten:\n%s\n---\n%s", s.name, ch, before[ch], got)
			}
		}
		applyText(t, textNS, rs)
		assertSameTable(t, goNS, textNS)
	}
	// What the removed policy and service left behind is gone.
	out := goNS.Run(t, "nft", "list", "table", "inet", TableName)
	for _, gone := range []string{"chain out_allow_dns {", "counter " + PolicyCounter("allow-dns") + " {",
		"counter " + ServiceCounter("web") + " {", "set svc_web_tcp {", "set out_allow_dns_0_v6 {"} {
		if strings.Contains(out, gone) {
			t.Errorf("%s still in the table:\n%s", gone, out)
		}
	}
}

// TestApplyIncrementalRejected makes the kernel reject an incremental batch
// and checks that the old ruleset stays and the Applier recovers.
func TestApplyIncrementalRejected(t *testing.T) {
	nfttest.NeedRoot(t)
	goNS, textNS := newNS(t, "go"), newNS(t, "txt")
	a := newApplier(t, goNS)
	rs := fixture()
	if _, err := a.Apply(rs); err != nil {
		t.Fatalf("apply: %v", err)
	}
	want := goNS.Run(t, "nft", "list", "table", "inet", TableName)

	// Invalid input is refused before anything is sent.
	bad := fixture()
	bad.Egress[4].Port, bad.Egress[4].Protocol = 124, "sctp"
	if _, err := a.Apply(bad); err == nil || !strings.Contains(err.Error(), "unsupported protocol") {
		t.Fatalf("apply of bad protocol: err = %v", err)
	}
	// A policy change whose chain refers to a missing set passes the
	// incremental check but is rejected by the kernel, and so is the full
	// replace Apply retries with.
	bad = fixture()
	bad.Egress[4].Port = 124
	c, err := compile(bad)
	if err != nil {
		t.Fatal(err)
	}
	for i := range c.chains {
		if c.chains[i].name == "out_allow_ntp" {
			c.chains[i].rules = append(c.chains[i].rules, []stmt{lookup{set: "missing"}, verdict{code: expr.VerdictAccept}})
		}
	}
	if !incremental(a.last, c) {
		t.Fatal("the bad change is not incremental")
	}
	if _, err := a.apply(c); err == nil || !strings.Contains(err.Error(), "update table") || !strings.Contains(err.Error(), "replace table") {
		t.Fatalf("apply of a rule referencing a missing set: err = %v, want both batches rejected", err)
	}
	if got := goNS.Run(t, "nft", "list", "table", "inet", TableName); got != want {
		t.Fatalf("ruleset changed after a rejected batch:\n%s\n---\n%s", want, got)
	}
	if a.last != nil {
		t.Fatal("the applier still trusts its memory after a rejected batch")
	}
	// The next Apply replaces the table and gives the right result.
	rs.Egress[4].Port = 125
	if res, err := a.Apply(rs); err != nil || !res.Full {
		t.Fatalf("apply after rejection: result %+v, err %v", res, err)
	}
	applyText(t, textNS, rs)
	assertSameTable(t, goNS, textNS)

	// Someone else deletes the table: the incremental batch fails and
	// Apply falls back to a full replace.
	goNS.Run(t, "nft", "delete", "table", "inet", TableName)
	rs.Egress[4].Port = 126
	if res, err := a.Apply(rs); err != nil || !res.Full {
		t.Fatalf("apply after the table vanished: result %+v, err %v", res, err)
	}
	applyText(t, textNS, rs)
	assertSameTable(t, goNS, textNS)
	if res, err := a.Apply(rs); err != nil || res != (Result{}) {
		t.Fatalf("apply of the same ruleset: result %+v, err %v", res, err)
	}
}

func TestIncremental(t *testing.T) {
	base, err := compile(fixture())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		modify func(*compiled)
		want   bool
	}{
		{"same", func(*compiled) {}, true},
		{"hook policy", func(c *compiled) { c.chains[0].policy = "accept" }, false},
		{"hook gone", func(c *compiled) { c.chains = c.chains[:len(c.chains)-1] }, false},
		{"regular chain hooked", func(c *compiled) { c.chains[1].hook = "forward" }, false},
		{"set kind", func(c *compiled) { c.sets[0].kind = setAddrs }, false},
		{"new set", func(c *compiled) { c.sets = append(c.sets, setSpec{name: "x", kind: setAddrs}) }, true},
		{"new chain", func(c *compiled) { c.chains = append(c.chains, chainSpec{name: "out_x"}) }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := compile(fixture())
			tt.modify(c)
			if got := incremental(base, c); got != tt.want {
				t.Errorf("incremental = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCounterNames(t *testing.T) {
	c, err := compile(fixture())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{DropCounter, PolicyCounter("allow-admin"), PolicyCounter("allow-any"), PolicyCounter("allow-dns"),
		PolicyCounter("allow-example"), PolicyCounter("allow-https"), PolicyCounter("allow-ntp"), PolicyCounter("allow-ranges"),
		ServiceCounter("dns"), ServiceCounter("web"), ServiceCounter("web6")}
	if d := cmp.Diff(want, c.counters); d != "" {
		t.Errorf("counters (-want +got):\n%s", d)
	}
}

// TestPolicyChains checks that each policy gets one chain, reached by one
// jump, and that names that differ only in - . _ share it (and its counter).
func TestPolicyChains(t *testing.T) {
	rs := fixture()
	p := netip.MustParsePrefix
	rs.Egress = []Rule{
		{Policy: "a-b", CIDRs: []netip.Prefix{p("192.0.2.1/32")}},
		{Policy: "c", CIDRs: []netip.Prefix{p("192.0.2.2/32"), p("2001:db8::2/128")}},
		{Policy: "a_b", CIDRs: []netip.Prefix{p("192.0.2.3/32")}},
		{Policy: "a-b", CIDRs: []netip.Prefix{p("192.0.2.4/32"), p("192.0.2.5/32")}},
	}
	c, err := compile(rs)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, ch := range c.chains {
		if ch.name != "egress" && !strings.HasPrefix(ch.name, "out_") {
			continue
		}
		for _, r := range ch.rules {
			parts := make([]string, len(r))
			for i, s := range r {
				parts[i] = s.text()
			}
			got[ch.name] = append(got[ch.name], strings.Join(parts, " "))
		}
	}
	want := map[string][]string{
		"egress": {"jump out_a_b", "jump out_c"},
		"out_a_b": {
			`ip daddr 192.0.2.1 counter name "pol_a_b" accept`,
			`ip daddr 192.0.2.3 counter name "pol_a_b" accept`,
			`ip daddr @out_a_b_2 counter name "pol_a_b" accept`,
		},
		"out_c": {
			`ip daddr 192.0.2.2 counter name "pol_c" accept`,
			`ip6 daddr 2001:db8::2 counter name "pol_c" accept`,
		},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("egress chains (-want +got):\n%s", d)
	}
}
