package lifecycle

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/metalforge/metalforge/pkg/api"
)

// base is the time of the first event of every test log.
var base = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// allEvents are the provisioning events of the design, in lifecycle order.
var allEvents = []string{
	api.EventPXEBooting, api.EventPreparing, api.EventRegistering, api.EventWaiting, api.EventInstalling,
	api.EventBootingNewKernel, api.EventPhonedHome, api.EventPlannedReboot, api.EventMachineReclaim,
	api.EventAlive, api.EventCrashed,
}

// build appends events one second apart, starting at base.
func build(events ...string) *api.MachineEventLog {
	log := &api.MachineEventLog{}
	for i, e := range events {
		Append(log, api.ProvisioningEvent{Time: base.Add(time.Duration(i) * time.Second), Event: e})
	}
	return log
}

func names(log *api.MachineEventLog) []string {
	var out []string
	for _, e := range log.Events {
		out = append(out, e.Event)
	}
	return out
}

func TestKnown(t *testing.T) {
	for _, e := range allEvents {
		if !Known(e) {
			t.Errorf("Known(%q) = false, want true", e)
		}
	}
	for _, e := range []string{"", "waiting", "PXE booting", "Rebooting", "Alive "} {
		if Known(e) {
			t.Errorf("Known(%q) = true, want false", e)
		}
	}
}

// TestTableIsClosed checks that the table only names known events and has a row for every
// state-changing event, so no event leaves a machine in a state nothing may follow.
func TestTableIsClosed(t *testing.T) {
	for last, nexts := range transitions {
		if last != "" && !Known(last) {
			t.Errorf("row %q is not a known event", last)
		}
		for _, n := range nexts {
			if !Known(n) {
				t.Errorf("row %q allows unknown event %q", last, n)
			}
			if n == api.EventAlive {
				t.Errorf("row %q lists Alive, which is expected everywhere and changes no state", last)
			}
		}
	}
	for _, e := range allEvents {
		if _, ok := transitions[e]; !ok && e != api.EventAlive {
			t.Errorf("no row for %q", e)
		}
	}
}

func TestExpected(t *testing.T) {
	tests := []struct {
		last, next string
		want       bool
	}{
		// The discover → install → phone home path.
		{"", api.EventPXEBooting, true},
		{api.EventPXEBooting, api.EventPXEBooting, true}, // DHCP retries
		{api.EventPXEBooting, api.EventPreparing, true},
		{api.EventPreparing, api.EventRegistering, true},
		{api.EventRegistering, api.EventWaiting, true},
		{api.EventWaiting, api.EventInstalling, true},
		{api.EventInstalling, api.EventBootingNewKernel, true},
		{api.EventBootingNewKernel, api.EventPhonedHome, true},
		{api.EventPhonedHome, api.EventPhonedHome, true},
		// Reinstall skips Waiting; free goes back through PXE.
		{api.EventRegistering, api.EventInstalling, true},
		{api.EventPhonedHome, api.EventPlannedReboot, true},
		{api.EventPlannedReboot, api.EventPXEBooting, true},
		{api.EventPhonedHome, api.EventMachineReclaim, true},
		{api.EventMachineReclaim, api.EventPXEBooting, true},
		{api.EventMachineReclaim, api.EventPhonedHome, true}, // expected, but a failed reclaim
		{api.EventCrashed, api.EventPXEBooting, true},
		// A metal-api restart can see a running machine first.
		{"", api.EventPhonedHome, true},
		// Heartbeats and crashes may come any time.
		{"", api.EventAlive, true},
		{api.EventInstalling, api.EventAlive, true},
		{api.EventWaiting, api.EventCrashed, true},
		{api.EventPhonedHome, api.EventCrashed, true},
		// Out of order.
		{"", api.EventWaiting, false},
		{"", api.EventInstalling, false},
		{api.EventPXEBooting, api.EventRegistering, false},
		{api.EventPXEBooting, api.EventPhonedHome, false},
		{api.EventPreparing, api.EventWaiting, false},
		{api.EventRegistering, api.EventRegistering, false},
		{api.EventWaiting, api.EventWaiting, false},
		{api.EventWaiting, api.EventPhonedHome, false},
		{api.EventInstalling, api.EventPhonedHome, false},
		{api.EventBootingNewKernel, api.EventPXEBooting, false},
		{api.EventPhonedHome, api.EventInstalling, false},
		{api.EventPhonedHome, api.EventWaiting, false},
		{api.EventMachineReclaim, api.EventWaiting, false},
		{api.EventCrashed, api.EventWaiting, false},
		{api.EventWaiting, "bogus", false},
	}
	for _, tc := range tests {
		if got := Expected(tc.last, tc.next); got != tc.want {
			t.Errorf("Expected(%q, %q) = %v, want %v", tc.last, tc.next, got, tc.want)
		}
	}
}

