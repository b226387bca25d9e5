package machine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/apierror"
	"github.com/metalforge/metalforge/pkg/size"
	"github.com/metalforge/metalforge/pkg/store"
)

// Register stores the hammer's inventory of a machine: hardware, BIOS and BMC are replaced, the size
// is matched again, NIC↔switch-port links are derived from LLDP; allocation, state and tags stay.
func (s *Service) Register(ctx context.Context, in *api.Machine) (*api.Machine, error) {
	if in.ID == "" {
		return nil, apierror.Invalid("register: machine id (the DMI UUID) is empty")
	}
	if in.PartitionID == "" {
		return nil, apierror.Invalid("register: partition is empty")
	}
	for i, n := range in.Hardware.NICs {
		mac, err := net.ParseMAC(n.MAC)
		if err != nil {
			return nil, apierror.Invalid("register: nic %q: %v", n.Name, err)
		}
		in.Hardware.NICs[i].MAC = mac.String()
	}
	var out *api.Machine
	err := s.store.Write(ctx, func(tx store.Tx) error {
		if _, err := tx.Partitions().Get(ctx, in.PartitionID); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return apierror.Invalid("register: %v", err)
			}
			return err
		}
		sizes, _, err := tx.Sizes().List(ctx, store.Query{})
		if err != nil {
			return err
		}
		sizeID := api.SizeUnknown
		if sz, err := size.Match(sizes, in.Hardware); err == nil {
			sizeID = sz.ID
		} else {
			s.log.Warn("machine matches no single size", "machine", in.ID, "err", err)
		}
		m, err := tx.Machines().Get(ctx, in.ID)
		create := errors.Is(err, store.ErrNotFound)
		if create {
			m = &api.Machine{Meta: api.Meta{ID: in.ID, Name: in.Name}, Liveliness: api.LivelinessAlive}
		} else if err != nil {
			return err
		} else if m.PartitionID != in.PartitionID {
			return apierror.Invalid("register: machine %s belongs to partition %s, not %s", m.ID, m.PartitionID, in.PartitionID)
		}
		m.PartitionID = in.PartitionID
		m.SizeID = sizeID
		m.Hardware = in.Hardware
		m.BIOS = in.BIOS
		bmc := in.BMC
		if bmc.Password == "" {
			bmc.Password = m.BMC.Password
		}
		bmc.PowerState, bmc.PowerReported = m.BMC.PowerState, m.BMC.PowerReported
		m.BMC = bmc
		if in.RackID != "" {
			m.RackID = in.RackID
		}
		if rack, err := s.connect(ctx, tx, m); err != nil {
			return err
		} else if rack != "" {
			m.RackID = rack
		}
		if create {
			err = tx.Machines().Create(ctx, m)
		} else {
			err = tx.Machines().Update(ctx, m)
		}
		if err != nil {
			return err
		}
		if err := s.appendEvent(ctx, tx, m, api.EventRequest{Event: api.EventRegistering, Message: "size " + sizeID}); err != nil {
			return err
		}
		out = m
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("register machine %s: %w", in.ID, err)
	}
	return out, nil
}

// connect links the machine's NICs to the switch ports their LLDP neighbours name, replacing the
// machine's old links, and returns the rack of the first switch found.
func (s *Service) connect(ctx context.Context, tx store.Tx, m *api.Machine) (string, error) {
	switches, _, err := tx.Switches().List(ctx, store.Query{Partition: m.PartitionID})
	if err != nil {
		return "", err
	}
	rack := ""
	for _, sw := range switches {
		conns := slices.DeleteFunc(slices.Clone(sw.Connections), func(c api.SwitchConnection) bool { return c.MachineID == m.ID })
		for _, nic := range m.Hardware.NICs {
			for _, nb := range nic.Neighbors {
				if !switchIs(sw, nb) || !slices.ContainsFunc(sw.Ports, func(p api.SwitchPort) bool { return p.Name == nb.PortID }) {
					continue
				}
				conns = slices.DeleteFunc(conns, func(c api.SwitchConnection) bool { return c.Port == nb.PortID })
				conns = append(conns, api.SwitchConnection{Port: nb.PortID, MachineID: m.ID, NICMAC: nic.MAC})
				if rack == "" {
					rack = sw.RackID
				}
			}
		}
		if !slices.Equal(conns, sw.Connections) {
			sw.Connections = conns
			if err := tx.Switches().Update(ctx, sw); err != nil {
				return "", err
			}
		}
	}
	return rack, nil
}

