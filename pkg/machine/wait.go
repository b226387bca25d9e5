package machine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/apierror"
	"github.com/metalforge/metalforge/pkg/auth"
	"github.com/metalforge/metalforge/pkg/lifecycle"
	"github.com/metalforge/metalforge/pkg/store"
)

// Wait marks an unallocated machine as waiting and blocks until it is allocated (on any replica)
// or ctx ends; then it returns what the hammer must install. A machine that is already allocated
// (a reinstall, or an allocation the hammer has not picked up yet) returns at once. When the
// hammer goes away before an allocation arrives, the machine stops being waiting.
func (s *Service) Wait(ctx context.Context, machineID string) (*api.InstallSpec, error) {
	changes := s.store.Subscribe(ctx)
	err := s.store.Write(ctx, func(tx store.Tx) error {
		m, err := tx.Machines().Get(ctx, machineID)
		if err != nil {
			return err
		}
		if m.Allocation != nil {
			return nil
		}
		if m.State.Value == api.StateLocked {
			return fmt.Errorf("machine %s is locked: %w", machineID, apierror.ErrUnavailable)
		}
		if !m.Waiting {
			m.Waiting = true
			if err := tx.Machines().Update(ctx, m); err != nil {
				return err
			}
		}
		log, err := tx.EventLogs().Get(ctx, m.ID)
		if err == nil && lifecycle.State(log) == api.EventWaiting {
			return nil // a reconnect: already waiting
		}
		return s.appendEvent(ctx, tx, m, api.EventRequest{Event: api.EventWaiting})
	})
	if err != nil {
		return nil, fmt.Errorf("wait %s: %w", machineID, err)
	}
	tick := time.NewTicker(s.recheck)
	defer tick.Stop()
	for {
		spec, err := s.pickUp(ctx, machineID)
		if err != nil && ctx.Err() != nil {
			s.stopWaiting(machineID) // the hammer went away while we looked
			return nil, ctx.Err()
		}
		if err != nil || spec != nil {
			return spec, err
		}
	next: // until this machine changed, changes may have been missed, or the recheck is due
		for {
			select {
			case <-ctx.Done():
				s.stopWaiting(machineID)
				return nil, ctx.Err()
			case c, ok := <-changes:
				if !ok {
					s.stopWaiting(machineID)
					return nil, ctx.Err()
				}
				if c.Kind == "" || c.Kind == store.KindMachine && c.ID == machineID {
					break next
				}
			case <-tick.C:
				break next
			}
		}
	}
}

