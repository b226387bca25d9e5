package nft

import (
	"fmt"
	"net/netip"
	"sort"

	"github.com/google/nftables/expr"
)

// setKind is the key type of a set.
type setKind int

const (
	setPrefixes setKind = iota // ipv4_addr, flags interval
	setAddrs                   // ipv4_addr
	setAddrPort                // ipv4_addr . inet_service
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

// sameStructure reports whether c and o differ at most in set contents;
// then an update of those sets gives the same result as a full replace.
func (c *compiled) sameStructure(o *compiled) bool {
	if o == nil || len(c.counters) != len(o.counters) || len(c.sets) != len(o.sets) || len(c.chains) != len(o.chains) {
		return false
	}
	for i := range c.counters {
		if c.counters[i] != o.counters[i] {
			return false
		}
	}
	for i := range c.sets {
		if c.sets[i].name != o.sets[i].name || c.sets[i].kind != o.sets[i].kind {
			return false
		}
	}
	for i, ch := range c.chains {
		och := o.chains[i]
		if ch.name != och.name || ch.hook != och.hook || ch.policy != och.policy || len(ch.rules) != len(och.rules) {
			return false
		}
		for j, r := range ch.rules {
			if len(r) != len(och.rules[j]) {
				return false
			}
			for k := range r {
				if r[k] != och.rules[j][k] { // stmts are comparable structs
					return false
				}
			}
		}
	}
	return true
}

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
	var tenant []netip.Prefix
	for _, n := range rs.Networks {
		tenant = append(tenant, n.Prefixes...)
	}
	c.sets = append(c.sets, setSpec{name: "tenant_nets", kind: setPrefixes, elems: ranges(tenant)})

	fwd := chainSpec{name: "forward", hook: "forward", policy: "drop"}
	fwd.rules = append(fwd.rules, []stmt{ctEstablished{}, verdict{code: expr.VerdictAccept}})
	for _, n := range rs.Networks {
		if n.RateLimit > 0 {
			fwd.rules = append(fwd.rules, []stmt{iface{in: true, name: n.Interface},
				limit{rate: n.RateLimit, over: true}, verdict{code: expr.VerdictDrop}})
		}
	}
	if rs.ICMPRate > 0 {
		fwd.rules = append(fwd.rules, []stmt{l4proto{proto: 1}, limit{rate: rs.ICMPRate, over: true}, verdict{code: expr.VerdictDrop}})
	}
	for _, n := range rs.Networks {
		fwd.rules = append(fwd.rules,
			[]stmt{iface{in: true, name: n.Interface}, iface{name: rs.External}, verdict{code: expr.VerdictJump, chain: "egress"}},
			[]stmt{iface{in: true, name: rs.External}, iface{name: n.Interface}, verdict{code: expr.VerdictJump, chain: "ingress"}})
	}
	if rs.LogRate > 0 {
		prefix := rs.LogPrefix
		if prefix == "" {
			prefix = "firewall drop: "
		}
		fwd.rules = append(fwd.rules, []stmt{limit{rate: rs.LogRate}, logStmt{prefix: prefix}})
	}

	in := chainSpec{name: "ingress"}
	open := map[Protocol][]elem{}
	for _, s := range rs.Services {
		if len(s.SourceRanges) > 0 {
			continue
		}
		for _, p := range s.Ports {
			open[p.Protocol] = append(open[p.Protocol], elem{ip: s.IP, port: p.Port})
		}
	}
	for _, p := range []Protocol{TCP, UDP} {
		name := "svc_" + string(p)
		c.sets = append(c.sets, setSpec{name: name, kind: setAddrPort, elems: sortElems(open[p])})
		in.rules = append(in.rules, []stmt{addrPort{proto: p, set: name}, objCounter{name: counter("services")}, verdict{code: expr.VerdictAccept}})
	}
	for _, s := range rs.Services {
		if len(s.SourceRanges) == 0 {
			continue
		}
		id := "svc_" + ident(s.Name)
		c.sets = append(c.sets, setSpec{name: id + "_src", kind: setPrefixes, elems: ranges(s.SourceRanges)})
		for _, p := range []Protocol{TCP, UDP} {
			var es []elem
			for _, sp := range s.Ports {
				if sp.Protocol == p {
					es = append(es, elem{ip: s.IP, port: sp.Port})
				}
			}
			c.sets = append(c.sets, setSpec{name: id + "_" + string(p), kind: setAddrPort, elems: sortElems(es)})
			in.rules = append(in.rules, []stmt{lookup{saddr: true, set: id + "_src"},
				addrPort{proto: p, set: id + "_" + string(p)}, objCounter{name: counter(id)}, verdict{code: expr.VerdictAccept}})
		}
	}
	out := chainSpec{name: "egress"}
	for _, d := range []struct {
		ch    *chainSpec
		rules []Rule
		pfx   string
		saddr bool
	}{{&in, rs.Ingress, "in_", true}, {&out, rs.Egress, "out_", false}} {
		for i, r := range d.rules {
			name := fmt.Sprintf("%s%d", d.pfx, i)
			var st []stmt
			if r.FQDN != "" {
				st = append(st, lookup{saddr: d.saddr, set: "fqdn_" + ident(r.FQDN)})
			} else if len(r.CIDRs) == 1 {
				// One prefix is matched inline: a set per rule makes the
				// kernel's work grow tenfold at 10,000 rules, at the price
				// of a full replace when that prefix changes.
				st = append(st, addrMatch{saddr: d.saddr, p: r.CIDRs[0]})
			} else {
				c.sets = append(c.sets, setSpec{name: name, kind: setPrefixes, elems: ranges(r.CIDRs)})
				st = append(st, lookup{saddr: d.saddr, set: name})
			}
			if len(r.Except) > 0 {
				c.sets = append(c.sets, setSpec{name: name + "_x", kind: setPrefixes, elems: ranges(r.Except)})
				st = append(st, lookup{saddr: d.saddr, set: name + "_x", invert: true})
			}
			if r.Protocol != "" {
				st = append(st, port{proto: r.Protocol, port: r.Port, end: r.EndPort})
			}
			st = append(st, objCounter{name: counter("pol_" + ident(r.Policy))}, verdict{code: expr.VerdictAccept})
			d.ch.rules = append(d.ch.rules, st)
		}
	}
	for _, f := range rs.FQDNSets {
		var es []elem
		for _, ip := range f.IPs {
			es = append(es, elem{ip: ip})
		}
		c.sets = append(c.sets, setSpec{name: "fqdn_" + ident(f.Name), kind: setAddrs, elems: sortElems(es)})
	}

	post := chainSpec{name: "postrouting", hook: "postrouting", policy: "accept"}
	first, last, _ := snatRange(rs.SNAT)
	post.rules = append(post.rules, []stmt{iface{name: rs.External}, lookup{saddr: true, set: "tenant_nets"}, snat{first: first, last: last}})
	c.chains = []chainSpec{fwd, in, out, post}
	sort.Strings(c.counters)
	return c, nil
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