func TestAppendFlagsUnexpected(t *testing.T) {
	tests := []struct {
		name   string
		events []string
		// unexpected lists the indexes of events that must be flagged.
		unexpected []int
	}{
		{
			name: "discover, allocate, install, free, discover again",
			events: []string{api.EventPXEBooting, api.EventPXEBooting, api.EventPreparing, api.EventRegistering,
				api.EventWaiting, api.EventAlive, api.EventInstalling, api.EventBootingNewKernel, api.EventPhonedHome,
				api.EventAlive, api.EventPhonedHome, api.EventMachineReclaim, api.EventPXEBooting, api.EventPreparing,
				api.EventRegistering, api.EventWaiting},
		},
		{
			name: "reinstall",
			events: []string{api.EventPhonedHome, api.EventPlannedReboot, api.EventPXEBooting, api.EventPreparing,
				api.EventRegistering, api.EventInstalling, api.EventBootingNewKernel, api.EventPhonedHome},
		},
		{
			name:       "waiting without registering",
			events:     []string{api.EventPXEBooting, api.EventPreparing, api.EventWaiting, api.EventInstalling},
			unexpected: []int{2},
		},
		{
			// The state skips heartbeats: Waiting after Registering+Alive is fine, a second Waiting is not.
			name:       "heartbeat between does not hide the state",
			events:     []string{api.EventRegistering, api.EventAlive, api.EventWaiting, api.EventAlive, api.EventWaiting},
			unexpected: []int{4},
		},
		{
			name:       "installed OS phones home without kexec",
			events:     []string{api.EventWaiting, api.EventInstalling, api.EventPhonedHome},
			unexpected: []int{0, 2},
		},
		{
			name:   "crash and retry",
			events: []string{api.EventPXEBooting, api.EventPreparing, api.EventCrashed, api.EventPXEBooting},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if hasAdjacentAlive(tc.events) {
				t.Fatal("adjacent heartbeats collapse; keep them apart so indexes match the log")
			}
			log := build(tc.events...)
			var got []int
			for i, e := range log.Events {
				if e.Unexpected {
					got = append(got, i)
				}
			}
			if diff := cmp.Diff(tc.unexpected, got); diff != "" {
				t.Errorf("indexes of unexpected events (-want +got):\n%s\nlog: %v", diff, names(log))
			}
		})
	}
}

func hasAdjacentAlive(events []string) bool {
	for i := 1; i < len(events); i++ {
		if events[i] == api.EventAlive && events[i-1] == api.EventAlive {
			return true
		}
	}
	return false
}

func TestState(t *testing.T) {
	tests := []struct {
		events []string
		want   string
	}{
		{nil, ""},
		{[]string{api.EventAlive}, ""},
		{[]string{api.EventPXEBooting}, api.EventPXEBooting},
		{[]string{api.EventWaiting, api.EventAlive}, api.EventWaiting},
		{[]string{api.EventPhonedHome, api.EventMachineReclaim, api.EventAlive}, api.EventMachineReclaim},
	}
	for _, tc := range tests {
		log := &api.MachineEventLog{}
		for _, e := range tc.events {
			log.Events = append(log.Events, api.ProvisioningEvent{Event: e})
		}
		if got := State(log); got != tc.want {
			t.Errorf("State(%v) = %q, want %q", tc.events, got, tc.want)
		}
	}
}

