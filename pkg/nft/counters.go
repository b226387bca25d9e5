package nft

import (
	"fmt"

	"github.com/google/nftables"
)

// DropCounter is the named counter of the forward chain's final drop: every
// packet the forward policy drops counts there (rate-limit drops do not).
const DropCounter = "dropped"

// Counter is the value of a named counter object.
type Counter struct {
	Packets, Bytes uint64
}

// PolicyCounter is the name of the counter object that counts packets
// accepted by the rules of policy (Rule.Policy).
func PolicyCounter(policy string) string { return "pol_" + ident(policy) }

// ServiceCounter is the name of the counter object that counts packets
// accepted towards service (Service.Name).
func ServiceCounter(service string) string { return "svc_" + ident(service) }

// Counters reads all named counter objects of the table, keyed by name.
// Counters keep their values across incremental updates and are carried
// over (as read just before) when the table is replaced.
func (a *Applier) Counters() (map[string]Counter, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	conn, err := a.conn()
	if err != nil {
		return nil, err
	}
	m, err := readCounters(conn)
	if err != nil {
		_ = a.closeConn()
		return nil, err
	}
	return m, nil
}

func readCounters(conn *nftables.Conn) (map[string]Counter, error) {
	objs, err := conn.GetObjects(table())
	if err != nil {
		return nil, fmt.Errorf("list counters: %w", err)
	}
	m := map[string]Counter{}
	for _, o := range objs {
		if c, ok := o.(*nftables.CounterObj); ok {
			m[c.Name] = Counter{Packets: c.Packets, Bytes: c.Bytes}
		}
	}
	return m, nil
}
