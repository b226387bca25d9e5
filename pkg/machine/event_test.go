package machine_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/apierror"
	"github.com/metalforge/metalforge/pkg/lifecycle"
	"github.com/metalforge/metalforge/pkg/store"
)

func (f *fixture) event(id, event string) {
	f.t.Helper()
	if err := f.svc.Event(f.ctx, id, api.EventRequest{Event: event}); err != nil {
		f.t.Fatalf("event %s of %s: %v", event, id, err)
	}
}

func TestEventInvalid(t *testing.T) {
	f := newFixture(t, fixtureConfig{machines: 1})
	before := f.dump()
	for _, e := range []string{"", "Rebooting", "phoned home", "Alive "} {
		if err := f.svc.Event(f.ctx, machineID(0), api.EventRequest{Event: e}); !errors.Is(err, apierror.ErrInvalid) {
			t.Errorf("Event(%q) = %v, want invalid", e, err)
		}
	}
	if err := f.svc.Event(f.ctx, "nope", api.EventRequest{Event: api.EventAlive}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("event of an unknown machine: %v, want not found", err)
	}
	if diff := cmp.Diff(before, f.dump()); diff != "" {
		t.Errorf("rejected events changed the store (-before +after):\n%s", diff)
	}
	if _, err := f.svc.EventLog(f.ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("event log of an unknown machine: %v, want not found", err)
	}
}

func TestEventLog(t *testing.T) {
	f := newFixture(t, fixtureConfig{machines: 1})
	id := machineID(0)
	f.clock.Advance(time.Second)
	if err := f.svc.Event(f.ctx, id, api.EventRequest{Event: api.EventInstalling, Message: "not allocated"}); err != nil {
		t.Fatal(err)
	}
	want := []api.ProvisioningEvent{
		{Time: t0, Event: api.EventRegistering, Message: "size " + sizeLarge},
		{Time: t0, Event: api.EventWaiting},
		{Time: t0.Add(time.Second), Event: api.EventInstalling, Message: "not allocated"},
	}
	log := f.eventLog(id)
	if diff := cmp.Diff(want, log.Events); diff != "" {
		t.Errorf("event log (-want +got):\n%s", diff)
	}
	if m := f.get(id); m.LastEvent == nil || *m.LastEvent != want[2] {
		t.Errorf("machine's last event %+v, want %+v", m.LastEvent, want[2])
	}

	// A machine created without the service has no log: an empty one is returned.
	f.write(func(tx store.Tx) error {
		return tx.Machines().Create(f.ctx, &api.Machine{Meta: api.Meta{ID: "bare"}, PartitionID: partitionID})
	})
	if log := f.eventLog("bare"); log.ID != "bare" || log.Events == nil || len(log.Events) != 0 {
		t.Errorf("event log of a machine without events: %+v", log)
	}
}

func TestPhonedHomeSucceeds(t *testing.T) {
	f := newFixture(t, fixtureConfig{machines: 1})
	m := f.allocate(f.req())
	for _, e := range []string{api.EventInstalling, api.EventBootingNewKernel} {
		f.event(m.ID, e)
		if f.get(m.ID).Allocation.Succeeded {
			t.Fatalf("succeeded after %s", e)
		}
	}
	f.event(m.ID, api.EventPhonedHome)
	got := f.get(m.ID)
	if !got.Allocation.Succeeded {
		t.Errorf("phoned home, but the allocation did not succeed")
	}
	if got.LastEvent.Event != api.EventPhonedHome || got.LastEvent.Unexpected {
		t.Errorf("last event %+v", got.LastEvent)
	}

	// Phoning home without an allocation succeeds nothing.
	f2 := newFixture(t, fixtureConfig{machines: 1})
	f2.event(machineID(0), api.EventPhonedHome)
	if m := f2.get(machineID(0)); m.Allocation != nil || !m.LastEvent.Unexpected {
		t.Errorf("free machine phoned home: allocation %v, unexpected %v", m.Allocation, m.LastEvent.Unexpected)
	}
}

func TestCrashLoopFlag(t *testing.T) {
	f := newFixture(t, fixtureConfig{})
	id := f.registered(0)
	for range 2 {
		for _, e := range []string{api.EventPXEBooting, api.EventPreparing, api.EventRegistering} {
			f.event(id, e)
		}
	}
	if m := f.get(id); !m.CrashLoop {
		t.Errorf("two incomplete provisioning cycles, but no crash loop: %+v", f.eventLog(id))
	}
	f.event(id, api.EventWaiting)
	if m := f.get(id); m.CrashLoop {
		t.Errorf("the machine reached Waiting, but stays in a crash loop")
	}
}

