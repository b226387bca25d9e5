package ccm

import (
	"net/netip"
	"sync"
)

// ipCache is metal-ccm's view of the cluster's Service IPs (address → network), so that a config
// write after one Service changed does not list every IP of the project. The load balancer updates
// it after each allocation and release; a full list from metal-api replaces it periodically (and
// before the first write). Changes made while such a list is in flight win over the list: each
// change carries a sequence number, and replace keeps the changes newer than the list's start.
type ipCache struct {
	mu     sync.Mutex
	seq    uint64
	ips    map[netip.Addr]cached
	tombs  map[netip.Addr]uint64 // released addresses → seq of the release
	loaded bool
}

type cached struct {
	network string
	seq     uint64
}

func newIPCache() *ipCache {
	return &ipCache{ips: map[netip.Addr]cached{}, tombs: map[netip.Addr]uint64{}}
}

func (c *ipCache) set(a netip.Addr, network string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	c.ips[a] = cached{network: network, seq: c.seq}
	delete(c.tombs, a)
}

func (c *ipCache) drop(a netip.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	delete(c.ips, a)
	c.tombs[a] = c.seq
}

// begin marks the start of a full list.
func (c *ipCache) begin() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seq
}

// replace installs a full list that started at begin's mark, keeping the changes made since.
func (c *ipCache) replace(start uint64, listed map[netip.Addr]string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	next := make(map[netip.Addr]cached, len(listed))
	for a, n := range listed {
		if s, released := c.tombs[a]; released && s > start {
			continue
		}
		next[a] = cached{network: n, seq: start}
	}
	for a, e := range c.ips {
		if e.seq > start {
			next[a] = e
		}
	}
	c.ips, c.tombs, c.loaded = next, map[netip.Addr]uint64{}, true
}

// pools returns the addresses by network, and whether a full list was ever installed.
func (c *ipCache) pools() (map[string][]netip.Addr, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string][]netip.Addr{}
	for a, e := range c.ips {
		out[e.network] = append(out[e.network], a)
	}
	return out, c.loaded
}
