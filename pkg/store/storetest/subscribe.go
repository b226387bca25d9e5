package storetest

import (
	"context"
	"errors"
	"fmt"
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

// testSlowSubscriber checks that a subscriber that does not read does not block writers, and is
// told that it missed changes.
func testSlowSubscriber(t *testing.T, s store.Store) {
	const burst = 3000
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	ch := s.Subscribe(ctx)
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		for i := range burst {
			tx.Notify(store.KindSwitch, fmt.Sprintf("sw-%04d", i))
		}
		return nil
	})
	// Delivery may be asynchronous (PostgreSQL): wait until the unread channel is full, then give
	// the rest of the burst a moment to overflow it.
	deadline := time.Now().Add(deliveryTimeout)
	for len(ch) < cap(ch) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d changes buffered after %v; want a full buffer", len(ch), burst, deliveryTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(quietPeriod)
	var got []store.Change
	for len(ch) > 0 {
		got = append(got, <-ch)
	}
	gaps := 0
	for _, c := range got {
		if c == (store.Change{}) {
			gaps++
		}
	}
	if gaps == 0 || len(got) >= burst {
		t.Errorf("got %d changes with %d gap signals from a burst of %d; want fewer and a gap signal", len(got), gaps, burst)
	}
	if last := got[len(got)-1]; last != (store.Change{}) {
		t.Errorf("last change %+v, want the gap signal", last)
	}

	// Once drained, the subscriber gets changes again.
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		tx.Notify(store.KindSwitch, "after")
		return nil
	})
	WantChanges(t, ch, store.Change{Kind: store.KindSwitch, ID: "after"})
}