// pickUp returns the install spec once the machine is allocated, clearing the waiting flags.
func (s *Service) pickUp(ctx context.Context, machineID string) (*api.InstallSpec, error) {
	var spec *api.InstallSpec
	err := s.store.Write(ctx, func(tx store.Tx) error {
		spec = nil
		m, err := tx.Machines().Get(ctx, machineID)
		if err != nil || m.Allocation == nil {
			return err
		}
		if m.Waiting || m.PreAllocated {
			m.Waiting, m.PreAllocated = false, false
			if err := tx.Machines().Update(ctx, m); err != nil {
				return err
			}
		}
		if spec, err = installSpec(ctx, tx, m); err != nil {
			return err
		}
		spec.PhoneHomeToken, err = phoneHomeToken(ctx, tx, m)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("wait %s: %w", machineID, err)
	}
	return spec, nil
}

func (s *Service) stopWaiting(machineID string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.store.Write(ctx, func(tx store.Tx) error {
		m, err := tx.Machines().Get(ctx, machineID)
		if err != nil || m.Allocation != nil || !m.Waiting {
			return err
		}
		m.Waiting = false
		return tx.Machines().Update(ctx, m)
	})
	if err != nil {
		s.log.Warn("clear waiting flag failed", "machine", machineID, "err", err)
	}
}

// phoneHomeToken issues the machine's token for its installed OS, replacing the previous one.
func phoneHomeToken(ctx context.Context, tx store.Tx, m *api.Machine) (string, error) {
	tokID := "machine-" + m.ID
	if err := tx.Tokens().Delete(ctx, tokID); err != nil && !errors.Is(err, store.ErrNotFound) {
		return "", err
	}
	secret, _, err := auth.Issue(ctx, tx, api.Token{Meta: api.Meta{ID: tokID, Name: "phone home of " + m.ID},
		Role: auth.RoleMachine, PartitionID: m.PartitionID, MachineID: m.ID})
	return secret, err
}

func installSpec(ctx context.Context, tx store.Tx, m *api.Machine) (*api.InstallSpec, error) {
	img, err := tx.Images().Get(ctx, m.Allocation.ImageID)
	if err != nil {
		return nil, err
	}
	p, err := tx.Partitions().Get(ctx, m.PartitionID)
	if err != nil {
		return nil, err
	}
	spec := &api.InstallSpec{Machine: *m, Image: *img, DNSServers: p.DNSServers, NTPServers: p.NTPServers}
	if id := m.Allocation.FilesystemLayoutID; id != "" {
		if spec.Layout, err = tx.FilesystemLayouts().Get(ctx, id); err != nil {
			return nil, err
		}
	}
	return spec, nil
}

// Report records the hammer's install result: on success the boot info (the machine now boots its
// disk), on failure a Crashed event.
func (s *Service) Report(ctx context.Context, machineID string, r api.InstallReport) error {
	err := s.store.Write(ctx, func(tx store.Tx) error {
		m, err := tx.Machines().Get(ctx, machineID)
		if err != nil {
			return err
		}
		if m.Allocation == nil {
			return fmt.Errorf("machine %s is not allocated: %w", machineID, apierror.ErrUnavailable)
		}
		if !r.Success {
			// The hammer reports a Crashed event itself before it reports the failed install; record
			// the failure only when that event is missing, so one failure is one crash in the log.
			if log, err := tx.EventLogs().Get(ctx, m.ID); err == nil && lifecycle.State(log) == api.EventCrashed {
				return nil
			}
			return s.appendEvent(ctx, tx, m, api.EventRequest{Event: api.EventCrashed, Message: "install failed: " + r.Message})
		}
		if r.BootInfo == nil {
			return apierror.Invalid("a successful install report needs boot info")
		}
		m.Allocation.BootInfo = r.BootInfo
		m.Allocation.Reinstall = false
		return tx.Machines().Update(ctx, m)
	})
	if err != nil {
		return fmt.Errorf("report install of %s: %w", machineID, err)
	}
	return nil
}

// ReportWipe stores the wipe record of a freed machine.
func (s *Service) ReportWipe(ctx context.Context, machineID string, w api.WipeRecord) error {
	if len(w.Disks) == 0 {
		return apierror.Invalid("wipe record lists no disks")
	}
	err := s.store.Write(ctx, func(tx store.Tx) error {
		m, err := tx.Machines().Get(ctx, machineID)
		if err != nil {
			return err
		}
		if w.Time.IsZero() {
			w.Time = s.now().UTC()
		}
		m.LastWipe = &w
		return tx.Machines().Update(ctx, m)
	})
	if err != nil {
		return fmt.Errorf("report wipe of %s: %w", machineID, err)
	}
	return nil
}

// AbortReinstall ends a reinstall that could not write the new image: the machine keeps its old
// image and boot info, and the hammer boots back into the old OS. When the primary disk was already
// wiped there is nothing to go back to.
func (s *Service) AbortReinstall(ctx context.Context, machineID string, primaryDiskWiped bool) (*api.BootInfo, error) {
	var bi *api.BootInfo
	err := s.store.Write(ctx, func(tx store.Tx) error {
		m, err := tx.Machines().Get(ctx, machineID)
		if err != nil {
			return err
		}
		a := m.Allocation
		if a == nil || !a.Reinstall {
			return fmt.Errorf("machine %s is not being reinstalled: %w", machineID, apierror.ErrUnavailable)
		}
		if a.BootInfo == nil || primaryDiskWiped {
			return fmt.Errorf("machine %s has no old OS to go back to: %w", machineID, apierror.ErrUnavailable)
		}
		a.Reinstall = false
		a.ImageID = a.BootInfo.ImageID
		bi = a.BootInfo
		if err := tx.Machines().Update(ctx, m); err != nil {
			return err
		}
		return s.appendEvent(ctx, tx, m, api.EventRequest{Event: api.EventPlannedReboot, Message: "reinstall aborted, booting old OS"})
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		return nil, fmt.Errorf("abort reinstall of %s: %w", machineID, err)
	}
	return bi, err
}
