package nft

import (
	"fmt"
	"slices"

	"github.com/google/nftables"
)

// incremental reports whether new can be installed over old by changing
// only the sets, counters and regular chains that differ: the hooked chains
// must stay the same (name, hook, policy) and a set that stays must keep its
// key type (kind and address family).
func incremental(old, new *compiled) bool {
	hooked := func(c *compiled) map[string]chainSpec {
		m := map[string]chainSpec{}
		for _, ch := range c.chains {
			if ch.hook != "" {
				m[ch.name] = ch
			}
		}
		return m
	}
	oh, nh := hooked(old), hooked(new)
	if len(oh) != len(nh) {
		return false
	}
	for n, ch := range nh {
		o, ok := oh[n]
		if !ok || o.hook != ch.hook || o.policy != ch.policy {
			return false
		}
	}
	oldChains := map[string]chainSpec{}
	for _, ch := range old.chains {
		oldChains[ch.name] = ch
	}
	for _, ch := range new.chains {
		if o, ok := oldChains[ch.name]; ok && o.hook != ch.hook {
			return false // a regular chain became hooked or vice versa
		}
	}
	oldSets := map[string]setSpec{}
	for _, s := range old.sets {
		oldSets[s.name] = s
	}
	for _, s := range new.sets {
		if o, ok := oldSets[s.name]; ok && (o.kind != s.kind || o.v6 != s.v6) {
			return false
		}
	}
	return true
}

// updateTable turns the kernel's table from old into new in one batch: new
// counters, sets and chains first, then changed set elements and chains
// (flushed and refilled), then removed chains, sets and counters once
// nothing refers to them any more. Nothing is sent when nothing changed.
func updateTable(conn *nftables.Conn, old, new *compiled) (Result, error) {
	t := table()
	var res Result
	oldCounters := map[string]bool{}
	for _, n := range old.counters {
		oldCounters[n] = true
	}
	newCounters := map[string]bool{}
	objs := 0 // counters added or deleted
	for _, n := range new.counters {
		newCounters[n] = true
		if !oldCounters[n] {
			conn.AddObj(&nftables.CounterObj{Table: t, Name: n})
			objs++
		}
	}

	oldSets := map[string]setSpec{}
	for _, s := range old.sets {
		oldSets[s.name] = s
	}
	newSets := map[string]bool{}
	added := map[string]*nftables.Set{}
	for _, s := range new.sets {
		newSets[s.name] = true
		o, ok := oldSets[s.name]
		switch {
		case !ok:
			set, err := addSet(conn, t, s)
			if err != nil {
				return Result{}, err
			}
			added[s.name] = set
		case !slices.Equal(o.elems, s.elems):
			if err := updateElems(conn, nfSet(t, s), o, s); err != nil {
				return Result{}, err
			}
		default:
			continue
		}
		res.Sets++
	}

	oldChains := map[string]chainSpec{}
	for _, ch := range old.chains {
		oldChains[ch.name] = ch
	}
	newChains := map[string]bool{}
	chains := map[string]*nftables.Chain{}
	for _, ch := range new.chains {
		newChains[ch.name] = true
		if _, ok := oldChains[ch.name]; !ok {
			chains[ch.name] = conn.AddChain(nfChain(t, ch))
		}
	}
	for _, ch := range new.chains {
		nc := chains[ch.name]
		if nc == nil {
			if equalRules(oldChains[ch.name].rules, ch.rules) {
				continue
			}
			nc = &nftables.Chain{Table: t, Name: ch.name}
			conn.FlushChain(nc)
		}
		addRules(conn, nc, ch.rules, added)
		res.Chains++
	}
	for _, ch := range old.chains {
		if !newChains[ch.name] {
			nc := &nftables.Chain{Table: t, Name: ch.name}
			conn.FlushChain(nc)
			conn.DelChain(nc)
			res.Chains++
		}
	}
	for _, s := range old.sets {
		if !newSets[s.name] {
			conn.DelSet(nfSet(t, s))
			res.Sets++
		}
	}
	for _, n := range old.counters {
		if !newCounters[n] {
			conn.DeleteObject(&nftables.CounterObj{Table: t, Name: n})
			objs++
		}
	}
	if res.Sets == 0 && res.Chains == 0 && objs == 0 {
		return res, nil
	}
	if err := conn.Flush(); err != nil {
		return Result{}, fmt.Errorf("update table: %w", err)
	}
	return res, nil
}

// updateElems changes the elements of set from those of o to those of s.
func updateElems(conn *nftables.Conn, set *nftables.Set, o, s setSpec) error {
	if s.kind == setPrefixes {
		// Interval elements depend on their neighbours: replace all.
		conn.FlushSet(set)
		return addElems(conn, set, nfElems(s.kind, s.elems, true))
	}
	have := map[elem]bool{}
	for _, e := range o.elems {
		have[e] = true
	}
	want := map[elem]bool{}
	var add []elem
	for _, e := range s.elems {
		want[e] = true
		if !have[e] {
			add = append(add, e)
		}
	}
	var del []elem
	for _, e := range o.elems {
		if !want[e] {
			del = append(del, e)
		}
	}
	for _, ch := range chunks(nfElems(s.kind, del, false)) {
		if err := conn.SetDeleteElements(set, ch); err != nil {
			return fmt.Errorf("delete elements of %s: %w", s.name, err)
		}
	}
	return addElems(conn, set, nfElems(s.kind, add, false))
}

// equalRules compares rule by rule; stmts are comparable structs.
func equalRules(a, b [][]stmt) bool { return slices.EqualFunc(a, b, slices.Equal[[]stmt]) }
