// Package bootrpctest provides fakes for testing the boot service and its clients: an in-memory
// bootrpc.Machines, a token table implementing bootrpc.Authenticator, and Serve, which runs a real
// boot service on a loopback port for the duration of a test.
package bootrpctest

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/bootrpc"
	"github.com/metalforge/metalforge/pkg/lifecycle"
	"github.com/metalforge/metalforge/pkg/store"
)

var _ bootrpc.Machines = (*Machines)(nil)

// Machines is an in-memory bootrpc.Machines. The zero value is not usable; call NewMachines.
type Machines struct {
	// Hammer is the boot decision for MACs of unallocated or unknown machines (MachineID is
	// filled in for known ones).
	Hammer api.BootDecision

	mu       sync.Mutex
	machines map[string]*api.Machine
	specs    map[string]*api.InstallSpec
	events   map[string][]api.EventRequest
	reports  map[string][]api.InstallReport
	wipes    map[string][]api.WipeRecord
	aborts   map[string][]bool
	fail     map[string]error
	waiters  map[string]int
	changed  chan struct{} // closed and replaced on every change
	leases   map[string]netip.Addr
}

// NewMachines returns an empty fake.
func NewMachines() *Machines {
	return &Machines{
		Hammer:   api.BootDecision{Action: api.BootActionHammer, Kernel: "http://boot/vmlinuz", Initrd: "http://boot/hammer.img"},
		machines: map[string]*api.Machine{},
		specs:    map[string]*api.InstallSpec{},
		events:   map[string][]api.EventRequest{},
		reports:  map[string][]api.InstallReport{},
		wipes:    map[string][]api.WipeRecord{},
		aborts:   map[string][]bool{},
		fail:     map[string]error{},
		waiters:  map[string]int{},
		changed:  make(chan struct{}),
	}
}

// Fail makes every later call of method (e.g. "Register") return err; a nil err clears it.
func (f *Machines) Fail(method string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		delete(f.fail, method)
		return
	}
	f.fail[method] = err
}

// Put stores a machine as is (a copy).
func (f *Machines) Put(m api.Machine) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.machines[m.ID] = &m
	f.notifyLocked()
}

// Allocate gives the machine an allocation and wakes its Wait calls with spec.
func (f *Machines) Allocate(machineID string, spec api.InstallSpec) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, ok := f.machines[machineID]
	if !ok {
		return fmt.Errorf("machine %s: %w", machineID, store.ErrNotFound)
	}
	if spec.Machine.Allocation == nil {
		spec.Machine.Allocation = &api.MachineAllocation{ProjectID: "p1", Hostname: machineID}
	}
	m.Allocation = spec.Machine.Allocation
	m.Waiting = false
	f.specs[machineID] = &spec
	f.notifyLocked()
	return nil
}

// Events returns the events recorded for a machine.
func (f *Machines) Events(machineID string) []api.EventRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]api.EventRequest(nil), f.events[machineID]...)
}

// Reports returns the install reports recorded for a machine.
func (f *Machines) Reports(machineID string) []api.InstallReport {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]api.InstallReport(nil), f.reports[machineID]...)
}

// Wipes returns the wipe records recorded for a machine.
func (f *Machines) Wipes(machineID string) []api.WipeRecord {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]api.WipeRecord(nil), f.wipes[machineID]...)
}

// Aborts returns the primaryDiskWiped flags of the AbortReinstall calls for a machine.
func (f *Machines) Aborts(machineID string) []bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]bool(nil), f.aborts[machineID]...)
}

// Waiters returns how many Wait calls for the machine are blocked right now.
func (f *Machines) Waiters(machineID string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.waiters[machineID]
}

// AwaitWaiters blocks until exactly n Wait calls for the machine are blocked, or ctx ends.
func (f *Machines) AwaitWaiters(ctx context.Context, machineID string, n int) error {
	for {
		f.mu.Lock()
		got, changed := f.waiters[machineID], f.changed
		f.mu.Unlock()
		if got == n {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("%d waiters for %s, want %d: %w", got, machineID, n, ctx.Err())
		}
	}
}

func (f *Machines) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// failure returns the injected error of method; f.mu must be held.
func (f *Machines) failure(method string) error { return f.fail[method] }

func (f *Machines) byMAC(partitionID, mac string) *api.Machine {
	for _, m := range f.machines {
		if m.PartitionID != partitionID {
			continue
		}
		for _, nic := range m.Hardware.NICs {
			if strings.EqualFold(nic.MAC, mac) {
				return m
			}
		}
	}
	return nil
}

func (f *Machines) get(machineID string) (*api.Machine, error) {
	m, ok := f.machines[machineID]
	if !ok {
		return nil, fmt.Errorf("machine %s: %w", machineID, store.ErrNotFound)
	}
	return m, nil
}

// Dhcp implements bootrpc.Machines.
func (f *Machines) Dhcp(_ context.Context, partitionID, mac string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failure("Dhcp"); err != nil {
		return "", err
	}
	m := f.byMAC(partitionID, mac)
	if m == nil {
		return "", fmt.Errorf("mac %s in partition %s: %w", mac, partitionID, store.ErrNotFound)
	}
	f.events[m.ID] = append(f.events[m.ID], api.EventRequest{Event: api.EventPXEBooting})
	f.notifyLocked()
	return m.ID, nil
}