func TestCrashLoop(t *testing.T) {
	const (
		pxe  = api.EventPXEBooting
		prep = api.EventPreparing
		reg  = api.EventRegistering
	)
	tests := []struct {
		name       string
		events     []string
		wantCycles int
		wantLoop   bool
	}{
		{"first cycle", []string{pxe, prep, reg}, 0, false},
		{"dhcp retries are one cycle", []string{pxe, pxe, pxe, prep, reg}, 0, false},
		{"one incomplete cycle", []string{pxe, prep, reg, pxe}, 1, false},
		{"two incomplete cycles", []string{pxe, prep, reg, pxe, prep, reg, pxe}, 2, true},
		{"three incomplete cycles", []string{pxe, prep, pxe, prep, pxe, prep, pxe}, 3, true},
		{"preparing without pxe starts a cycle", []string{prep, reg, prep, reg, prep}, 2, true},
		{"heartbeats do not count", []string{pxe, api.EventAlive, prep, api.EventAlive, reg, api.EventAlive, pxe}, 1, false},
		{"waiting resets", []string{pxe, prep, reg, pxe, prep, reg, pxe, prep, reg, api.EventWaiting}, 0, false},
		{"phoned home resets", []string{pxe, prep, reg, pxe, prep, reg, pxe, prep, reg, api.EventInstalling,
			api.EventBootingNewKernel, api.EventPhonedHome}, 0, false},
		{"loop again after reset", []string{pxe, prep, reg, api.EventWaiting, pxe, prep, reg, pxe, prep, pxe}, 2, true},
		{"crash during install and pxe again", []string{pxe, prep, reg, api.EventWaiting, api.EventInstalling, pxe}, 1, false},
		{"crashed counts once", []string{pxe, prep, reg, api.EventWaiting, api.EventInstalling, api.EventCrashed, pxe}, 1, false},
		{"two crashes", []string{pxe, prep, reg, api.EventInstalling, api.EventCrashed, pxe, prep, reg,
			api.EventInstalling, api.EventCrashed}, 2, true},
		{"planned reboot is not a crash", []string{api.EventPhonedHome, api.EventPlannedReboot, pxe, prep, reg,
			api.EventInstalling, api.EventBootingNewKernel, api.EventPhonedHome, api.EventPlannedReboot, pxe}, 0, false},
		{"reclaim is not a crash", []string{api.EventPhonedHome, api.EventMachineReclaim, pxe, prep, reg}, 0, false},
		{"waiting machine rebooted", []string{pxe, prep, reg, api.EventWaiting, pxe, prep, reg, api.EventWaiting}, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			log := build(tc.events...)
			if log.IncompleteProvisioningCycles != tc.wantCycles || log.CrashLoop != tc.wantLoop {
				t.Errorf("%v: cycles %d, crash loop %v; want %d, %v", tc.events,
					log.IncompleteProvisioningCycles, log.CrashLoop, tc.wantCycles, tc.wantLoop)
			}
		})
	}
}

func TestHeartbeatsCollapse(t *testing.T) {
	log := &api.MachineEventLog{}
	add := func(sec int, e string) {
		Append(log, api.ProvisioningEvent{Time: base.Add(time.Duration(sec) * time.Second), Event: e})
	}
	add(0, api.EventAlive)
	add(1, api.EventAlive)
	add(2, api.EventWaiting)
	for s := 3; s < 60; s++ {
		add(s, api.EventAlive)
	}
	add(60, api.EventInstalling)
	add(61, api.EventAlive)

	want := []api.ProvisioningEvent{
		{Time: base.Add(1 * time.Second), Event: api.EventAlive},
		{Time: base.Add(2 * time.Second), Event: api.EventWaiting, Unexpected: true},
		{Time: base.Add(59 * time.Second), Event: api.EventAlive},
		{Time: base.Add(60 * time.Second), Event: api.EventInstalling},
		{Time: base.Add(61 * time.Second), Event: api.EventAlive},
	}
	if diff := cmp.Diff(want, log.Events); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if got := LastTime(log); !got.Equal(base.Add(61 * time.Second)) {
		t.Errorf("LastTime = %v, want the newest heartbeat", got)
	}
	if got := State(log); got != api.EventInstalling {
		t.Errorf("State = %q, want %q", got, api.EventInstalling)
	}
}

