package nft

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// setKind is the key type of a set.
type setKind int

const (
	setPrefixes setKind = iota // ipv4_addr or ipv6_addr, flags interval
	setAddrs                   // ipv4_addr or ipv6_addr
	setAddrPort                // ipv4_addr . inet_service or ipv6_addr . inet_service
)

// elem is one set element: a range [ip, end] for interval sets, an address,
// or an address and port.
type elem struct {
	ip, end netip.Addr
	port    uint16
}

type setSpec struct {
	name  string
	kind  setKind
	v6    bool // keys are ipv6 addresses
	elems []elem
}

// chainSpec is a chain; hook is empty for regular chains.
type chainSpec struct {
	name   string
	hook   string // "forward" or "postrouting"
	rules  [][]stmt
	policy string
}

// compiled is the ruleset lowered to sets, counters and chains; the renderer
// and the applier both consume it so they cannot diverge.
type compiled struct {
	counters []string
	sets     []setSpec
	chains   []chainSpec
}

// Chain names of the fixed part of the table; policy chains are named
// in_<policy> and out_<policy>.
const (
	chainForward     = "forward"
	chainIngress     = "ingress"
	chainEgress      = "egress"
	chainPostrouting = "postrouting"
)

func compile(rs *Ruleset) (*compiled, error) {
	if err := rs.Validate(); err != nil {
		return nil, fmt.Errorf("validate ruleset: %w", err)
	}
	c := &compiled{}
	counters := map[string]bool{}
	counter := func(n string) string {
		if !counters[n] {
			counters[n] = true
			c.counters = append(c.counters, n)
		}
		return n
	}
	var tenant []netip.Prefix // SNAT is ipv4 only; ipv6 is routed as is
	for _, n := range rs.Networks {
		tenant = append(tenant, familyPrefixes(n.Prefixes, false)...)
	}
	c.sets = append(c.sets, setSpec{name: "tenant_nets", kind: setPrefixes, elems: ranges(tenant)})

	fwd := chainSpec{name: chainForward, hook: "forward", policy: "drop"}
	fwd.rules = append(fwd.rules, []stmt{ctEstablished{}, verdict{code: expr.VerdictAccept}})
	for _, n := range rs.Networks {
		if n.RateLimit > 0 {
			fwd.rules = append(fwd.rules, []stmt{iface{in: true, name: n.Interface},
				limit{rate: n.RateLimit, over: true}, verdict{code: expr.VerdictDrop}})
		}
	}
	if rs.ICMPRate > 0 {
		for _, p := range []byte{unix.IPPROTO_ICMP, unix.IPPROTO_ICMPV6} {
			fwd.rules = append(fwd.rules, []stmt{l4proto{proto: p}, limit{rate: rs.ICMPRate, over: true}, verdict{code: expr.VerdictDrop}})
		}
	}
	for _, n := range rs.Networks {
		fwd.rules = append(fwd.rules,
			[]stmt{iface{in: true, name: n.Interface}, iface{name: rs.External}, verdict{code: expr.VerdictJump, chain: chainEgress}},
			[]stmt{iface{in: true, name: rs.External}, iface{name: n.Interface}, verdict{code: expr.VerdictJump, chain: chainIngress}})
	}
	if rs.LogRate > 0 {
		prefix := rs.LogPrefix
		if prefix == "" {
			prefix = "firewall drop: "
		}
		fwd.rules = append(fwd.rules, []stmt{limit{rate: rs.LogRate}, logStmt{prefix: prefix}})
	}
	// The chain policy would drop as well; the rule counts what it drops.
	fwd.rules = append(fwd.rules, []stmt{objCounter{name: counter(DropCounter)}, verdict{code: expr.VerdictDrop}})

	accept := stmt(verdict{code: expr.VerdictAccept})
	in := chainSpec{name: chainIngress}
	for _, s := range rs.Services {
		id := "svc_" + ident(s.Name)
		v6 := s.IP.Is6()
		var src []stmt
		if len(s.SourceRanges) > 0 {
			// Only sources of the service address's family can reach it.
			c.sets = append(c.sets, setSpec{name: id + "_src", kind: setPrefixes, v6: v6, elems: ranges(familyPrefixes(s.SourceRanges, v6))})
			src = []stmt{lookup{saddr: true, set: id + "_src", v6: v6}}
		}
		count := stmt(objCounter{name: counter(ServiceCounter(s.Name))})
		for _, p := range []Protocol{TCP, UDP} {
			var es []elem
			for _, sp := range s.Ports {
				if sp.Protocol == p {
					es = append(es, elem{ip: s.IP, port: sp.Port})
				}
			}
			if len(es) == 0 {
				continue
			}
			set := id + "_" + string(p)
			c.sets = append(c.sets, setSpec{name: set, kind: setAddrPort, v6: v6, elems: sortElems(es)})
			r := append(append(make([]stmt, 0, len(src)+3), src...), addrPort{proto: p, set: set, v6: v6}, count, accept)
			in.rules = append(in.rules, r)
		}
	}
	out := chainSpec{name: chainEgress}
	var policies []chainSpec
	for _, d := range []struct {
		ch    *chainSpec
		rules []Rule
		pfx   string
		saddr bool
	}{{&in, rs.Ingress, "in_", true}, {&out, rs.Egress, "out_", false}} {
		// One chain per policy, reached by a jump from the direction's
		// chain, so that a policy change rewrites only its chain.
		type policy struct {
			chain int  // index in policies
			count stmt // the policy's counter
			rules int  // model rules so far, numbering the rules' sets
		}
		byName := map[string]*policy{}  // by Rule.Policy
		byChain := map[string]*policy{} // names that differ only in - . _ share a chain
		for _, r := range d.rules {
			pol := byName[r.Policy]
			if pol == nil {
				chain := d.pfx + ident(r.Policy)
				if pol = byChain[chain]; pol == nil {
					pol = &policy{chain: len(policies), count: objCounter{name: counter(PolicyCounter(r.Policy))}}
					policies = append(policies, chainSpec{name: chain})
					d.ch.rules = append(d.ch.rules, []stmt{verdict{code: expr.VerdictJump, chain: chain}})
					byChain[chain] = pol
				}
				byName[r.Policy] = pol
			}
			pc := &policies[pol.chain]
			base := pc.name + "_" + strconv.Itoa(pol.rules)
			pol.rules++
			// A rule becomes one kernel rule per address family it names.
			for _, v6 := range []bool{false, true} {
				var st []stmt
				sfx := ""
				if v6 {
					sfx = "_v6"
				}
				cidrs, except := familyPrefixes(r.CIDRs, v6), familyPrefixes(r.Except, v6)
				switch {
				case r.FQDN != "":
					st = append(make([]stmt, 0, 6), lookup{saddr: d.saddr, set: fqdnSet(r.FQDN, v6), v6: v6})
				case len(cidrs) == 0:
					continue
				case len(cidrs) == 1:
					// One prefix is matched inline: a set per rule makes the
					// kernel's work grow tenfold at 10,000 rules, at the price
					// of a chain rewrite when that prefix changes.
					st = append(make([]stmt, 0, 5), addrMatch{saddr: d.saddr, p: cidrs[0]})
				default:
					name := base + sfx
					c.sets = append(c.sets, setSpec{name: name, kind: setPrefixes, v6: v6, elems: ranges(cidrs)})
					st = append(make([]stmt, 0, 5), lookup{saddr: d.saddr, set: name, v6: v6})
				}
				if len(except) > 0 {
					name := base + sfx + "_x"
					c.sets = append(c.sets, setSpec{name: name, kind: setPrefixes, v6: v6, elems: ranges(except)})
					st = append(st, lookup{saddr: d.saddr, set: name, invert: true, v6: v6})
				}
				if r.Protocol != "" {
					st = append(st, port{proto: r.Protocol, port: r.Port, end: r.EndPort})
				}
				pc.rules = append(pc.rules, append(st, pol.count, accept))
			}
		}
	}
	for _, f := range rs.FQDNSets {
		// Both families always, so that DNS answers only change elements.
		for _, v6 := range []bool{false, true} {
			var es []elem
			for _, ip := range f.IPs {
				if ip.Is6() == v6 {
					es = append(es, elem{ip: ip})
				}
			}
			c.sets = append(c.sets, setSpec{name: fqdnSet(f.Name, v6), kind: setAddrs, v6: v6, elems: sortElems(es)})
		}
	}

	post := chainSpec{name: chainPostrouting, hook: "postrouting", policy: "accept"}
	first, last, _ := snatRange(rs.SNAT)
	post.rules = append(post.rules, []stmt{iface{name: rs.External}, lookup{saddr: true, set: "tenant_nets"}, snat{first: first, last: last}})
	c.chains = append(append([]chainSpec{fwd, in, out}, policies...), post)
	sort.Strings(c.counters)
	return c, nil
}