// switchIs reports whether an LLDP neighbour is the switch: by system name or a port MAC as chassis.
func switchIs(sw *api.Switch, nb api.LLDPNeighbor) bool {
	if nb.SystemName != "" && (nb.SystemName == sw.ID || nb.SystemName == sw.Name) {
		return true
	}
	return nb.ChassisID != "" && slices.ContainsFunc(sw.Ports, func(p api.SwitchPort) bool {
		return strings.EqualFold(p.MAC, nb.ChassisID)
	})
}

// Dhcp records that a known MAC is PXE booting and returns its machine ID ("" for unknown MACs).
func (s *Service) Dhcp(ctx context.Context, partitionID, mac string) (string, error) {
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return "", apierror.Invalid("mac %q: %v", mac, err)
	}
	// Most DHCP traffic of a fresh partition is from MACs nobody registered yet: answer those from
	// a read transaction instead of queueing them behind writers.
	var known bool
	err = s.store.Read(ctx, func(tx store.Tx) error {
		_, err := tx.Lookup(ctx, store.KindMachine, "mac:"+hw.String())
		known = err == nil
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		return err
	})
	if err != nil || !known {
		return "", err
	}
	var machineID string
	err = s.store.Write(ctx, func(tx store.Tx) error {
		id, err := tx.Lookup(ctx, store.KindMachine, "mac:"+hw.String())
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		m, err := tx.Machines().Get(ctx, id)
		if err != nil {
			return err
		}
		if partitionID != "" && m.PartitionID != partitionID {
			return fmt.Errorf("mac %s belongs to partition %s: %w", hw, m.PartitionID, apierror.ErrForbidden)
		}
		machineID = id
		return s.appendEvent(ctx, tx, m, api.EventRequest{Event: api.EventPXEBooting})
	})
	return machineID, err
}

// Lease returns the PXE address of mac in [first, last]: the one it already holds, else the lowest
// free one. The range is a pool in the store, so concurrent boot-servers agree.
func (s *Service) Lease(ctx context.Context, partitionID, mac string, first, last netip.Addr) (netip.Addr, error) {
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return netip.Addr{}, apierror.Invalid("mac %q: %v", mac, err)
	}
	if !first.Is4() || !last.Is4() || last.Less(first) {
		return netip.Addr{}, apierror.Invalid("lease range %s-%s is not two ascending IPv4 addresses", first, last)
	}
	pool := "lease/" + partitionID
	lo, hi := uint64(ipv4(first)), uint64(ipv4(last))
	var ip uint64
	err = s.store.Write(ctx, func(tx store.Tx) error {
		held, err := tx.Held(ctx, pool, hw.String())
		if err != nil {
			return err
		}
		for _, v := range held {
			if v >= lo && v <= hi {
				ip = v
				return nil
			}
		}
		ip, err = tx.Acquire(ctx, pool, lo, hi, 0, hw.String())
		return err
	})
	if err != nil {
		return netip.Addr{}, fmt.Errorf("lease for %s: %w", hw, err)
	}
	return netip.AddrFrom4([4]byte{byte(ip >> 24), byte(ip >> 16), byte(ip >> 8), byte(ip)}), nil
}

func ipv4(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// BootDecision says what a MAC boots: the hammer for unknown, free, reinstalling or not yet
// installed machines; the disk for installed ones.
func (s *Service) BootDecision(ctx context.Context, partitionID, mac string) (*api.BootDecision, error) {
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return nil, apierror.Invalid("mac %q: %v", mac, err)
	}
	d := &api.BootDecision{Action: api.BootActionHammer}
	err = s.store.Read(ctx, func(tx store.Tx) error {
		if id, err := tx.Lookup(ctx, store.KindMachine, "mac:"+hw.String()); err == nil {
			m, err := tx.Machines().Get(ctx, id)
			if err != nil {
				return err
			}
			if partitionID == "" {
				partitionID = m.PartitionID
			}
			if m.PartitionID != partitionID {
				return fmt.Errorf("mac %s belongs to partition %s: %w", hw, m.PartitionID, apierror.ErrForbidden)
			}
			d.MachineID = m.ID
			if a := m.Allocation; a != nil && a.Succeeded && !a.Reinstall {
				d.Action = api.BootActionDisk
				return nil
			}
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		p, err := tx.Partitions().Get(ctx, partitionID)
		if err != nil {
			return err
		}
		d.Kernel, d.Initrd, d.Cmdline = p.Boot.KernelURL, p.Boot.InitrdURL, p.Boot.Cmdline
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("boot decision for %s: %w", mac, err)
	}
	return d, nil
}
