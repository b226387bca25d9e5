package nft

import (
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

const (
	sockBuf   = 64 << 20 // forced netlink socket buffer (LAB-NOTES)
	chunkSize = 1000     // set elements per message (LAB-NOTES)
)

// Config configures an Applier.
type Config struct {
	// NetNSFd is an open fd of the network namespace to program; 0 means
	// the namespace of the calling thread.
	NetNSFd int
}

// Applier installs rulesets into the kernel. It remembers the last ruleset
// it applied so that a change of set contents only updates those sets, and
// keeps one netlink connection open (entering the namespace costs ~10 ms per
// dial). It is not safe for concurrent use; Close releases the connection.
type Applier struct {
	cfg  Config
	last *compiled
	nl   *nftables.Conn
}

// Result says what an Apply did.
type Result struct {
	Full bool // the whole table was replaced
	Sets int  // sets whose elements were updated (without a full replace)
}

// NewApplier returns an Applier for cfg.
func NewApplier(cfg Config) *Applier { return &Applier{cfg: cfg} }

// Reset forgets the last applied ruleset, so the next Apply replaces the
// whole table (e.g. after someone else changed it).
func (a *Applier) Reset() { a.last = nil }

// Apply validates rs and installs it in one atomic batch: a full replace of
// the table, or only element changes when rs differs from the last applied
// ruleset in set contents only. Invalid input is rejected before anything is
// sent; a batch the kernel rejects leaves the old ruleset in place.
func (a *Applier) Apply(rs *Ruleset) (Result, error) {
	c, err := compile(rs)
	if err != nil {
		return Result{}, err
	}
	conn, err := a.conn()
	if err != nil {
		return Result{}, err
	}
	var res Result
	if c.sameStructure(a.last) {
		res.Sets, err = updateSets(conn, a.last, c)
	} else {
		res.Full = true
		err = replace(conn, c)
	}
	if err != nil {
		a.Reset()
		a.closeConn()
		return Result{}, err
	}
	a.last = c
	return res, nil
}

// Close closes the netlink connection; the Applier may be used again.
func (a *Applier) Close() error {
	return a.closeConn()
}

func (a *Applier) closeConn() error {
	if a.nl == nil {
		return nil
	}
	err := a.nl.CloseLasting()
	a.nl = nil
	if err != nil {
		return fmt.Errorf("close nftables connection: %w", err)
	}
	return nil
}

func (a *Applier) conn() (*nftables.Conn, error) {
	if a.nl != nil {
		return a.nl, nil
	}
	opts := []nftables.ConnOption{nftables.AsLasting(), nftables.WithSockOptions(forceBuffers)}
	if a.cfg.NetNSFd != 0 {
		opts = append(opts, nftables.WithNetNSFd(a.cfg.NetNSFd))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("open nftables connection: %w", err)
	}
	a.nl = c
	return c, nil
}

func forceBuffers(c *netlink.Conn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("netlink raw conn: %w", err)
	}
	var serr error
	err = raw.Control(func(fd uintptr) {
		for _, opt := range []int{unix.SO_SNDBUFFORCE, unix.SO_RCVBUFFORCE} {
			if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt, sockBuf); e != nil && serr == nil {
				serr = e
			}
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("force netlink socket buffers: %w", err)
	}
	return nil
}

func table() *nftables.Table {
	return &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}
}

func nfSet(t *nftables.Table, s setSpec) *nftables.Set {
	set := &nftables.Set{Table: t, Name: s.name, KeyType: nftables.TypeIPAddr}
	switch s.kind {
	case setPrefixes:
		set.Interval = true
	case setAddrPort:
		set.KeyType = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService)
		set.Concatenation = true
	}
	return set
}

