package dnsproxy

import (
	"container/heap"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Entry is one address in a set and when it expires.
type Entry struct {
	Addr    netip.Addr
	Expires time.Time
}

// entryKey identifies an address learned through one selector. Addresses are
// kept per selector (not per set) so that replacing a selector drops exactly
// what it learned, even when another selector feeds the same set.
type entryKey struct {
	sel  Selector
	addr netip.Addr
}

type entry struct {
	key     entryKey
	expires time.Time
	index   int // in the expiry heap
}

// expiryHeap orders entries by expiry; each entry is in it exactly once, so
// its size is bounded by the number of live addresses, however often they
// are refreshed.
type expiryHeap []*entry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].expires.Before(h[j].expires) }
func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *expiryHeap) Push(x any) {
	e := x.(*entry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.index = -1
	return e
}

// store holds the learned addresses with their expiry.
type store struct {
	mu      sync.Mutex
	sels    []Selector        // current selectors, in the caller's order
	active  map[Selector]bool // the same as a set
	entries map[entryKey]*entry
	expiry  expiryHeap

	changed chan struct{} // buffered 1: coalesced change notifications
	wake    chan struct{} // buffered 1: the earliest expiry moved earlier
}

func newStore() *store {
	return &store{
		active:  map[Selector]bool{},
		entries: map[entryKey]*entry{},
		changed: make(chan struct{}, 1),
		wake:    make(chan struct{}, 1),
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// same reports whether sels are the selectors in force, in the same order.
func (s *store) same(sels []Selector) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Equal(s.sels, sels)
}

// setSelectors replaces the selectors and drops what removed ones learned.
func (s *store) setSelectors(sels []Selector) {
	active := make(map[Selector]bool, len(sels))
	for _, sel := range sels {
		active[sel] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sels = slices.Clone(sels)
	s.active = active
	for k, e := range s.entries {
		if !active[k.sel] {
			heap.Remove(&s.expiry, e.index)
			delete(s.entries, k)
		}
	}
	signal(s.changed)
}

// record adds or refreshes addr for sel until now+ttl. It reports whether the
// address is new to the selector (or had already expired).
func (s *store) record(now time.Time, sel Selector, addr netip.Addr, ttl time.Duration) bool {
	expires := now.Add(ttl)
	k := entryKey{sel: sel, addr: addr}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.active[sel] {
		return false // replaced while the query was in flight
	}
	if e, ok := s.entries[k]; ok {
		fresh := !e.expires.After(now)
		if expires.After(e.expires) {
			e.expires = expires
			heap.Fix(&s.expiry, e.index)
		}
		if fresh {
			signal(s.changed)
		}
		return fresh
	}
	e := &entry{key: k, expires: expires}
	heap.Push(&s.expiry, e)
	s.entries[k] = e
	if e.index == 0 {
		signal(s.wake)
	}
	signal(s.changed)
	return true
}

// expire drops entries that expired at or before now and returns the next
// expiry (zero when there is none).
func (s *store) expire(now time.Time) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	removed := false
	for len(s.expiry) > 0 && !s.expiry[0].expires.After(now) {
		e := heap.Pop(&s.expiry).(*entry)
		delete(s.entries, e.key)
		removed = true
	}
	if removed {
		signal(s.changed)
	}
	if len(s.expiry) == 0 {
		return time.Time{}
	}
	return s.expiry[0].expires
}

// entriesAt returns the unexpired entries per set at now, each set sorted by
// address and deduplicated (keeping the latest expiry); every selector's set
// is present.
func (s *store) entriesAt(now time.Time) map[string][]Entry {
	s.mu.Lock()
	out := make(map[string][]Entry, len(s.sels))
	for _, sel := range s.sels {
		if out[sel.Set] == nil {
			out[sel.Set] = []Entry{}
		}
	}
	for k, e := range s.entries {
		if e.expires.After(now) {
			out[k.sel.Set] = append(out[k.sel.Set], Entry{Addr: k.addr, Expires: e.expires})
		}
	}
	s.mu.Unlock()
	for set, es := range out {
		slices.SortFunc(es, func(a, b Entry) int {
			if c := a.Addr.Compare(b.Addr); c != 0 {
				return c
			}
			return b.Expires.Compare(a.Expires) // latest first, kept by Compact
		})
		out[set] = slices.CompactFunc(es, func(a, b Entry) bool { return a.Addr == b.Addr })
	}
	return out
}

// selectors returns a copy of the current selectors.
func (s *store) selectors() []Selector {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.sels)
}

// run expires entries on time until done is closed.
func (s *store) run(done <-chan struct{}) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		next := s.expire(time.Now())
		if next.IsZero() {
			t.Reset(time.Hour) // nothing to expire; a new entry wakes us
		} else {
			t.Reset(time.Until(next))
		}
		select {
		case <-done:
			return
		case <-t.C:
		case <-s.wake:
		}
	}
}