func TestHeartbeatsTouchTheLogOnly(t *testing.T) {
	f := newFixture(t, fixtureConfig{machines: 1})
	id := machineID(0)
	before := f.get(id)
	for range 5 {
		f.clock.Advance(10 * time.Second)
		f.event(id, api.EventAlive)
	}
	after := f.get(id)
	if diff := cmp.Diff(before, after); diff != "" {
		t.Errorf("heartbeats changed the machine (-before +after):\n%s", diff)
	}
	log := f.eventLog(id)
	want := []string{api.EventRegistering, api.EventWaiting, api.EventAlive}
	var got []string
	for _, e := range log.Events {
		got = append(got, e.Event)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if last := lifecycle.LastTime(log); !last.Equal(t0.Add(50 * time.Second)) {
		t.Errorf("last heartbeat at %v, want %v", last, t0.Add(50*time.Second))
	}
}

func TestCheckLiveliness(t *testing.T) {
	f := newFixture(t, fixtureConfig{machines: 3})
	alloc := f.allocate(f.req())
	var free []string
	for _, m := range f.machines {
		if m.ID != alloc.ID {
			free = append(free, m.ID)
		}
	}
	if n, err := f.svc.CheckLiveliness(f.ctx); err != nil || n != 0 {
		t.Fatalf("CheckLiveliness right away = %d, %v; want 0 changes", n, err)
	}

	f.clock.Advance(lifecycle.Timeout)
	if n, err := f.svc.CheckLiveliness(f.ctx); err != nil || n != 0 {
		t.Fatalf("CheckLiveliness at the timeout = %d, %v; want 0 changes", n, err)
	}
	f.clock.Advance(time.Second)
	n, err := f.svc.CheckLiveliness(f.ctx)
	if err != nil || n != 3 {
		t.Fatalf("CheckLiveliness after the timeout = %d, %v; want 3 changes", n, err)
	}
	want := map[string]string{alloc.ID: api.LivelinessUnknown, free[0]: api.LivelinessDead, free[1]: api.LivelinessDead}
	check := func(when string) {
		t.Helper()
		for id, w := range want {
			if got := f.get(id).Liveliness; got != w {
				t.Errorf("%s: machine %s is %s, want %s", when, id, got, w)
			}
			if got := f.eventLog(id).Liveliness; got != w {
				t.Errorf("%s: event log of %s says %s, want %s", when, id, got, w)
			}
		}
	}
	check("after silence")
	if n, err := f.svc.CheckLiveliness(f.ctx); err != nil || n != 0 {
		t.Errorf("second CheckLiveliness = %d, %v; want 0 changes", n, err)
	}
	// Dead machines are not allocated.
	if _, err := f.svc.Allocate(f.ctx, f.req(), ""); !errors.Is(err, apierror.ErrUnavailable) {
		t.Errorf("allocate with only dead machines: %v, want unavailable", err)
	}

	// A heartbeat brings a machine back at once.
	f.event(free[0], api.EventAlive)
	f.event(alloc.ID, api.EventAlive)
	want[free[0]], want[alloc.ID] = api.LivelinessAlive, api.LivelinessAlive
	check("after heartbeats")
	if m := f.allocate(f.req()); m.ID != free[0] {
		t.Errorf("allocated %s, want the live %s", m.ID, free[0])
	}
}

func TestFailedReclaim(t *testing.T) {
	f := newFixture(t, fixtureConfig{machines: 2})
	installed := func() string {
		t.Helper()
		m := f.allocate(f.req())
		phoneHome(t, f, m.ID)
		if _, err := f.svc.Free(f.ctx, m.ID); err != nil {
			t.Fatal(err)
		}
		return m.ID
	}
	oldOS, silent := installed(), installed()

	// The old OS of one answers: PXE did not happen.
	f.clock.Advance(time.Minute)
	f.event(oldOS, api.EventPhonedHome)
	if n, err := f.svc.CheckLiveliness(f.ctx); err != nil || n != 1 {
		t.Fatalf("CheckLiveliness = %d, %v; want 1 change", n, err)
	}
	if m := f.get(oldOS); !m.FailedMachineReclaim || m.Liveliness != api.LivelinessAlive {
		t.Errorf("freed machine phoned home from its old OS: failed reclaim %v, liveliness %s", m.FailedMachineReclaim, m.Liveliness)
	}
	if f.get(silent).FailedMachineReclaim {
		t.Errorf("a reclaim in progress is flagged as failed")
	}
	// More phone-homes from the old OS keep the flag.
	f.clock.Advance(time.Minute)
	f.event(oldOS, api.EventPhonedHome)
	if !f.get(oldOS).FailedMachineReclaim {
		t.Errorf("the old OS phoned home again and the failed reclaim was cleared")
	}

	// The other never comes back.
	f.clock.Advance(lifecycle.Timeout)
	if _, err := f.svc.CheckLiveliness(f.ctx); err != nil {
		t.Fatal(err)
	}
	if m := f.get(silent); !m.FailedMachineReclaim || m.Liveliness != api.LivelinessDead {
		t.Errorf("silent after reclaim: failed reclaim %v, liveliness %s; want true, Dead", m.FailedMachineReclaim, m.Liveliness)
	}

	// The operator power cycles both; they PXE boot into the hammer and wait again.
	for _, id := range []string{oldOS, silent} {
		f.event(id, api.EventPlannedReboot)
		f.event(id, api.EventPXEBooting)
		if _, err := f.svc.CheckLiveliness(f.ctx); err != nil {
			t.Fatal(err)
		}
		if f.get(id).FailedMachineReclaim {
			t.Errorf("%s PXE boots again, but the failed reclaim stays", id)
		}
		for _, e := range []string{api.EventPreparing, api.EventRegistering} {
			f.event(id, e)
		}
		f.markWaiting(id)
		if m := f.get(id); m.FailedMachineReclaim || m.CrashLoop || m.Liveliness != api.LivelinessAlive {
			t.Errorf("%s waits again: failed reclaim %v, crash loop %v, liveliness %s", id, m.FailedMachineReclaim, m.CrashLoop, m.Liveliness)
		}
	}
}
