package machine_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/apierror"
	"github.com/metalforge/metalforge/pkg/store"
)

// ignoreMeta drops what the store sets on every write.
var ignoreMeta = cmpopts.IgnoreFields(api.Meta{}, "Created", "Changed", "Version")

func (f *fixture) switchConns(id string) []api.SwitchConnection {
	f.t.Helper()
	var sw *api.Switch
	f.read(func(tx store.Tx) error {
		var err error
		sw, err = tx.Switches().Get(f.ctx, id)
		return err
	})
	return sw.Connections
}

func TestRegisterNew(t *testing.T) {
	f := newFixture(t, fixtureConfig{racks: 2})
	in := f.inventory(1) // rack 2, first port
	in.Hardware.NICs[0].MAC = "B4-96-91-00-00-01"
	got := f.register(in)

	want := f.inventory(1)
	want.SizeID = sizeLarge
	want.RackID = rackID(1)
	want.Liveliness = api.LivelinessAlive
	want.LastEvent = &api.ProvisioningEvent{Time: t0, Event: api.EventRegistering, Message: "size " + sizeLarge}
	if diff := cmp.Diff(want, got, ignoreMeta); diff != "" {
		t.Errorf("registered machine (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(got, f.get(in.ID)); diff != "" {
		t.Errorf("stored machine differs from the returned one (-returned +stored):\n%s", diff)
	}
	log := f.eventLog(in.ID)
	if diff := cmp.Diff([]api.ProvisioningEvent{*want.LastEvent}, log.Events); diff != "" {
		t.Errorf("event log (-want +got):\n%s", diff)
	}

	// LLDP linked both NICs to their leaves; the other rack saw nothing.
	wantConns := map[string][]api.SwitchConnection{
		leafID(1, 1): {{Port: "Ethernet0", MachineID: in.ID, NICMAC: nicMAC(1, 0)}},
		leafID(1, 2): {{Port: "Ethernet0", MachineID: in.ID, NICMAC: nicMAC(1, 1)}},
		leafID(0, 1): nil,
		leafID(0, 2): nil,
	}
	for sw, want := range wantConns {
		if diff := cmp.Diff(want, f.switchConns(sw)); diff != "" {
			t.Errorf("connections of %s (-want +got):\n%s", sw, diff)
		}
	}

	// The MAC is found in any spelling.
	id, err := f.svc.Dhcp(f.ctx, partitionID, "B4:96:91:00:00:01")
	if err != nil || id != in.ID {
		t.Errorf("Dhcp by the MAC = %q, %v; want %s", id, err, in.ID)
	}
}

func TestRegisterSize(t *testing.T) {
	f := newFixture(t, fixtureConfig{})
	tests := []struct {
		name string
		hw   func(hw *api.MachineHardware)
		want string
	}{
		{"large", func(*api.MachineHardware) {}, sizeLarge},
		{"small", func(hw *api.MachineHardware) {
			hw.CPUs = []api.MachineCPU{{Model: "Intel Xeon E-2278G", Cores: 8, Threads: 16}}
			hw.Memory = 32 * gib
		}, sizeSmall},
		{"too many cores", func(hw *api.MachineHardware) { hw.CPUs[0].Cores, hw.CPUs[1].Cores = 64, 64 }, api.SizeUnknown},
		{"too little memory", func(hw *api.MachineHardware) { hw.Memory = 64 * gib }, api.SizeUnknown},
		{"too little storage", func(hw *api.MachineHardware) { hw.Disks = hw.Disks[:1] }, api.SizeUnknown},
		{"nothing", func(hw *api.MachineHardware) { *hw = api.MachineHardware{} }, api.SizeUnknown},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := f.inventory(i)
			tc.hw(&in.Hardware)
			m, err := f.svc.Register(f.ctx, in)
			if err != nil {
				t.Fatal(err)
			}
			if m.SizeID != tc.want {
				t.Errorf("size %q, want %q", m.SizeID, tc.want)
			}
			if got := f.get(in.ID).SizeID; got != tc.want {
				t.Errorf("stored size %q, want %q", got, tc.want)
			}
			if msg := f.eventLog(in.ID).Events[0].Message; msg != "size "+tc.want {
				t.Errorf("registering event says %q", msg)
			}
		})
	}
}

