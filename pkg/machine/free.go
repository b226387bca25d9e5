package machine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/apierror"
	"github.com/metalforge/metalforge/pkg/id"
	"github.com/metalforge/metalforge/pkg/store"
)

// Free takes a machine back from its project in one transaction: ephemeral addresses are released,
// static ones detached, the ASN returned, and the BMC agent is told to PXE boot and power cycle it so
// the hammer wipes its disks before it waits again.
func (s *Service) Free(ctx context.Context, machineID string) (*api.Machine, error) {
	var out *api.Machine
	err := s.store.Write(ctx, func(tx store.Tx) error {
		m, err := tx.Machines().Get(ctx, machineID)
		if err != nil {
			return err
		}
		if m.State.Value == api.StateLocked {
			return fmt.Errorf("machine %s is locked (%s): %w", m.ID, m.State.Description, apierror.ErrUnavailable)
		}
		if m.Allocation == nil {
			return fmt.Errorf("machine %s is not allocated: %w", m.ID, apierror.ErrUnavailable)
		}
		ips, _, err := tx.IPs().List(ctx, store.Query{Key2: m.ID})
		if err != nil {
			return err
		}
		for _, ip := range ips {
			if ip.Type == api.IPStatic {
				ip.MachineID = ""
				err = tx.IPs().Update(ctx, ip)
			} else {
				err = tx.IPs().Delete(ctx, ip.ID)
			}
			if err != nil {
				return fmt.Errorf("release ip %s: %w", ip.ID, err)
			}
		}
		if _, err := tx.Release(ctx, PoolASN, m.ID); err != nil {
			return err
		}
		m.Allocation = nil
		m.Waiting, m.PreAllocated = false, false
		m.Tags = nil
		if err := tx.Machines().Update(ctx, m); err != nil {
			return err
		}
		if err := s.appendEvent(ctx, tx, m, api.EventRequest{Event: api.EventMachineReclaim, Message: "freed"}); err != nil {
			return err
		}
		out = m
		return s.pxeBoot(ctx, tx, m)
	})
	if err != nil {
		return nil, fmt.Errorf("free machine %s: %w", machineID, err)
	}
	return out, nil
}

// Reinstall installs another image on an allocated machine, keeping its allocation and data disks.
func (s *Service) Reinstall(ctx context.Context, machineID string, req api.MachineReinstallRequest) (*api.Machine, error) {
	var out *api.Machine
	err := s.store.Write(ctx, func(tx store.Tx) error {
		m, err := tx.Machines().Get(ctx, machineID)
		if err != nil {
			return err
		}
		if m.Allocation == nil {
			return fmt.Errorf("machine %s is not allocated: %w", m.ID, apierror.ErrUnavailable)
		}
		img, err := tx.Images().Get(ctx, req.ImageID)
		if err != nil {
			return refInvalid(err)
		}
		if !slices.Contains(img.Features, m.Allocation.Role) {
			return apierror.Invalid("image %s has no %s feature", img.ID, m.Allocation.Role)
		}
		m.Allocation.ImageID = img.ID
		m.Allocation.Reinstall = true
		m.Allocation.Succeeded = false
		if err := tx.Machines().Update(ctx, m); err != nil {
			return err
		}
		out = m
		return s.pxeBoot(ctx, tx, m)
	})
	if err != nil {
		return nil, fmt.Errorf("reinstall machine %s: %w", machineID, err)
	}
	return out, nil
}

// SetState locks, taints or clears a machine.
func (s *Service) SetState(ctx context.Context, machineID string, req api.MachineStateRequest) (*api.Machine, error) {
	switch req.Value {
	case api.StateAvailable, api.StateLocked, api.StateTainted:
	default:
		return nil, apierror.Invalid("state %q is not \"\", LOCKED or TAINTED", req.Value)
	}
	if req.Value != api.StateAvailable && req.Description == "" {
		return nil, apierror.Invalid("a %s state needs a description", req.Value)
	}
	return s.update(ctx, machineID, func(m *api.Machine) error {
		m.State = api.MachineState{Value: req.Value, Description: req.Description}
		return nil
	})
}

// SetTags replaces the tags of a machine; each tag is a non-empty string without spaces.
func (s *Service) SetTags(ctx context.Context, machineID string, tags []string) (*api.Machine, error) {
	for _, t := range tags {
		if t == "" || strings.ContainsAny(t, " \t\n") || len(t) > 253 {
			return nil, apierror.Invalid("tag %q must be 1-253 characters without blanks", t)
		}
	}
	return s.update(ctx, machineID, func(m *api.Machine) error {
		m.Tags = slices.Compact(slices.Sorted(slices.Values(tags)))
		return nil
	})
}

func (s *Service) update(ctx context.Context, machineID string, fn func(*api.Machine) error) (*api.Machine, error) {
	var out *api.Machine
	err := s.store.Write(ctx, func(tx store.Tx) error {
		m, err := tx.Machines().Get(ctx, machineID)
		if err != nil {
			return err
		}
		if err := fn(m); err != nil {
			return err
		}
		out = m
		return tx.Machines().Update(ctx, m)
	})
	return out, err
}