func TestMaxEvents(t *testing.T) {
	log := &api.MachineEventLog{}
	const n = MaxEvents + 57
	for i := range n {
		// PXE Booting may repeat, and it never collapses.
		Append(log, api.ProvisioningEvent{Time: base.Add(time.Duration(i) * time.Second), Event: api.EventPXEBooting,
			Message: fmt.Sprint(i)})
	}
	if len(log.Events) != MaxEvents {
		t.Fatalf("log holds %d events, want %d", len(log.Events), MaxEvents)
	}
	if first, last := log.Events[0].Message, log.Events[MaxEvents-1].Message; first != fmt.Sprint(n-MaxEvents) || last != fmt.Sprint(n-1) {
		t.Errorf("log keeps events %s..%s, want the newest %d..%d", first, last, n-MaxEvents, n-1)
	}
	for i := 1; i < len(log.Events); i++ {
		if !log.Events[i].Time.After(log.Events[i-1].Time) {
			t.Fatalf("events out of order at %d", i)
		}
	}
}

func TestAppendMarksAlive(t *testing.T) {
	log := &api.MachineEventLog{Liveliness: api.LivelinessDead}
	Append(log, api.ProvisioningEvent{Time: base, Event: api.EventAlive})
	if log.Liveliness != api.LivelinessAlive {
		t.Errorf("Liveliness = %q after an event, want Alive", log.Liveliness)
	}
}

func TestLastTime(t *testing.T) {
	if got := LastTime(&api.MachineEventLog{}); !got.IsZero() {
		t.Errorf("LastTime of an empty log = %v, want zero", got)
	}
	log := build(api.EventPXEBooting, api.EventPreparing)
	if got := LastTime(log); !got.Equal(base.Add(time.Second)) {
		t.Errorf("LastTime = %v, want %v", got, base.Add(time.Second))
	}
}

// ev is an event at an offset before now.
type ev struct {
	event string
	ago   time.Duration
}

func TestEvaluate(t *testing.T) {
	now := base.Add(time.Hour)
	tests := []struct {
		name        string
		events      []ev
		allocated   bool
		wantLive    string
		wantFailed  bool
		wantChanged bool
	}{
		{"no events, free", nil, false, api.LivelinessDead, false, true},
		{"no events, allocated", nil, true, api.LivelinessUnknown, false, true},
		{"recent, free", []ev{{api.EventWaiting, time.Minute}}, false, api.LivelinessAlive, false, false},
		{"at the timeout", []ev{{api.EventWaiting, Timeout}}, false, api.LivelinessAlive, false, false},
		{"past the timeout, free", []ev{{api.EventWaiting, Timeout + time.Second}}, false, api.LivelinessDead, false, true},
		{"past the timeout, allocated", []ev{{api.EventPhonedHome, Timeout + time.Second}}, true, api.LivelinessUnknown, false, true},
		{"heartbeat keeps it alive", []ev{{api.EventPhonedHome, time.Hour}, {api.EventAlive, time.Minute}}, true, api.LivelinessAlive, false, false},
		{"reclaim in progress", []ev{{api.EventPhonedHome, 10 * time.Minute}, {api.EventMachineReclaim, time.Minute}}, false,
			api.LivelinessAlive, false, false},
		{"silent after reclaim", []ev{{api.EventPhonedHome, 20 * time.Minute}, {api.EventMachineReclaim, Timeout + time.Second}}, false,
			api.LivelinessDead, true, true},
		{"old OS phones home after reclaim", []ev{{api.EventMachineReclaim, 3 * time.Minute}, {api.EventPhonedHome, time.Minute}}, false,
			api.LivelinessAlive, true, true},
		{"old OS reboots and phones home after reclaim", []ev{{api.EventMachineReclaim, 3 * time.Minute},
			{api.EventPlannedReboot, 2 * time.Minute}, {api.EventPhonedHome, time.Minute}}, false, api.LivelinessAlive, true, true},
		{"reclaim reached the hammer", []ev{{api.EventMachineReclaim, 3 * time.Minute}, {api.EventPXEBooting, 2 * time.Minute},
			{api.EventPreparing, time.Minute}}, false, api.LivelinessAlive, false, false},
		{"reclaim reached the hammer, then silence", []ev{{api.EventMachineReclaim, 30 * time.Minute},
			{api.EventPXEBooting, 29 * time.Minute}}, false, api.LivelinessDead, false, true},
		{"allocated machine phones home", []ev{{api.EventMachineReclaim, 3 * time.Hour}, {api.EventPXEBooting, 2 * time.Hour},
			{api.EventWaiting, time.Hour}, {api.EventInstalling, 2 * time.Minute}, {api.EventBootingNewKernel, time.Minute},
			{api.EventPhonedHome, 0}}, true, api.LivelinessAlive, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			log := &api.MachineEventLog{}
			for _, e := range tc.events {
				Append(log, api.ProvisioningEvent{Time: now.Add(-e.ago), Event: e.event})
			}
			changed := Evaluate(log, tc.allocated, now)
			if log.Liveliness != tc.wantLive || log.FailedMachineReclaim != tc.wantFailed || changed != tc.wantChanged {
				t.Errorf("Evaluate: liveliness %q, failed reclaim %v, changed %v; want %q, %v, %v",
					log.Liveliness, log.FailedMachineReclaim, changed, tc.wantLive, tc.wantFailed, tc.wantChanged)
			}
			if Evaluate(log, tc.allocated, now) {
				t.Errorf("a second Evaluate at the same time reports a change")
			}
		})
	}
}