func TestRegisterInvalid(t *testing.T) {
	f := newFixture(t, fixtureConfig{machines: 1})
	f.write(func(tx store.Tx) error {
		return tx.Partitions().Create(f.ctx, &api.Partition{Meta: api.Meta{ID: "fra-equ02"}})
	})
	tests := []struct {
		name    string
		change  func(m *api.Machine)
		wantErr error
		wantMsg string
	}{
		{"bad mac", func(m *api.Machine) { m.Hardware.NICs[1].MAC = "b4:96:91:zz:00:01" }, apierror.ErrInvalid, `nic "lan1"`},
		{"short mac", func(m *api.Machine) { m.Hardware.NICs[0].MAC = "b4:96:91:00:01" }, apierror.ErrInvalid, `nic "lan0"`},
		{"empty mac", func(m *api.Machine) { m.Hardware.NICs[0].MAC = "" }, apierror.ErrInvalid, `nic "lan0"`},
		{"no id", func(m *api.Machine) { m.ID = "" }, apierror.ErrInvalid, "machine id"},
		{"no partition", func(m *api.Machine) { m.PartitionID = "" }, apierror.ErrInvalid, "partition"},
		{"unknown partition", func(m *api.Machine) { m.PartitionID = "nowhere" }, apierror.ErrInvalid, "nowhere"},
		{"mac of another machine", func(m *api.Machine) { m.Hardware.NICs[0].MAC = nicMAC(0, 0) }, store.ErrDuplicate, nicMAC(0, 0)},
		{"known machine in another partition", func(m *api.Machine) { m.ID, m.PartitionID = machineID(0), "fra-equ02" },
			apierror.ErrInvalid, "belongs to partition " + partitionID},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := f.dump()
			in := f.inventory(1)
			tc.change(in)
			_, err := f.svc.Register(f.ctx, in)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Register = %v, want %v", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("Register = %q, want a message with %q", err, tc.wantMsg)
			}
			if diff := cmp.Diff(before, f.dump()); diff != "" {
				t.Errorf("a rejected registration changed the store (-before +after):\n%s", diff)
			}
		})
	}
}