// Delete removes an unallocated machine, its event log and its switch connections.
func (s *Service) Delete(ctx context.Context, machineID string) (*api.Machine, error) {
	var out *api.Machine
	err := s.store.Write(ctx, func(tx store.Tx) error {
		m, err := tx.Machines().Get(ctx, machineID)
		if err != nil {
			return err
		}
		if m.Allocation != nil {
			return fmt.Errorf("machine %s is allocated, free it first: %w", m.ID, apierror.ErrInUse)
		}
		if err := tx.EventLogs().Delete(ctx, m.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		m.Hardware.NICs = nil
		if _, err := s.connect(ctx, tx, m); err != nil {
			return err
		}
		out = m
		return tx.Machines().Delete(ctx, m.ID)
	})
	return out, err
}

// Power queues a BMC command for the partition's BMC agent.
func (s *Service) Power(ctx context.Context, machineID, command string) (*api.BMCCommand, error) {
	switch command {
	case api.PowerOn, api.PowerOff, api.PowerCycle, api.PowerReset, api.BootPXE, api.BootDisk, api.LEDOn, api.LEDOff:
	default:
		return nil, apierror.Invalid("bmc command %q is not one of on, off, cycle, reset, pxe, disk, led-on, led-off", command)
	}
	var out *api.BMCCommand
	err := s.store.Write(ctx, func(tx store.Tx) error {
		m, err := tx.Machines().Get(ctx, machineID)
		if err != nil {
			return err
		}
		if m.State.Value == api.StateLocked && (command == api.PowerOff || command == api.PowerCycle || command == api.PowerReset) {
			return fmt.Errorf("machine %s is locked: %w", m.ID, apierror.ErrUnavailable)
		}
		out = &api.BMCCommand{Meta: api.Meta{ID: id.New()}, MachineID: m.ID, PartitionID: m.PartitionID, Command: command}
		return tx.BMCCommands().Create(ctx, out)
	})
	return out, err
}

// pxeBoot queues "boot from the network once" and a power cycle, so the machine comes back to the
// hammer.
func (s *Service) pxeBoot(ctx context.Context, tx store.Tx, m *api.Machine) error {
	if err := s.queue(ctx, tx, m, api.BootPXE); err != nil {
		return err
	}
	return s.queue(ctx, tx, m, api.PowerCycle)
}

func (s *Service) queue(ctx context.Context, tx store.Tx, m *api.Machine, command string) error {
	return tx.BMCCommands().Create(ctx, &api.BMCCommand{Meta: api.Meta{ID: id.New()}, MachineID: m.ID, PartitionID: m.PartitionID, Command: command})
}

// PendingCommands lists the BMC commands not yet done in a partition, oldest first, each with the
// BMC address and credentials of its machine (for the BMC agent only).
func (s *Service) PendingCommands(ctx context.Context, partitionID string) ([]*api.BMCCommand, error) {
	var out []*api.BMCCommand
	err := s.store.Read(ctx, func(tx store.Tx) error {
		var err error
		out, _, err = tx.BMCCommands().List(ctx, store.Query{Partition: partitionID, Key2: store.CommandPending})
		for _, c := range out {
			m, err := tx.Machines().Get(ctx, c.MachineID)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			bmc := m.BMC
			c.BMC = &bmc
		}
		return err
	})
	slices.SortStableFunc(out, func(a, b *api.BMCCommand) int { return a.Created.Compare(b.Created) })
	if out == nil {
		out = []*api.BMCCommand{}
	}
	return out, err
}

// CommandDone marks a BMC command as executed (with its error, if any).
func (s *Service) CommandDone(ctx context.Context, partitionID, commandID string, done api.BMCCommandDone) (*api.BMCCommand, error) {
	var out *api.BMCCommand
	err := s.store.Write(ctx, func(tx store.Tx) error {
		c, err := tx.BMCCommands().Get(ctx, commandID)
		if err != nil {
			return err
		}
		if partitionID != "" && c.PartitionID != partitionID {
			return fmt.Errorf("bmc command %s is in another partition: %w", c.ID, apierror.ErrForbidden)
		}
		now := s.now().UTC()
		c.Done, c.Error = &now, done.Error
		out = c
		return tx.BMCCommands().Update(ctx, c)
	})
	return out, err
}

// ReportBMC stores the power state the BMC agent saw.
func (s *Service) ReportBMC(ctx context.Context, machineID string, r api.BMCReport) (*api.Machine, error) {
	return s.update(ctx, machineID, func(m *api.Machine) error {
		now := s.now().UTC()
		m.BMC.PowerState, m.BMC.PowerReported = r.PowerState, &now
		if r.LED != "" {
			m.LED.Value = r.LED
		}
		return nil
	})
}
