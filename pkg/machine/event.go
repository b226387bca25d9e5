package machine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/apierror"
	"github.com/metalforge/metalforge/pkg/lifecycle"
	"github.com/metalforge/metalforge/pkg/store"
)

// Event records a provisioning event. Only changes of the derived state (last event, liveliness,
// crash loop, failed reclaim, phoned home) are written to the machine itself, so heartbeats touch
// the event log alone.
func (s *Service) Event(ctx context.Context, machineID string, ev api.EventRequest) error {
	if !lifecycle.Known(ev.Event) {
		return apierror.Invalid("unknown provisioning event %q", ev.Event)
	}
	err := s.store.Write(ctx, func(tx store.Tx) error {
		m, err := tx.Machines().Get(ctx, machineID)
		if err != nil {
			return err
		}
		return s.appendEvent(ctx, tx, m, ev)
	})
	if err != nil {
		return fmt.Errorf("machine %s event %s: %w", machineID, ev.Event, err)
	}
	return nil
}

// appendEvent adds ev to m's log inside tx and updates m when its derived state changed.
func (s *Service) appendEvent(ctx context.Context, tx store.Tx, m *api.Machine, ev api.EventRequest) error {
	log, err := tx.EventLogs().Get(ctx, m.ID)
	create := errors.Is(err, store.ErrNotFound)
	if create {
		log = &api.MachineEventLog{Meta: api.Meta{ID: m.ID}}
	} else if err != nil {
		return err
	}
	pe := api.ProvisioningEvent{Time: s.now().UTC(), Event: ev.Event, Message: ev.Message}
	lifecycle.Append(log, pe)
	if create {
		err = tx.EventLogs().Create(ctx, log)
	} else {
		err = tx.EventLogs().Update(ctx, log)
	}
	if err != nil {
		return err
	}
	return s.deriveInto(ctx, tx, m, log)
}

// deriveInto copies the log's derived state into the machine and stores it if anything changed.
func (s *Service) deriveInto(ctx context.Context, tx store.Tx, m *api.Machine, log *api.MachineEventLog) error {
	changed := false
	if n := len(log.Events); n > 0 {
		last := log.Events[n-1]
		if last.Event != api.EventAlive && (m.LastEvent == nil || m.LastEvent.Time != last.Time || m.LastEvent.Event != last.Event) {
			m.LastEvent = &last
			changed = true
		}
	}
	if m.Liveliness != log.Liveliness || m.CrashLoop != log.CrashLoop || m.FailedMachineReclaim != log.FailedMachineReclaim {
		m.Liveliness, m.CrashLoop, m.FailedMachineReclaim = log.Liveliness, log.CrashLoop, log.FailedMachineReclaim
		changed = true
	}
	if m.Allocation != nil && !m.Allocation.Succeeded && m.LastEvent != nil && m.LastEvent.Event == api.EventPhonedHome {
		m.Allocation.Succeeded = true
		changed = true
	}
	if !changed {
		return nil
	}
	return tx.Machines().Update(ctx, m)
}

// Alive reports whether the machine's log has an event within the liveliness timeout.
func (s *Service) alive(ctx context.Context, tx store.Tx, machineID string) (bool, error) {
	log, err := tx.EventLogs().Get(ctx, machineID)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	last := lifecycle.LastTime(log)
	return !last.IsZero() && s.now().Sub(last) <= lifecycle.Timeout, nil
}

// CheckLiveliness evaluates every event log once: silent machines become Dead or Unknown, reclaims
// that never came back are flagged. It returns how many machines changed.
func (s *Service) CheckLiveliness(ctx context.Context) (int, error) {
	var logs []*api.MachineEventLog
	allocated := map[string]bool{}
	err := s.store.Read(ctx, func(tx store.Tx) error {
		var err error
		if logs, _, err = tx.EventLogs().List(ctx, store.Query{}); err != nil {
			return err
		}
		ms, _, err := tx.Machines().List(ctx, store.Query{Key2: store.MachineStatusAllocated})
		for _, m := range ms {
			allocated[m.ID] = true
		}
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("check liveliness: %w", err)
	}
	changed := 0
	now := s.now()
	for _, l := range logs {
		if !lifecycle.Evaluate(l, allocated[l.ID], now) {
			continue
		}
		did := false
		err := s.store.Write(ctx, func(tx store.Tx) error {
			did = false
			m, err := tx.Machines().Get(ctx, l.ID)
			if err != nil {
				return err
			}
			log, err := tx.EventLogs().Get(ctx, l.ID)
			if err != nil {
				return err
			}
			if !lifecycle.Evaluate(log, m.Allocation != nil, now) {
				return nil
			}
			did = true
			if err := tx.EventLogs().Update(ctx, log); err != nil {
				return err
			}
			return s.deriveInto(ctx, tx, m, log)
		})
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return changed, fmt.Errorf("check liveliness of %s: %w", l.ID, err)
		}
		if did {
			changed++
		}
	}
	return changed, nil
}

// RunLiveliness checks liveliness every interval until ctx ends.
func (s *Service) RunLiveliness(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			n, err := s.CheckLiveliness(ctx)
			if err != nil {
				s.log.Error("liveliness check failed", "err", err)
				continue
			}
			if n > 0 {
				s.log.Info("liveliness changed", "machines", n)
			}
		}
	}
}
