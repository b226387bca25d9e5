package nft

import (
	"errors"
	"fmt"
	"sync"

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
// it applied so that a change rewrites only the sets and chains that differ,
// and keeps one netlink connection open (entering the namespace costs ~10 ms
// per dial). Its methods may be called concurrently (they are serialised);
// Close releases the connection.
type Applier struct {
	cfg  Config
	mu   sync.Mutex
	last *compiled // what the kernel holds; nil = unknown
	nl   *nftables.Conn
}

// Result says what an Apply did.
type Result struct {
	Full   bool // the whole table was replaced
	Sets   int  // sets added, deleted or whose elements were updated (without a full replace)
	Chains int  // chains added, deleted or flushed and refilled (without a full replace)
}

// NewApplier returns an Applier for cfg.
func NewApplier(cfg Config) *Applier { return &Applier{cfg: cfg} }

// Reset forgets the last applied ruleset, so the next Apply replaces the
// whole table (e.g. after someone else changed it).
func (a *Applier) Reset() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.last = nil
}

// Apply validates rs and installs it in one atomic batch. When the last
// applied ruleset is known and its hooked chains are unchanged, the batch
// only adds, deletes or updates the sets, counters and chains that differ
// (a policy change rewrites that policy's chain); otherwise, or when such an
// update fails (e.g. someone else changed the table), the table is replaced
// whole. Invalid input is rejected before anything is sent; a batch the
// kernel rejects leaves the old ruleset in place.
func (a *Applier) Apply(rs *Ruleset) (Result, error) {
	c, err := compile(rs)
	if err != nil {
		return Result{}, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.apply(c)
}

func (a *Applier) apply(c *compiled) (Result, error) {
	var incErr error
	if a.last != nil && incremental(a.last, c) {
		conn, err := a.conn()
		if err != nil {
			return Result{}, err
		}
		res, err := updateTable(conn, a.last, c)
		if err == nil {
			a.last = c
			return res, nil
		}
		// The kernel's table is still the old one (the batch is atomic),
		// but retry from a known state: a fresh connection, a full replace.
		incErr = err
		a.last = nil
		_ = a.closeConn()
	}
	conn, err := a.conn()
	if err != nil {
		return Result{}, errors.Join(incErr, err)
	}
	// Keep counters monotonic across replaces (and restarts); a missing
	// table just has none.
	prev, _ := readCounters(conn)
	if err := replace(conn, c, prev); err != nil {
		a.last = nil
		_ = a.closeConn()
		return Result{}, errors.Join(incErr, err)
	}
	a.last = c
	return Result{Full: true}, nil
}

// Close closes the netlink connection; the Applier may be used again.
func (a *Applier) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
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
	addr := nftables.TypeIPAddr
	if s.v6 {
		addr = nftables.TypeIP6Addr
	}
	set := &nftables.Set{Table: t, Name: s.name, KeyType: addr}
	switch s.kind {
	case setPrefixes:
		set.Interval = true
	case setAddrPort:
		set.KeyType = nftables.MustConcatSetType(addr, nftables.TypeInetService)
		set.Concatenation = true
	}
	return set
}

// replace deletes and recreates the table in one batch; counters start
// from the values in prev.
func replace(conn *nftables.Conn, c *compiled, prev map[string]Counter) error {
	t := table()
	conn.AddTable(t)
	conn.DelTable(t)
	conn.AddTable(t)
	for _, n := range c.counters {
		conn.AddObj(&nftables.CounterObj{Table: t, Name: n, Packets: prev[n].Packets, Bytes: prev[n].Bytes})
	}
	sets := map[string]*nftables.Set{}
	for _, s := range c.sets {
		set, err := addSet(conn, t, s)
		if err != nil {
			return err
		}
		sets[s.name] = set
	}
	chains := map[string]*nftables.Chain{}
	for _, ch := range c.chains {
		chains[ch.name] = conn.AddChain(nfChain(t, ch))
	}
	for _, ch := range c.chains {
		addRules(conn, chains[ch.name], ch.rules, sets)
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("replace table: %w", err)
	}
	return nil
}

func addSet(conn *nftables.Conn, t *nftables.Table, s setSpec) (*nftables.Set, error) {
	set := nfSet(t, s)
	if err := conn.AddSet(set, nil); err != nil {
		return nil, fmt.Errorf("add set %s: %w", s.name, err)
	}
	if err := addElems(conn, set, nfElems(s.kind, s.elems, true)); err != nil {
		return nil, err
	}
	return set, nil
}

func nfChain(t *nftables.Table, ch chainSpec) *nftables.Chain {
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
	return nc
}

// addRules appends rules to chain; lookups of sets created in the same
// batch (in sets) refer to them by ID as well as by name.
func addRules(conn *nftables.Conn, chain *nftables.Chain, rules [][]stmt, sets map[string]*nftables.Set) {
	for _, r := range rules {
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
		conn.AddRule(&nftables.Rule{Table: chain.Table, Chain: chain, Exprs: es})
	}
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
// start with an interval end at the zero address, like nft does.
func nfElems(k setKind, es []elem, whole bool) []nftables.SetElement {
	var out []nftables.SetElement
	for i, e := range es {
		a := e.ip.AsSlice()
		switch k {
		case setPrefixes:
			if i == 0 && whole && !e.ip.IsUnspecified() {
				out = append(out, nftables.SetElement{Key: make([]byte, len(a)), IntervalEnd: true})
			}
			out = append(out, nftables.SetElement{Key: a})
			if next := e.end.Next(); next.IsValid() {
				out = append(out, nftables.SetElement{Key: next.AsSlice(), IntervalEnd: true})
			}
		case setAddrPort:
			out = append(out, nftables.SetElement{Key: append(a, byte(e.port>>8), byte(e.port), 0, 0)})
		default:
			out = append(out, nftables.SetElement{Key: a})
		}
	}
	return out
}