func TestEvaluateRecovers(t *testing.T) {
	log := build(api.EventPXEBooting, api.EventPreparing, api.EventRegistering, api.EventWaiting)
	later := LastTime(log).Add(Timeout + time.Minute)
	if !Evaluate(log, false, later) || log.Liveliness != api.LivelinessDead {
		t.Fatalf("liveliness %q after silence, want Dead", log.Liveliness)
	}
	Append(log, api.ProvisioningEvent{Time: later, Event: api.EventAlive})
	if log.Liveliness != api.LivelinessAlive {
		t.Errorf("liveliness %q after a heartbeat, want Alive", log.Liveliness)
	}
	if Evaluate(log, false, later.Add(time.Minute)) || log.Liveliness != api.LivelinessAlive {
		t.Errorf("liveliness %q a minute after the heartbeat, want Alive and no change", log.Liveliness)
	}
}

// TestFailedReclaimSticks: once Evaluate flagged a failed reclaim, more Phoned Home events from the old
// OS must not clear the flag (the machine service copies the log's flag into the machine on every
// event); only the hammer coming back (Waiting) or a new PXE boot does.
func TestFailedReclaimSticks(t *testing.T) {
	log := build(api.EventPhonedHome, api.EventMachineReclaim, api.EventPhonedHome)
	now := LastTime(log).Add(time.Second)
	Evaluate(log, false, now)
	if !log.FailedMachineReclaim {
		t.Fatal("old OS phoned home after reclaim, but no failed reclaim")
	}
	Append(log, api.ProvisioningEvent{Time: now, Event: api.EventPhonedHome})
	if !log.FailedMachineReclaim {
		t.Errorf("another Phoned Home from the old OS cleared the failed reclaim")
	}
	Append(log, api.ProvisioningEvent{Time: now.Add(time.Second), Event: api.EventPlannedReboot})
	Append(log, api.ProvisioningEvent{Time: now.Add(2 * time.Second), Event: api.EventPXEBooting})
	Evaluate(log, false, now.Add(3*time.Second))
	if log.FailedMachineReclaim {
		t.Errorf("the machine PXE boots again, but the failed reclaim stays")
	}
	Append(log, api.ProvisioningEvent{Time: now.Add(4 * time.Second), Event: api.EventPreparing})
	Append(log, api.ProvisioningEvent{Time: now.Add(5 * time.Second), Event: api.EventRegistering})
	Append(log, api.ProvisioningEvent{Time: now.Add(6 * time.Second), Event: api.EventWaiting})
	if log.FailedMachineReclaim || log.CrashLoop {
		t.Errorf("waiting again: failed reclaim %v, crash loop %v; want both false", log.FailedMachineReclaim, log.CrashLoop)
	}

	// Waiting alone clears a flag Evaluate set.
	log = &api.MachineEventLog{FailedMachineReclaim: true}
	Append(log, api.ProvisioningEvent{Time: base, Event: api.EventWaiting})
	if log.FailedMachineReclaim {
		t.Errorf("Waiting did not clear the failed reclaim")
	}
}
