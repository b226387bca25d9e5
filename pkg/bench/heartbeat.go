package bench

import (
	"context"
	"sync"
	"time"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/bootrpc"
	"github.com/metalforge/metalforge/pkg/bootrpc/bootpb"
)

type heartbeats struct {
	wg       sync.WaitGroup
	mu       sync.Mutex
	sent     int
	failures int
}

// startHeartbeats sends an Alive event for every machine once per cfg.Heartbeat, spread evenly,
// over the gRPC boot service of the replicas, as waiting hammers do.
func startHeartbeats(ctx context.Context, addrs []string, cfg Config) *heartbeats {
	h := &heartbeats{}
	interval := cfg.Heartbeat / time.Duration(cfg.Machines)
	for r, addr := range addrs {
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			c, closer, err := bootrpc.Dial(ctx, addr, token)
			if err != nil {
				h.fail()
				return
			}
			defer closer.Close()
			t := time.NewTicker(interval * time.Duration(len(addrs)))
			defer t.Stop()
			for i := r; ; i += len(addrs) {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				_, err := c.Event(ctx, &bootpb.EventRequest{MachineId: machineID(i % cfg.Machines), Event: api.EventAlive})
				if ctx.Err() != nil {
					return
				}
				h.mu.Lock()
				h.sent++
				if err != nil {
					h.failures++
				}
				h.mu.Unlock()
			}
		}()
	}
	return h
}

func (h *heartbeats) fail() {
	h.mu.Lock()
	h.failures++
	h.mu.Unlock()
}

func (h *heartbeats) wait() (int, int) {
	h.wg.Wait()
	return h.sent, h.failures
}
