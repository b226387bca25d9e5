package storetest

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/store"
)

// testConcurrentAcquire takes values from one pool in many concurrent transactions: every value is
// handed out once and the lowest-free rule leaves no gaps.
func testConcurrentAcquire(t *testing.T, s store.Store) {
	const workers, each, pool = 50, 4, "concurrent"
	ctx := testContext(t)
	var (
		mu          sync.Mutex
		got         = map[string][]uint64{}
		calls       atomic.Int64
		maxAttempts maxInt
		wg          sync.WaitGroup
		errs        = make(chan error, workers*each)
		values      []uint64
	)
	for w := range workers {
		owner := fmt.Sprintf("w%02d", w)
		wg.Go(func() {
			for range each {
				var v uint64
				attempts := int64(0)
				err := s.Write(ctx, func(tx store.Tx) error {
					calls.Add(1)
					attempts++
					var err error
					v, err = tx.Acquire(ctx, pool, 1, 10000, 0, owner)
					return err
				})
				maxAttempts.Max(attempts)
				if err != nil {
					errs <- fmt.Errorf("%s: %w", owner, err)
					return
				}
				mu.Lock()
				got[owner] = append(got[owner], v)
				values = append(values, v)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("acquire: %v", err)
	}
	t.Logf("%d values in %d attempts, at most %d for one", len(values), calls.Load(), maxAttempts.Load())

	slices.Sort(values)
	want := make([]uint64, workers*each)
	for i := range want {
		want[i] = uint64(i + 1)
	}
	if diff := cmp.Diff(want, values); diff != "" {
		t.Errorf("acquired values, want 1..%d each once (-want +got):\n%s", len(want), diff)
	}
	for owner, vs := range got {
		slices.Sort(vs)
		if diff := cmp.Diff(vs, held(t, s, pool, owner)); diff != "" {
			t.Errorf("held by %s (-acquired +held):\n%s", owner, diff)
		}
	}
}

// testConcurrentIncrement runs read-modify-write increments of one counter from many goroutines:
// without version checks and retries, increments would be lost.
func testConcurrentIncrement(t *testing.T, s store.Store) {
	const workers, each, id = 20, 10, "counter"
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		return tx.Partitions().Create(ctx, &api.Partition{Meta: api.Meta{ID: id}, Labels: map[string]string{"n": "0"}})
	})
	ctx := testContext(t)
	var (
		wg          sync.WaitGroup
		calls       atomic.Int64
		maxAttempts maxInt
		errs        = make(chan error, workers*each)
	)
	for range workers {
		wg.Go(func() {
			for range each {
				attempts := int64(0)
				err := s.Write(ctx, func(tx store.Tx) error {
					calls.Add(1)
					attempts++
					p, err := tx.Partitions().Get(ctx, id)
					if err != nil {
						return err
					}
					n, err := strconv.Atoi(p.Labels["n"])
					if err != nil {
						return err
					}
					p.Labels["n"] = strconv.Itoa(n + 1)
					return tx.Partitions().Update(ctx, p)
				})
				maxAttempts.Max(attempts)
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("increment: %v", err)
	}
	p := mustGet(t, s, partitions, id)
	t.Logf("%d increments in %d attempts, at most %d for one", workers*each, calls.Load(), maxAttempts.Load())
	if want := strconv.Itoa(workers * each); p.Labels["n"] != want {
		t.Errorf("counter = %s, want %s", p.Labels["n"], want)
	}
	if want := int64(1 + workers*each); p.Version != want {
		t.Errorf("version = %d, want %d", p.Version, want)
	}
}

// maxInt is a concurrent maximum.
type maxInt struct{ v atomic.Int64 }

func (m *maxInt) Max(n int64) {
	for {
		old := m.v.Load()
		if n <= old || m.v.CompareAndSwap(old, n) {
			return
		}
	}
}

func (m *maxInt) Load() int64 { return m.v.Load() }