func TestReRegisterKeepsAllocation(t *testing.T) {
	f := newFixture(t, fixtureConfig{machines: 2, racks: 2})
	req := f.req()
	req.MachineID = machineID(0)
	req.Tags = []string{"cluster=a"}
	alloc := f.allocate(req)
	if _, err := f.svc.SetState(f.ctx, alloc.ID, api.MachineStateRequest{Value: api.StateTainted, Description: "flaky DIMM"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.ReportBMC(f.ctx, alloc.ID, api.BMCReport{PowerState: "ON"}); err != nil {
		t.Fatal(err)
	}
	before := f.get(alloc.ID)

	// The hammer comes back (reinstall) with more memory, a BMC without password, and cabled to
	// another port of the same leaves.
	in := f.inventory(0)
	in.Hardware.Memory = 512 * gib
	in.BMC.Password = ""
	for n := range in.Hardware.NICs {
		in.Hardware.NICs[n].Neighbors[0].PortID = "Ethernet8"
	}
	got := f.register(in)

	want := before
	want.Hardware = in.Hardware
	want.LastEvent = got.LastEvent
	if diff := cmp.Diff(want, got, ignoreMeta); diff != "" {
		t.Errorf("re-registered machine (-want +got):\n%s", diff)
	}
	if got.Allocation == nil || got.State.Value != api.StateTainted || got.BMC.Password != "secret-0" ||
		got.BMC.PowerState != "ON" || !slices.Equal(got.Tags, []string{"cluster=a"}) {
		t.Errorf("re-register lost allocation, state, tags or BMC: %+v", got)
	}
	if ips := f.ipsOf(alloc.ID); len(ips) != 1 {
		t.Errorf("ips of the machine after re-register: %v", ips)
	}
	// The links moved to the new port; machine 1's links stay.
	wantConns := []api.SwitchConnection{{Port: "Ethernet8", MachineID: alloc.ID, NICMAC: nicMAC(0, 0)}}
	if diff := cmp.Diff(wantConns, f.switchConns(leafID(0, 1))); diff != "" {
		t.Errorf("connections of rack 1 leaf 1 (-want +got):\n%s", diff)
	}
	if conns := f.switchConns(leafID(1, 1)); len(conns) != 1 || conns[0].MachineID != machineID(1) {
		t.Errorf("connections of rack 2 leaf 1: %v", conns)
	}

	// Recabled into the other rack: the machine moves, the old leaves forget it.
	in = f.inventory(0)
	in.Hardware.NICs[0].Neighbors = []api.LLDPNeighbor{{SystemName: leafID(1, 1), PortID: "Ethernet40"}}
	in.Hardware.NICs[1].Neighbors = []api.LLDPNeighbor{{ChassisID: strings.ToUpper(portMAC(1, 2, 1)), PortID: "Ethernet40"}}
	got = f.register(in)
	if got.RackID != rackID(1) {
		t.Errorf("rack %q after recabling, want %s", got.RackID, rackID(1))
	}
	if conns := f.switchConns(leafID(0, 1)); len(conns) != 0 {
		t.Errorf("old leaf keeps connections %v", conns)
	}
	if conns := f.switchConns(leafID(1, 2)); len(conns) != 2 {
		t.Errorf("new leaf 2 has connections %v, want machine 1's and machine 0's", conns)
	}
}

func TestRegisterWithoutLLDP(t *testing.T) {
	f := newFixture(t, fixtureConfig{})
	in := f.inventory(0)
	in.RackID = "rack-manual"
	for n := range in.Hardware.NICs {
		in.Hardware.NICs[n].Neighbors = nil
	}
	if m := f.register(in); m.RackID != "rack-manual" {
		t.Errorf("rack %q, want the reported rack-manual", m.RackID)
	}
	// A neighbour on a port the switch does not have links nothing.
	in.Hardware.NICs[0].Neighbors = []api.LLDPNeighbor{{SystemName: leafID(0, 1), PortID: "Ethernet999"}}
	if m := f.register(in); m.RackID != "rack-manual" {
		t.Errorf("rack %q, want rack-manual kept", m.RackID)
	}
	if conns := f.switchConns(leafID(0, 1)); len(conns) != 0 {
		t.Errorf("connections %v to a port the switch does not have", conns)
	}
}

func TestDhcp(t *testing.T) {
	f := newFixture(t, fixtureConfig{machines: 1})
	id, err := f.svc.Dhcp(f.ctx, partitionID, "02:00:00:00:00:99")
	if err != nil || id != "" {
		t.Errorf("Dhcp of an unknown MAC = %q, %v; want \"\", nil", id, err)
	}
	id, err = f.svc.Dhcp(f.ctx, partitionID, strings.ToUpper(nicMAC(0, 1)))
	if err != nil || id != machineID(0) {
		t.Fatalf("Dhcp of a known MAC = %q, %v", id, err)
	}
	if ev := f.get(id).LastEvent; ev == nil || ev.Event != api.EventPXEBooting {
		t.Errorf("last event %+v, want PXE Booting", ev)
	}
	if _, err := f.svc.Dhcp(f.ctx, "fra-equ02", nicMAC(0, 0)); !errors.Is(err, apierror.ErrForbidden) {
		t.Errorf("Dhcp from another partition: %v, want forbidden", err)
	}
	if _, err := f.svc.Dhcp(f.ctx, partitionID, "not-a-mac"); !errors.Is(err, apierror.ErrInvalid) {
		t.Errorf("Dhcp of a bad MAC: %v, want invalid", err)
	}
}

func TestBootDecision(t *testing.T) {
	f := newFixture(t, fixtureConfig{machines: 3})
	hammer := func(id string) *api.BootDecision {
		return &api.BootDecision{MachineID: id, Action: api.BootActionHammer, Kernel: "http://boot.fra-equ01/vmlinuz",
			Initrd: "http://boot.fra-equ01/hammer.cpio.gz", Cmdline: "console=ttyS0,115200n8 ip=dhcp"}
	}
	installed, installing, reinstalling := machineID(0), machineID(1), machineID(2)
	for _, id := range []string{installed, installing, reinstalling} {
		req := f.req()
		req.MachineID = id
		f.allocate(req)
	}
	for _, id := range []string{installed, reinstalling} {
		phoneHome(t, f, id)
	}
	if _, err := f.svc.Reinstall(f.ctx, reinstalling, api.MachineReinstallRequest{ImageID: imgUbuntu}); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name      string
		partition string
		mac       string
		want      *api.BootDecision
		wantErr   error
	}{
		{"unknown mac", partitionID, "02:00:00:00:00:99", hammer(""), nil},
		{"installed", partitionID, nicMAC(0, 0), &api.BootDecision{MachineID: installed, Action: api.BootActionDisk}, nil},
		{"installed, partition from the machine", "", nicMAC(0, 1), &api.BootDecision{MachineID: installed, Action: api.BootActionDisk}, nil},
		{"allocated, not yet installed", partitionID, nicMAC(1, 0), hammer(installing), nil},
		{"reinstalling", partitionID, nicMAC(2, 0), hammer(reinstalling), nil},
		{"another partition", "fra-equ02", nicMAC(0, 0), nil, apierror.ErrForbidden},
		{"bad mac", partitionID, "nope", nil, apierror.ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := f.svc.BootDecision(f.ctx, tc.partition, tc.mac)
			if !isErr(err, tc.wantErr) {
				t.Fatalf("BootDecision = %v, want %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("BootDecision (-want +got):\n%s", diff)
			}
		})
	}
	// A free machine boots the hammer.
	f2 := newFixture(t, fixtureConfig{machines: 1})
	got, err := f2.svc.BootDecision(f2.ctx, partitionID, nicMAC(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(hammer(machineID(0)), got); diff != "" {
		t.Errorf("BootDecision of a free machine (-want +got):\n%s", diff)
	}
}

// phoneHome walks an allocated machine through install until its OS phones home.
func phoneHome(t *testing.T, f *fixture, id string) {
	t.Helper()
	for _, e := range []string{api.EventInstalling, api.EventBootingNewKernel, api.EventPhonedHome} {
		if err := f.svc.Event(f.ctx, id, api.EventRequest{Event: e}); err != nil {
			t.Fatalf("event %s: %v", e, err)
		}
	}
	if a := f.get(id).Allocation; a == nil || !a.Succeeded {
		t.Fatalf("machine %s phoned home, allocation %+v not succeeded", id, a)
	}
}
