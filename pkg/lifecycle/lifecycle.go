// Package lifecycle is the machine provisioning state machine: a table of which event may follow
// which, crash-loop detection, liveliness and failed-reclaim detection over a machine's event log.
package lifecycle

import (
	"time"

	"github.com/metalforge/metalforge/pkg/api"
)

// Timeout is how long a machine may stay silent before it counts as Dead or Unknown.
const Timeout = 5 * time.Minute

// MaxEvents bounds the stored event log of one machine; older events are dropped.
const MaxEvents = 100

// crashLoopCycles incomplete provisioning cycles in a row make a crash loop.
const crashLoopCycles = 2

// transitions says which events are expected after the last one. Alive is a heartbeat and is
// expected everywhere; it does not change the state.
var transitions = map[string][]string{
	"":                        {api.EventPXEBooting, api.EventPreparing, api.EventRegistering, api.EventPhonedHome},
	api.EventPXEBooting:       {api.EventPXEBooting, api.EventPreparing},
	api.EventPreparing:        {api.EventRegistering, api.EventPlannedReboot},
	api.EventRegistering:      {api.EventWaiting, api.EventInstalling, api.EventPreparing},
	api.EventWaiting:          {api.EventInstalling, api.EventPlannedReboot},
	api.EventInstalling:       {api.EventInstalling, api.EventBootingNewKernel, api.EventPlannedReboot},
	api.EventBootingNewKernel: {api.EventPhonedHome},
	api.EventPhonedHome:       {api.EventPhonedHome, api.EventPlannedReboot, api.EventMachineReclaim},
	api.EventPlannedReboot:    {api.EventPXEBooting, api.EventPreparing, api.EventPhonedHome},
	api.EventMachineReclaim:   {api.EventPXEBooting, api.EventPreparing, api.EventPhonedHome},
	api.EventCrashed:          {api.EventPXEBooting, api.EventPreparing, api.EventPlannedReboot},
}

// Known reports whether e is a provisioning event.
func Known(e string) bool {
	if e == api.EventAlive || e == api.EventCrashed {
		return true
	}
	_, ok := transitions[e]
	return ok && e != ""
}

// Expected reports whether next may follow last.
func Expected(last, next string) bool {
	if next == api.EventAlive || next == api.EventCrashed {
		return true
	}
	for _, e := range transitions[last] {
		if e == next {
			return true
		}
	}
	return false
}

// State returns the last state-changing event of a log ("" for none): heartbeats are skipped.
func State(log *api.MachineEventLog) string {
	for i := len(log.Events) - 1; i >= 0; i-- {
		if e := log.Events[i].Event; e != api.EventAlive {
			return e
		}
	}
	return ""
}

// Append records an event in the log: marks it unexpected when the table does not allow it, counts
// incomplete provisioning cycles (a new PXE boot before the last one reached Waiting or Phoned Home,
// or a crash) and sets the crash-loop flag.
func Append(log *api.MachineEventLog, ev api.ProvisioningEvent) {
	last := State(log)
	ev.Unexpected = !Expected(last, ev.Event)
	switch ev.Event {
	case api.EventWaiting:
		log.IncompleteProvisioningCycles = 0
		log.FailedMachineReclaim = false // the hammer is back: the reclaim worked
	case api.EventPhonedHome:
		// Not a reclaim success: Phoned Home after Machine Reclaim is the old OS answering, which
		// Evaluate flags as a failed reclaim; clearing the flag here would undo that on every call.
		log.IncompleteProvisioningCycles = 0
	case api.EventCrashed:
		log.IncompleteProvisioningCycles++
	case api.EventPXEBooting, api.EventPreparing:
		// A cycle starts with PXE Booting (or Preparing when PXE was not reported). It is incomplete
		// when the previous cycle got going but never reached Waiting or Phoned Home.
		// Repeated PXE Booting (DHCP retries) and PXE Booting → Preparing are one cycle.
		if last != api.EventPXEBooting && inCycle(last) {
			log.IncompleteProvisioningCycles++
		}
	}
	log.CrashLoop = log.IncompleteProvisioningCycles >= crashLoopCycles
	if !(ev.Event == api.EventAlive && len(log.Events) > 0 && log.Events[len(log.Events)-1].Event == api.EventAlive) {
		log.Events = append(log.Events, ev)
	} else {
		log.Events[len(log.Events)-1] = ev // collapse heartbeats into one entry
	}
	if len(log.Events) > MaxEvents {
		log.Events = append([]api.ProvisioningEvent(nil), log.Events[len(log.Events)-MaxEvents:]...)
	}
	log.Liveliness = api.LivelinessAlive
}

// inCycle reports whether last is part of a provisioning cycle that has not completed.
func inCycle(last string) bool {
	switch last {
	case api.EventPXEBooting, api.EventPreparing, api.EventRegistering, api.EventInstalling,
		api.EventBootingNewKernel:
		return true
	}
	return false
}

// LastTime is the time of the newest event, zero for none.
func LastTime(log *api.MachineEventLog) time.Time {
	if len(log.Events) == 0 {
		return time.Time{}
	}
	return log.Events[len(log.Events)-1].Time
}

// Evaluate recomputes liveliness and failed-reclaim at now: silent for Timeout → Dead when
// unallocated, Unknown when allocated. An unallocated machine that was reclaimed but phoned home
// from its old OS, or never came back to the hammer within Timeout, failed its reclaim. It reports
// whether anything changed.
func Evaluate(log *api.MachineEventLog, allocated bool, now time.Time) bool {
	before := *log
	last := LastTime(log)
	switch {
	case last.IsZero() || now.Sub(last) > Timeout:
		log.Liveliness = api.LivelinessDead
		if allocated {
			log.Liveliness = api.LivelinessUnknown
		}
	default:
		log.Liveliness = api.LivelinessAlive
	}
	if !allocated {
		state := State(log)
		reclaimed := false
		for i := len(log.Events) - 1; i >= 0; i-- {
			if log.Events[i].Event == api.EventMachineReclaim {
				reclaimed = true
				break
			}
			if log.Events[i].Event == api.EventPXEBooting || log.Events[i].Event == api.EventPreparing {
				break
			}
		}
		log.FailedMachineReclaim = reclaimed && (state == api.EventPhonedHome ||
			(state == api.EventMachineReclaim && now.Sub(last) > Timeout))
	}
	return before.Liveliness != log.Liveliness || before.FailedMachineReclaim != log.FailedMachineReclaim
}