// Lease implements bootrpc.Machines: a stable address per MAC, handed out in order.
func (f *Machines) Lease(_ context.Context, partitionID, mac string, first, last netip.Addr) (netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failure("Lease"); err != nil {
		return netip.Addr{}, err
	}
	if f.leases == nil {
		f.leases = map[string]netip.Addr{}
	}
	key := partitionID + "/" + mac
	if ip, ok := f.leases[key]; ok {
		return ip, nil
	}
	taken := map[netip.Addr]bool{}
	for _, ip := range f.leases {
		taken[ip] = true
	}
	for ip := first; ip.IsValid() && !last.Less(ip); ip = ip.Next() {
		if !taken[ip] {
			f.leases[key] = ip
			return ip, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("lease range %s-%s: %w", first, last, store.ErrExhausted)
}

// BootDecision implements bootrpc.Machines: allocated machines with boot info boot their disk,
// everything else the hammer.
func (f *Machines) BootDecision(_ context.Context, partitionID, mac string) (*api.BootDecision, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failure("BootDecision"); err != nil {
		return nil, err
	}
	d := f.Hammer
	m := f.byMAC(partitionID, mac)
	if m == nil {
		return &d, nil
	}
	d.MachineID = m.ID
	if a := m.Allocation; a != nil && a.BootInfo != nil {
		d = api.BootDecision{MachineID: m.ID, Action: api.BootActionDisk, Kernel: a.BootInfo.Kernel, Initrd: a.BootInfo.Initrd, Cmdline: a.BootInfo.Cmdline}
	}
	return &d, nil
}

// Register implements bootrpc.Machines: it keeps the inventory, sets size "unknown" when none is
// given and keeps an existing allocation.
func (f *Machines) Register(_ context.Context, m *api.Machine) (*api.Machine, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failure("Register"); err != nil {
		return nil, err
	}
	if m.ID == "" {
		return nil, fmt.Errorf("machine without id: %w", bootrpc.ErrInvalid)
	}
	n := *m
	n.Allocation = nil
	if old, ok := f.machines[m.ID]; ok {
		n.Allocation = old.Allocation
	}
	if n.SizeID == "" {
		n.SizeID = "unknown"
	}
	n.Changed = time.Now()
	f.machines[n.ID] = &n
	f.notifyLocked()
	out := n
	return &out, nil
}

// Event implements bootrpc.Machines; unknown event names wrap bootrpc.ErrInvalid.
func (f *Machines) Event(_ context.Context, machineID string, ev api.EventRequest) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failure("Event"); err != nil {
		return err
	}
	if _, err := f.get(machineID); err != nil {
		return err
	}
	if !lifecycle.Known(ev.Event) {
		return fmt.Errorf("event %q: %w", ev.Event, bootrpc.ErrInvalid)
	}
	f.events[machineID] = append(f.events[machineID], ev)
	f.notifyLocked()
	return nil
}

// Wait implements bootrpc.Machines.
func (f *Machines) Wait(ctx context.Context, machineID string) (*api.InstallSpec, error) {
	f.mu.Lock()
	if err := f.failure("Wait"); err != nil {
		f.mu.Unlock()
		return nil, err
	}
	m, err := f.get(machineID)
	if err != nil {
		f.mu.Unlock()
		return nil, err
	}
	m.Waiting = true
	f.waiters[machineID]++
	f.notifyLocked()
	defer func() {
		f.waiters[machineID]--
		if f.waiters[machineID] == 0 {
			delete(f.waiters, machineID)
		}
		f.notifyLocked()
		f.mu.Unlock()
	}()
	for {
		if spec, ok := f.specs[machineID]; ok {
			out := *spec
			return &out, nil
		}
		changed := f.changed
		f.mu.Unlock()
		select {
		case <-changed:
			f.mu.Lock()
		case <-ctx.Done():
			f.mu.Lock()
			m.Waiting = false
			return nil, ctx.Err()
		}
	}
}

// Report implements bootrpc.Machines.
func (f *Machines) Report(_ context.Context, machineID string, r api.InstallReport) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failure("Report"); err != nil {
		return err
	}
	m, err := f.get(machineID)
	if err != nil {
		return err
	}
	if m.Allocation == nil {
		return fmt.Errorf("report for unallocated machine %s: %w", machineID, store.ErrConflict)
	}
	if r.Success && r.BootInfo != nil {
		m.Allocation.BootInfo = r.BootInfo
	}
	f.reports[machineID] = append(f.reports[machineID], r)
	f.notifyLocked()
	return nil
}

// ReportWipe implements bootrpc.Machines.
func (f *Machines) ReportWipe(_ context.Context, machineID string, w api.WipeRecord) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failure("ReportWipe"); err != nil {
		return err
	}
	m, err := f.get(machineID)
	if err != nil {
		return err
	}
	m.LastWipe = &w
	f.wipes[machineID] = append(f.wipes[machineID], w)
	f.notifyLocked()
	return nil
}

// AbortReinstall implements bootrpc.Machines: the previous boot info unless the primary disk was
// wiped already.
func (f *Machines) AbortReinstall(_ context.Context, machineID string, primaryDiskWiped bool) (*api.BootInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failure("AbortReinstall"); err != nil {
		return nil, err
	}
	m, err := f.get(machineID)
	if err != nil {
		return nil, err
	}
	f.aborts[machineID] = append(f.aborts[machineID], primaryDiskWiped)
	f.notifyLocked()
	if primaryDiskWiped || m.Allocation == nil || m.Allocation.BootInfo == nil {
		return nil, nil
	}
	bi := *m.Allocation.BootInfo
	return &bi, nil
}

// Get implements bootrpc.Machines.
func (f *Machines) Get(_ context.Context, machineID string) (*api.Machine, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failure("Get"); err != nil {
		return nil, err
	}
	m, err := f.get(machineID)
	if err != nil {
		return nil, err
	}
	out := *m
	return &out, nil
}