// replace deletes and recreates the table in one batch.
func replace(conn *nftables.Conn, c *compiled) error {
	t := table()
	conn.AddTable(t)
	conn.DelTable(t)
	conn.AddTable(t)
	for _, n := range c.counters {
		conn.AddObj(&nftables.CounterObj{Table: t, Name: n})
	}
	sets := map[string]*nftables.Set{}
	for _, s := range c.sets {
		set := nfSet(t, s)
		if err := conn.AddSet(set, nil); err != nil {
			return fmt.Errorf("add set %s: %w", s.name, err)
		}
		if err := addElems(conn, set, nfElems(s.kind, s.elems, true)); err != nil {
			return err
		}
		sets[s.name] = set
	}
	chains := map[string]*nftables.Chain{}
	for _, ch := range c.chains {
		nc := &nftables.Chain{Name: ch.name, Table: t}
		switch ch.hook {
		case "forward":
			nc.Type, nc.Hooknum, nc.Priority = nftables.ChainTypeFilter, nftables.ChainHookForward, nftables.ChainPriorityFilter
		case "postrouting":
			nc.Type, nc.Hooknum, nc.Priority = nftables.ChainTypeNAT, nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource
		}
		if ch.policy != "" {
			p := nftables.ChainPolicyAccept
			if ch.policy == "drop" {
				p = nftables.ChainPolicyDrop
			}
			nc.Policy = &p
		}
		chains[ch.name] = conn.AddChain(nc)
	}
	for _, ch := range c.chains {
		for _, r := range ch.rules {
			var es []expr.Any
			ctx := &ectx{}
			for _, s := range r {
				es = append(es, s.exprs(ctx)...)
			}
			for _, e := range es {
				if l, ok := e.(*expr.Lookup); ok && sets[l.SetName] != nil {
					l.SetID = sets[l.SetName].ID
				}
			}
			conn.AddRule(&nftables.Rule{Table: t, Chain: chains[ch.name], Exprs: es})
		}
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("replace table: %w", err)
	}
	return nil
}

// updateSets changes only the elements of sets that differ between old and
// new (same structure) in one batch.
func updateSets(conn *nftables.Conn, old, new *compiled) (int, error) {
	t := table()
	n := 0
	for i, s := range new.sets {
		o := old.sets[i]
		if equalElems(o.elems, s.elems) {
			continue
		}
		n++
		set := nfSet(t, s)
		if s.kind == setPrefixes {
			// Interval elements depend on their neighbours: replace all.
			conn.FlushSet(set)
			if err := addElems(conn, set, nfElems(s.kind, s.elems, true)); err != nil {
				return 0, err
			}
			continue
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
				return 0, fmt.Errorf("delete elements of %s: %w", s.name, err)
			}
		}
		if err := addElems(conn, set, nfElems(s.kind, add, false)); err != nil {
			return 0, err
		}
	}
	if n == 0 {
		return 0, nil
	}
	if err := conn.Flush(); err != nil {
		return 0, fmt.Errorf("update sets: %w", err)
	}
	return n, nil
}

func equalElems(a, b []elem) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func addElems(conn *nftables.Conn, set *nftables.Set, es []nftables.SetElement) error {
	for _, ch := range chunks(es) {
		if err := conn.SetAddElements(set, ch); err != nil {
			return fmt.Errorf("add elements to %s: %w", set.Name, err)
		}
	}
	return nil
}

func chunks(es []nftables.SetElement) [][]nftables.SetElement {
	var out [][]nftables.SetElement
	for len(es) > chunkSize {
		out = append(out, es[:chunkSize])
		es = es[chunkSize:]
	}
	if len(es) > 0 {
		out = append(out, es)
	}
	return out
}

// nfElems encodes elements as the kernel wants them; whole interval sets
// start with a 0.0.0.0 interval end, like nft does.
func nfElems(k setKind, es []elem, whole bool) []nftables.SetElement {
	var out []nftables.SetElement
	for i, e := range es {
		a := e.ip.As4()
		switch k {
		case setPrefixes:
			if i == 0 && whole && e.ip != netip.AddrFrom4([4]byte{}) {
				out = append(out, nftables.SetElement{Key: []byte{0, 0, 0, 0}, IntervalEnd: true})
			}
			out = append(out, nftables.SetElement{Key: a[:]})
			if next := e.end.Next(); next.IsValid() && next.Is4() {
				b := next.As4()
				out = append(out, nftables.SetElement{Key: b[:], IntervalEnd: true})
			}
		case setAddrPort:
			out = append(out, nftables.SetElement{Key: append(a[:], byte(e.port>>8), byte(e.port), 0, 0)})
		default:
			out = append(out, nftables.SetElement{Key: a[:]})
		}
	}
	return out
}
