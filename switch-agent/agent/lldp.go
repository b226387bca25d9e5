package agent

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/metalforge/metalforge/pkg/fabric"
	"github.com/metalforge/metalforge/pkg/lldp"
)

// locator is implemented by devices whose ports move between network namespaces (nsvrf).
type locator interface {
	PortNetns(port string) (string, error)
}

// neighbors are the LLDP neighbours per port, each valid until its TTL runs out.
type neighbors struct {
	mu  sync.Mutex
	nbs map[string]neighbor
}

type neighbor struct {
	fabric.SwitchNeighbor
	expires time.Time
}

func newNeighbors() *neighbors { return &neighbors{nbs: map[string]neighbor{}} }

func (n *neighbors) set(port string, f lldp.Neighbor) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.nbs[port] = neighbor{fabric.SwitchNeighbor{Port: port, ChassisID: f.ChassisID, PortID: f.PortID, SystemName: f.SystemName},
		time.Now().Add(time.Duration(f.TTL) * time.Second)}
}

func (n *neighbors) list() []fabric.SwitchNeighbor {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []fabric.SwitchNeighbor
	for port, nb := range n.nbs {
		if time.Now().After(nb.expires) {
			delete(n.nbs, port)
			continue
		}
		out = append(out, nb.SwitchNeighbor)
	}
	slices.SortFunc(out, func(a, b fabric.SwitchNeighbor) int { return strings.Compare(a.Port, b.Port) })
	return out
}

// lldpPort announces the switch on one port and learns its neighbour, re-opening the socket in
// whatever namespace the port has moved to.
func (a *Agent) lldpPort(ctx context.Context, port string, log *slog.Logger) {
	var conn *lldp.Conn
	var ns string
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	next := time.Now()
	for ctx.Err() == nil {
		where := ""
		if l, ok := a.cfg.Device.(locator); ok {
			var err error
			if where, err = l.PortNetns(port); err != nil {
				log.Debug("lldp port not found", "port", port, "err", err)
				sleep(ctx, time.Second)
				continue
			}
		}
		if conn == nil || where != ns {
			if conn != nil {
				conn.Close()
				conn = nil
			}
			c, err := lldp.Open(where, port)
			if err != nil {
				log.Debug("lldp open failed", "port", port, "err", err)
				sleep(ctx, time.Second)
				continue
			}
			conn, ns, next = c, where, time.Now()
		}
		if !time.Now().Before(next) {
			f := lldp.Neighbor{ChassisID: conn.MAC().String(), PortID: port, SystemName: a.cfg.SwitchID,
				TTL: uint16(4 * a.cfg.LLDPInterval / time.Second)}
			if err := conn.Send(f); err != nil {
				log.Debug("lldp send failed", "port", port, "err", err)
				conn.Close()
				conn = nil
				continue
			}
			next = time.Now().Add(a.cfg.LLDPInterval)
		}
		// Wake at least every second to notice a port that moved.
		f, err := conn.Receive(time.Now().Add(min(time.Until(next), time.Second)))
		switch {
		case err == nil:
			a.lldp.set(port, f)
		case errors.Is(err, lldp.ErrTimeout):
		default:
			log.Debug("lldp receive failed", "port", port, "err", err)
			conn.Close()
			conn = nil
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