func fqdnSet(name string, v6 bool) string {
	if v6 {
		return "fqdn6_" + ident(name)
	}
	return "fqdn_" + ident(name)
}

// familyPrefixes returns the prefixes of ps of one family.
func familyPrefixes(ps []netip.Prefix, v6 bool) []netip.Prefix {
	n := 0
	for _, p := range ps {
		if p.Addr().Is6() == v6 {
			n++
		}
	}
	if n == len(ps) {
		return ps
	}
	out := make([]netip.Prefix, 0, n)
	for _, p := range ps {
		if p.Addr().Is6() == v6 {
			out = append(out, p)
		}
	}
	return out
}

// ranges merges prefixes into sorted, disjoint, non-adjacent ranges as the
// kernel wants them in an interval set.
func ranges(ps []netip.Prefix) []elem {
	var rs []elem
	for _, p := range ps {
		rs = append(rs, elem{ip: p.Masked().Addr(), end: lastAddr(p)})
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].ip.Less(rs[j].ip) })
	var out []elem
	for _, r := range rs {
		if n := len(out); n > 0 {
			prev := &out[n-1]
			if !prev.end.IsValid() || !prev.end.Next().IsValid() || r.ip.Compare(prev.end.Next()) <= 0 {
				if prev.end.Less(r.end) {
					prev.end = r.end
				}
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

func lastAddr(p netip.Prefix) netip.Addr {
	if p.Addr().Is6() {
		b := p.Masked().Addr().As16()
		for i := p.Bits(); i < 128; i++ {
			b[i/8] |= 0x80 >> (i % 8)
		}
		return netip.AddrFrom16(b)
	}
	a := p.Masked().Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= uint32((uint64(1) << (32 - p.Bits())) - 1)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func sortElems(es []elem) []elem {
	sort.Slice(es, func(i, j int) bool {
		if c := es[i].ip.Compare(es[j].ip); c != 0 {
			return c < 0
		}
		return es[i].port < es[j].port
	})
	out := es[:0]
	for i, e := range es {
		if i == 0 || e != es[i-1] {
			out = append(out, e)
		}
	}
	return out
}
