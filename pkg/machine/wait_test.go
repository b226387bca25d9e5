package machine_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/apierror"
	"github.com/metalforge/metalforge/pkg/lifecycle"
	"github.com/metalforge/metalforge/pkg/machine"
	"github.com/metalforge/metalforge/pkg/store"
)

// bound is how long a test waits for something that should happen promptly. Services recheck only
// every hour, so what happens within it was woken by a change notification.
const bound = 15 * time.Second

type waitResult struct {
	spec *api.InstallSpec
	err  error
}

// startWait calls Wait in a goroutine and returns where its result arrives.
func startWait(ctx context.Context, svc *machine.Service, id string) <-chan waitResult {
	done := make(chan waitResult, 1)
	go func() {
		spec, err := svc.Wait(ctx, id)
		done <- waitResult{spec, err}
	}()
	return done
}

// awaitWaiting polls the store until the machine waits: Wait has subscribed to changes by then.
func (f *fixture) awaitWaiting(id string, done <-chan waitResult) {
	f.t.Helper()
	deadline := time.Now().Add(bound)
	for time.Now().Before(deadline) {
		select {
		case r := <-done:
			f.t.Fatalf("Wait returned before an allocation: %+v, %v", r.spec, r.err)
		default:
		}
		if f.get(id).Waiting && lifecycle.State(f.eventLog(id)) == api.EventWaiting {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	f.t.Fatalf("machine %s did not start waiting within %v", id, bound)
}

// result returns Wait's result, failing the test when it takes longer than bound.
func result(t *testing.T, done <-chan waitResult) waitResult {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(bound):
		t.Fatalf("Wait did not return within %v", bound)
		return waitResult{}
	}
}

// registered registers machine i without making it wait.
func (f *fixture) registered(i int) string {
	f.t.Helper()
	return f.register(f.inventory(i)).ID
}

func TestWait(t *testing.T) {
	f := newFixture(t, fixtureConfig{})
	id := f.registered(0)
	f.write(func(tx store.Tx) error {
		return tx.FilesystemLayouts().Create(f.ctx, &api.FilesystemLayout{Meta: api.Meta{ID: "default"},
			Constraints: api.LayoutConstraints{Sizes: []string{sizeLarge}},
			Filesystems: []api.Filesystem{{Device: "/dev/nvme0n1p2", Format: "ext4", Path: "/"}}})
	})
	done := startWait(f.ctx, f.svc, id)
	f.awaitWaiting(id, done)
	select {
	case r := <-done:
		t.Fatalf("Wait returned without an allocation: %+v, %v", r.spec, r.err)
	case <-time.After(100 * time.Millisecond):
	}

	req := f.req()
	req.FilesystemLayoutID = "default"
	m := f.allocate(req)
	if m.ID != id {
		t.Fatalf("allocated %s, want the waiting %s", m.ID, id)
	}
	r := result(t, done)
	if r.err != nil {
		t.Fatal(r.err)
	}
	stored := f.get(id)
	if stored.Waiting || stored.PreAllocated {
		t.Errorf("after pick-up: waiting %v, preallocated %v; want both false", stored.Waiting, stored.PreAllocated)
	}
	if diff := cmp.Diff(stored, &r.spec.Machine); diff != "" {
		t.Errorf("install spec machine differs from the stored one (-stored +spec):\n%s", diff)
	}
	if r.spec.Image.ID != imgUbuntu || r.spec.Layout == nil || r.spec.Layout.ID != "default" {
		t.Errorf("install spec image %q layout %+v", r.spec.Image.ID, r.spec.Layout)
	}
	if !cmp.Equal(r.spec.DNSServers, []string{"1.1.1.1", "8.8.8.8"}) || !cmp.Equal(r.spec.NTPServers, []string{"time.cloudflare.com"}) {
		t.Errorf("install spec dns %v ntp %v", r.spec.DNSServers, r.spec.NTPServers)
	}

	// A reconnecting hammer of an allocated machine gets the spec at once.
	again, err := f.svc.Wait(f.ctx, id)
	if err != nil || again.Machine.ID != id {
		t.Errorf("Wait on an allocated machine: %v", err)
	}
}

func TestWaitRefused(t *testing.T) {
	f := newFixture(t, fixtureConfig{})
	id := f.registered(0)
	if _, err := f.svc.SetState(f.ctx, id, api.MachineStateRequest{Value: api.StateLocked, Description: "hold"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Wait(f.ctx, id); !errors.Is(err, apierror.ErrUnavailable) {
		t.Errorf("Wait of a locked machine: %v, want unavailable", err)
	}
	if f.get(id).Waiting {
		t.Errorf("a locked machine is waiting")
	}
	if _, err := f.svc.Wait(f.ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Wait of an unknown machine: %v, want not found", err)
	}
}

func TestWaitCancelled(t *testing.T) {
	f := newFixture(t, fixtureConfig{})
	id := f.registered(0)
	for round := range 2 {
		ctx, cancel := context.WithCancel(f.ctx)
		done := startWait(ctx, f.svc, id)
		f.awaitWaiting(id, done)
		cancel()
		r := result(t, done)
		if !errors.Is(r.err, context.Canceled) || r.spec != nil {
			t.Fatalf("round %d: cancelled Wait = %+v, %v; want context.Canceled", round, r.spec, r.err)
		}
		if f.get(id).Waiting {
			t.Errorf("round %d: the hammer went away, but the machine still waits", round)
		}
		if _, err := f.svc.Allocate(f.ctx, f.req(), ""); !errors.Is(err, apierror.ErrUnavailable) {
			t.Errorf("round %d: allocate with no hammer waiting: %v, want unavailable", round, err)
		}
	}
	// The reconnect did not record a second Waiting event.
	n := 0
	for _, e := range f.eventLog(id).Events {
		if e.Event == api.EventWaiting {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d Waiting events after a reconnect, want 1", n)
	}
}

// TestWaitIgnoresOtherChanges: a waiting hammer re-reads its machine when that machine changes, not
// on every change anywhere (each re-read is a write transaction, and a partition has many waiting
// hammers).
func TestWaitIgnoresOtherChanges(t *testing.T) {
	f := newFixture(t, fixtureConfig{machines: 5})
	id := f.registered(10)
	counting := &countingStore{Store: f.store}
	waiter := f.service(counting)
	done := startWait(f.ctx, waiter, id)
	f.awaitWaiting(id, done)

	const unrelated = 40
	for i := range unrelated {
		other := f.machines[i%len(f.machines)].ID
		if err := f.svc.Event(f.ctx, other, api.EventRequest{Event: api.EventAlive}); err != nil {
			t.Fatal(err)
		}
	}
	req := f.req()
	req.MachineID = id
	f.allocate(req)
	if r := result(t, done); r.err != nil || r.spec.Machine.ID != id {
		t.Fatalf("Wait = %+v, %v", r.spec, r.err)
	}
	writes, _, _ := counting.counts()
	// Start waiting, look once, look again for each of the two machine updates of the start (they
	// arrive as changes), and for the allocation: 5, plus one of slack.
	if writes > 6 {
		t.Errorf("the waiting service ran %d write transactions while %d unrelated changes happened, want at most 6", writes, unrelated)
	}
	t.Logf("%d write transactions by the waiting service", writes)
}

// TestWaitAcrossReplicas: the hammer waits on replica A, the allocation happens on replica B, and the
// PostgreSQL change notification wakes A.
func TestWaitAcrossReplicas(t *testing.T) {
	var dsn string
	f := newFixture(t, fixtureConfig{backend: postgresWithDSN(&dsn)})
	id := f.registered(0)
	sB, _ := openPostgres(t, dsn)
	a, b := f.svc, f.service(sB)

	// Wait on A, allocate on B.
	done := startWait(f.ctx, a, id)
	f.awaitWaiting(id, done)
	req := f.req()
	req.MachineID = id
	start := time.Now()
	if _, err := b.Allocate(f.ctx, req, ""); err != nil {
		t.Fatal(err)
	}
	r := result(t, done)
	if r.err != nil || r.spec.Machine.ID != id || r.spec.Machine.Allocation == nil {
		t.Fatalf("Wait on replica A = %+v, %v", r.spec, r.err)
	}
	t.Logf("replica A picked up replica B's allocation after %v", time.Since(start).Round(time.Millisecond))

	// And the other way round, on a second machine.
	id2 := f.registered(1)
	done = startWait(f.ctx, b, id2)
	f.awaitWaiting(id2, done)
	req.MachineID = id2
	if _, err := a.Allocate(f.ctx, req, ""); err != nil {
		t.Fatal(err)
	}
	if r := result(t, done); r.err != nil || r.spec.Machine.ID != id2 {
		t.Fatalf("Wait on replica B = %+v, %v", r.spec, r.err)
	}
}

// hookStore runs a hook before each write transaction, with the number of the write.
type hookStore struct {
	store.Store
	mu     sync.Mutex
	writes int
	before func(n int)
}

func (h *hookStore) Write(ctx context.Context, fn func(store.Tx) error) error {
	h.mu.Lock()
	h.writes++
	n := h.writes
	h.mu.Unlock()
	h.before(n)
	return h.Store.Write(ctx, fn)
}

// TestWaitCancelledWhileLooking: the hammer goes away while Wait looks for an allocation (its second
// write transaction); the machine must stop waiting all the same.
func TestWaitCancelledWhileLooking(t *testing.T) {
	f := newFixture(t, fixtureConfig{})
	id := f.registered(0)
	ctx, cancel := context.WithCancel(f.ctx)
	defer cancel()
	hooked := &hookStore{Store: f.store, before: func(n int) {
		if n == 2 { // 1 starts waiting, 2 is the first look
			cancel()
		}
	}}
	_, err := f.service(hooked).Wait(ctx, id)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait = %v, want context.Canceled", err)
	}
	if f.get(id).Waiting {
		t.Errorf("the hammer went away, but the machine still waits")
	}
}
