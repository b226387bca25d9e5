package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/store"
)

// Bounds of waiting for changes: how long a committed change may take to arrive, and how long to
// watch for a change that must not come.
const (
	deliveryTimeout = 10 * time.Second
	quietPeriod     = 300 * time.Millisecond
)

// WantChanges fails unless the next changes on ch are exactly want, each within a bounded time.
func WantChanges(t *testing.T, ch <-chan store.Change, want ...store.Change) {
	t.Helper()
	var got []store.Change
	timer := time.NewTimer(deliveryTimeout)
	defer timer.Stop()
	for len(got) < len(want) {
		select {
		case c, ok := <-ch:
			if !ok {
				t.Fatalf("channel closed after %v, want %v", got, want)
			}
			got = append(got, c)
		case <-timer.C:
			t.Fatalf("after %v got %v, want %v", deliveryTimeout, got, want)
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
}

// WantQuiet fails if a change arrives on ch within d.
func WantQuiet(t *testing.T, ch <-chan store.Change, d time.Duration) {
	t.Helper()
	select {
	case c, ok := <-ch:
		t.Errorf("unexpected change %+v (open %v)", c, ok)
	case <-time.After(d):
	}
}

// WantClosed fails unless ch is closed within a bounded time; pending changes are discarded.
func WantClosed(t *testing.T, ch <-chan store.Change) {
	t.Helper()
	timer := time.NewTimer(deliveryTimeout)
	defer timer.Stop()
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-timer.C:
			t.Fatalf("channel not closed %v after its context ended", deliveryTimeout)
		}
	}
}

func testSubscribe(t *testing.T, s store.Store) {
	ctx1, cancel1 := context.WithCancel(testContext(t))
	defer cancel1()
	ctx2, cancel2 := context.WithCancel(testContext(t))
	defer cancel2()
	ch1, ch2 := s.Subscribe(ctx1), s.Subscribe(ctx2)
	machine := func(id string) store.Change { return store.Change{Kind: store.KindMachine, ID: id} }

	write(t, s, func(ctx context.Context, tx store.Tx) error {
		return tx.Machines().Create(ctx, machineWithMACs("m1", "aa:01"))
	})
	WantChanges(t, ch1, machine("m1"))
	WantChanges(t, ch2, machine("m1"))

	m1 := mustGet(t, s, machines, "m1")
	m1.Waiting = true
	write(t, s, func(ctx context.Context, tx store.Tx) error { return tx.Machines().Update(ctx, m1) })
	write(t, s, func(ctx context.Context, tx store.Tx) error { return tx.Machines().Delete(ctx, "m1") })
	WantChanges(t, ch1, machine("m1"), machine("m1"))

	// A rolled-back write delivers nothing, not even its explicit notifications.
	rollback := errors.New("rollback")
	ctx := testContext(t)
	err := s.Write(ctx, func(tx store.Tx) error {
		if err := tx.Machines().Create(ctx, machineWithMACs("m2", "aa:02")); err != nil {
			return err
		}
		tx.Notify(store.KindSwitch, "sw-rolled-back")
		return rollback
	})
	wantErr(t, "write", err, rollback)
	WantQuiet(t, ch1, quietPeriod)

	// The next committed write is what arrives next: explicit notifications and several entities
	// of one transaction, in order.
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		tx.Notify(store.KindSwitch, "sw1")
		for _, id := range []string{"m3", "m4"} {
			if err := tx.Machines().Create(ctx, &api.Machine{Meta: api.Meta{ID: id}}); err != nil {
				return err
			}
		}
		return nil
	})
	want := []store.Change{{Kind: store.KindSwitch, ID: "sw1"}, machine("m3"), machine("m4")}
	WantChanges(t, ch1, want...)
	WantChanges(t, ch2, append([]store.Change{machine("m1"), machine("m1")}, want...)...)

	// Cancelling one subscription closes its channel and leaves the other working.
	cancel1()
	WantClosed(t, ch1)
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		return tx.Machines().Create(ctx, &api.Machine{Meta: api.Meta{ID: "m5"}})
	})
	WantChanges(t, ch2, machine("m5"))
	cancel2()
	WantClosed(t, ch2)
}
