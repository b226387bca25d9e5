package machine_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/apierror"
	"github.com/metalforge/metalforge/pkg/machine"
	"github.com/metalforge/metalforge/pkg/store"
)

// pending lists the pending BMC commands of a machine as "command" strings, oldest first.
func (f *fixture) pending(machineID string) []string {
	f.t.Helper()
	cmds, err := f.svc.PendingCommands(f.ctx, partitionID)
	if err != nil {
		f.t.Fatalf("pending commands: %v", err)
	}
	var out []string
	for _, c := range cmds {
		if c.MachineID == machineID {
			out = append(out, c.Command)
		}
	}
	return out
}

func TestFree(t *testing.T) {
	f := newFixture(t, fixtureConfig{machines: 2})
	static := f.createIP(api.IPAllocateRequest{NetworkID: internetID, ProjectID: projA, Address: "185.1.0.100", Type: api.IPStatic,
		Name: "ingress"}, "")
	req := f.req()
	req.Tags = []string{"cluster=a"}
	req.Networks = append(req.Networks, api.AllocationNetwork{NetworkID: internetID, IPs: []string{static.Address}})
	m := f.allocate(req)
	phoneHome(t, f, m.ID)
	other := f.allocate(f.req())

	freed, err := f.svc.Free(f.ctx, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if freed.Allocation != nil || freed.Waiting || freed.PreAllocated || len(freed.Tags) != 0 {
		t.Errorf("freed machine: allocation %v, waiting %v, preallocated %v, tags %v", freed.Allocation, freed.Waiting,
			freed.PreAllocated, freed.Tags)
	}
	if diff := cmp.Diff(freed, f.get(m.ID)); diff != "" {
		t.Errorf("stored machine differs from the returned one (-returned +stored):\n%s", diff)
	}
	// The ephemeral address is gone, the static one stays with the project, detached.
	if ips := f.ipsOf(m.ID); len(ips) != 0 {
		t.Errorf("freed machine still has ips %v", ips)
	}
	var ips []*api.IP
	f.read(func(tx store.Tx) error {
		var err error
		ips, _, err = tx.IPs().List(f.ctx, store.Query{})
		return err
	})
	want := []*api.IP{
		{Meta: api.Meta{ID: "10.0.0.2"}, Address: "10.0.0.2", NetworkID: privateAID, ProjectID: projA, Type: api.IPEphemeral, MachineID: other.ID},
		{Meta: api.Meta{ID: "185.1.0.100", Name: "ingress"}, Address: "185.1.0.100", NetworkID: internetID, ProjectID: projA, Type: api.IPStatic},
	}
	if diff := cmp.Diff(want, ips, ignoreMeta); diff != "" {
		t.Errorf("ips after free (-want +got):\n%s", diff)
	}
	if asn := f.asnOf(m.ID); len(asn) != 0 {
		t.Errorf("freed machine still holds ASN %v", asn)
	}
	if asn := f.asnOf(other.ID); len(asn) != 1 {
		t.Errorf("the other machine lost its ASN: %v", asn)
	}
	if diff := cmp.Diff([]string{api.BootPXE, api.PowerCycle}, f.pending(m.ID)); diff != "" {
		t.Errorf("BMC commands (-want +got):\n%s", diff)
	}
	if ev := freed.LastEvent; ev == nil || ev.Event != api.EventMachineReclaim {
		t.Errorf("last event %+v, want Machine Reclaim", ev)
	}
	if bd, err := f.svc.BootDecision(f.ctx, partitionID, nicMAC(0, 0)); err != nil || bd.Action != api.BootActionHammer {
		t.Errorf("boot decision after free: %+v, %v; want the hammer", bd, err)
	}

	// Back through the hammer, the machine gets the freed address and ASN again.
	f.markWaiting(m.ID)
	again := f.allocate(f.req())
	if n := again.Allocation.Networks[0]; again.ID != m.ID || n.IPs[0] != "10.0.0.1" || n.ASN != machine.ASNMin {
		t.Errorf("reallocation: %s with %v, ASN %d; want %s with the freed 10.0.0.1 and ASN %d", again.ID, n.IPs, n.ASN, m.ID,
			machine.ASNMin)
	}
}

func TestFreeRefused(t *testing.T) {
	f := newFixture(t, fixtureConfig{machines: 2})
	m := f.allocate(f.req())
	if _, err := f.svc.SetState(f.ctx, m.ID, api.MachineStateRequest{Value: api.StateLocked, Description: "legal hold"}); err != nil {
		t.Fatal(err)
	}
	free := machineID(0)
	if free == m.ID {
		free = machineID(1)
	}
	before := f.dump()
	tests := []struct {
		name    string
		id      string
		wantErr error
	}{
		{"locked", m.ID, apierror.ErrUnavailable},
		{"not allocated", free, apierror.ErrUnavailable},
		{"unknown", "nope", store.ErrNotFound},
	}
	for _, tc := range tests {
		if _, err := f.svc.Free(f.ctx, tc.id); !errors.Is(err, tc.wantErr) {
			t.Errorf("Free(%s): %v, want %v", tc.name, err, tc.wantErr)
		}
	}
	if diff := cmp.Diff(before, f.dump()); diff != "" {
		t.Errorf("refused frees changed the store (-before +after):\n%s", diff)
	}
	// Unlocked, it can be freed.
	if _, err := f.svc.SetState(f.ctx, m.ID, api.MachineStateRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Free(f.ctx, m.ID); err != nil {
		t.Errorf("free after unlock: %v", err)
	}
}

func TestReinstall(t *testing.T) {
	f := newFixture(t, fixtureConfig{machines: 1})
	f.write(func(tx store.Tx) error {
		return tx.Images().Create(f.ctx, &api.Image{Meta: api.Meta{ID: "ubuntu-26.04"}, OS: "ubuntu", OSVersion: "26.04",
			Features: []string{api.FeatureMachine}})
	})
	m := f.allocate(f.req())
	oldBoot := &api.BootInfo{ImageID: imgUbuntu, PrimaryDisk: "/dev/nvme0n1", OSPartition: "/dev/nvme0n1p2",
		Kernel: "/boot/vmlinuz", Initrd: "/boot/initrd.img", Cmdline: "root=UUID=1234 console=ttyS0"}
	if err := f.svc.Report(f.ctx, m.ID, api.InstallReport{Success: true, BootInfo: oldBoot}); err != nil {
		t.Fatal(err)
	}
	phoneHome(t, f, m.ID)
	f.clock.Advance(time.Minute)

	before := f.dump()
	if _, err := f.svc.Reinstall(f.ctx, m.ID, api.MachineReinstallRequest{ImageID: imgFirewall}); !errors.Is(err, apierror.ErrInvalid) {
		t.Errorf("reinstall with an image without the machine feature: %v, want invalid", err)
	}
	if _, err := f.svc.Reinstall(f.ctx, m.ID, api.MachineReinstallRequest{ImageID: "windows"}); !errors.Is(err, apierror.ErrInvalid) {
		t.Errorf("reinstall with an unknown image: %v, want invalid", err)
	}
	if _, err := f.svc.AbortReinstall(f.ctx, m.ID, false); !errors.Is(err, apierror.ErrUnavailable) {
		t.Errorf("abort a reinstall that was not started: %v, want unavailable", err)
	}
	if diff := cmp.Diff(before, f.dump()); diff != "" {
		t.Errorf("refused reinstalls changed the store (-before +after):\n%s", diff)
	}

	got, err := f.svc.Reinstall(f.ctx, m.ID, api.MachineReinstallRequest{ImageID: "ubuntu-26.04"})
	if err != nil {
		t.Fatal(err)
	}
	a := got.Allocation
	if a.ImageID != "ubuntu-26.04" || !a.Reinstall || a.Succeeded {
		t.Errorf("after reinstall: image %s, reinstall %v, succeeded %v", a.ImageID, a.Reinstall, a.Succeeded)
	}
	if diff := cmp.Diff(oldBoot, a.BootInfo); diff != "" {
		t.Errorf("boot info of the old OS (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{api.BootPXE, api.PowerCycle}, f.pending(m.ID)); diff != "" {
		t.Errorf("BMC commands (-want +got):\n%s", diff)
	}
	if bd, _ := f.svc.BootDecision(f.ctx, partitionID, nicMAC(0, 0)); bd.Action != api.BootActionHammer {
		t.Errorf("a reinstalling machine boots %q, want the hammer", bd.Action)
	}
	// The allocation (addresses, ASN) is kept.
	if ips, asn := f.ipsOf(m.ID), f.asnOf(m.ID); len(ips) != 1 || len(asn) != 1 {
		t.Errorf("reinstall changed ips %v or ASN %v", ips, asn)
	}

	// The image can't be written: the primary disk is untouched, go back to the old OS.
	if _, err := f.svc.AbortReinstall(f.ctx, m.ID, true); !errors.Is(err, apierror.ErrUnavailable) {
		t.Errorf("abort with the primary disk wiped: %v, want unavailable", err)
	}
	bi, err := f.svc.AbortReinstall(f.ctx, m.ID, false)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(oldBoot, bi); diff != "" {
		t.Errorf("AbortReinstall returned (-want old boot info +got):\n%s", diff)
	}
	after := f.get(m.ID)
	if a := after.Allocation; a.ImageID != imgUbuntu || a.Reinstall {
		t.Errorf("after abort: image %s, reinstall %v; want %s, false", a.ImageID, a.Reinstall, imgUbuntu)
	}
	if ev := after.LastEvent; ev == nil || ev.Event != api.EventPlannedReboot {
		t.Errorf("last event %+v, want Planned Reboot", ev)
	}
	if _, err := f.svc.AbortReinstall(f.ctx, m.ID, false); !errors.Is(err, apierror.ErrUnavailable) {
		t.Errorf("second abort: %v, want unavailable", err)
	}
}

func TestReinstallWithoutBootInfo(t *testing.T) {
	f := newFixture(t, fixtureConfig{machines: 2})
	if _, err := f.svc.Reinstall(f.ctx, machineID(0), api.MachineReinstallRequest{ImageID: imgUbuntu}); !errors.Is(err, apierror.ErrUnavailable) {
		t.Errorf("reinstall a free machine: %v, want unavailable", err)
	}
	m := f.allocate(f.req())
	if _, err := f.svc.Reinstall(f.ctx, m.ID, api.MachineReinstallRequest{ImageID: imgUbuntu}); err != nil {
		t.Fatal(err)
	}
	// Never installed: nothing to go back to.
	if _, err := f.svc.AbortReinstall(f.ctx, m.ID, false); !errors.Is(err, apierror.ErrUnavailable) {
		t.Errorf("abort without an old OS: %v, want unavailable", err)
	}
}

func TestReport(t *testing.T) {
	f := newFixture(t, fixtureConfig{machines: 2})
	m := f.allocate(f.req())
	free := machineID(0)
	if free == m.ID {
		free = machineID(1)
	}
	bi := &api.BootInfo{ImageID: imgUbuntu, PrimaryDisk: "/dev/nvme0n1", Kernel: "/boot/vmlinuz"}
	tests := []struct {
		name    string
		id      string
		r       api.InstallReport
		wantErr error
	}{
		{"not allocated", free, api.InstallReport{Success: true, BootInfo: bi}, apierror.ErrUnavailable},
		{"success without boot info", m.ID, api.InstallReport{Success: true}, apierror.ErrInvalid},
		{"unknown machine", "nope", api.InstallReport{Success: true, BootInfo: bi}, store.ErrNotFound},
		{"failure", m.ID, api.InstallReport{Message: "sha256 mismatch"}, nil},
		{"success", m.ID, api.InstallReport{Success: true, BootInfo: bi}, nil},
	}
	for _, tc := range tests {
		if err := f.svc.Report(f.ctx, tc.id, tc.r); !isErr(err, tc.wantErr) {
			t.Errorf("Report(%s) = %v, want %v", tc.name, err, tc.wantErr)
		}
	}
	log := f.eventLog(m.ID)
	last := log.Events[len(log.Events)-1]
	if last.Event != api.EventCrashed || last.Message != "install failed: sha256 mismatch" {
		t.Errorf("failed install recorded as %+v", last)
	}
	if got := f.get(m.ID).Allocation.BootInfo; !cmp.Equal(got, bi) {
		t.Errorf("boot info %+v, want %+v", got, bi)
	}
}

func TestReportWipe(t *testing.T) {
	f := newFixture(t, fixtureConfig{machines: 1})
	id := machineID(0)
	if err := f.svc.ReportWipe(f.ctx, id, api.WipeRecord{}); !errors.Is(err, apierror.ErrInvalid) {
		t.Errorf("empty wipe record: %v, want invalid", err)
	}
	w := api.WipeRecord{Disks: []api.DiskWipe{
		{Device: "/dev/nvme0n1", Method: "nvme-format", Bytes: 960 * gib, Verified: true, Samples: 64},
		{Device: "/dev/nvme1n1", Method: "blkdiscard", Bytes: 960 * gib, Verified: true, Samples: 64},
	}}
	if err := f.svc.ReportWipe(f.ctx, id, w); err != nil {
		t.Fatal(err)
	}
	w.Time = t0
	if diff := cmp.Diff(&w, f.get(id).LastWipe); diff != "" {
		t.Errorf("wipe record (-want +got):\n%s", diff)
	}
	if err := f.svc.ReportWipe(f.ctx, "nope", w); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("wipe of an unknown machine: %v, want not found", err)
	}
}

func TestSetState(t *testing.T) {
	f := newFixture(t, fixtureConfig{machines: 1})
	id := machineID(0)
	tests := []struct {
		req     api.MachineStateRequest
		wantErr error
	}{
		{api.MachineStateRequest{Value: "BROKEN", Description: "x"}, apierror.ErrInvalid},
		{api.MachineStateRequest{Value: api.StateLocked}, apierror.ErrInvalid},
		{api.MachineStateRequest{Value: api.StateTainted}, apierror.ErrInvalid},
		{api.MachineStateRequest{Value: api.StateLocked, Description: "legal hold"}, nil},
		{api.MachineStateRequest{Value: api.StateTainted, Description: "bad disk"}, nil},
		{api.MachineStateRequest{}, nil},
	}
	for _, tc := range tests {
		m, err := f.svc.SetState(f.ctx, id, tc.req)
		if !isErr(err, tc.wantErr) {
			t.Errorf("SetState(%+v) = %v, want %v", tc.req, err, tc.wantErr)
			continue
		}
		if err == nil {
			want := api.MachineState{Value: tc.req.Value, Description: tc.req.Description}
			if m.State != want || f.get(id).State != want {
				t.Errorf("SetState(%+v): returned %+v, stored %+v", tc.req, m.State, f.get(id).State)
			}
		}
	}
	if _, err := f.svc.SetState(f.ctx, "nope", api.MachineStateRequest{}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SetState of an unknown machine: %v, want not found", err)
	}
}

func TestPowerAndCommands(t *testing.T) {
	f := newFixture(t, fixtureConfig{machines: 2})
	id := machineID(0)
	if _, err := f.svc.Power(f.ctx, id, "explode"); !errors.Is(err, apierror.ErrInvalid) {
		t.Errorf("unknown command: %v, want invalid", err)
	}
	if _, err := f.svc.Power(f.ctx, "nope", api.PowerOn); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("command for an unknown machine: %v, want not found", err)
	}
	for _, c := range []string{api.PowerOn, api.LEDOn, api.BootDisk} {
		if _, err := f.svc.Power(f.ctx, id, c); err != nil {
			t.Fatalf("Power(%s): %v", c, err)
		}
	}
	if _, err := f.svc.Power(f.ctx, machineID(1), api.PowerReset); err != nil {
		t.Fatal(err)
	}

	if _, err := f.svc.SetState(f.ctx, id, api.MachineStateRequest{Value: api.StateLocked, Description: "legal hold"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{api.PowerOff, api.PowerCycle, api.PowerReset} {
		if _, err := f.svc.Power(f.ctx, id, c); !errors.Is(err, apierror.ErrUnavailable) {
			t.Errorf("Power(%s) of a locked machine: %v, want unavailable", c, err)
		}
	}
	if _, err := f.svc.Power(f.ctx, id, api.LEDOff); err != nil {
		t.Errorf("LED of a locked machine: %v", err)
	}
	if diff := cmp.Diff([]string{api.PowerOn, api.LEDOn, api.BootDisk, api.LEDOff}, f.pending(id)); diff != "" {
		t.Errorf("pending commands (-want +got):\n%s", diff)
	}

	cmds, err := f.svc.PendingCommands(f.ctx, partitionID)
	if err != nil {
		t.Fatal(err)
	}
	if other, err := f.svc.PendingCommands(f.ctx, "fra-equ02"); err != nil || len(other) != 0 {
		t.Errorf("commands of another partition: %v, %v; want none", other, err)
	}
	first := cmds[0]
	if _, err := f.svc.CommandDone(f.ctx, "fra-equ02", first.ID, api.BMCCommandDone{}); !errors.Is(err, apierror.ErrForbidden) {
		t.Errorf("done from another partition: %v, want forbidden", err)
	}
	done, err := f.svc.CommandDone(f.ctx, partitionID, first.ID, api.BMCCommandDone{Error: "ipmi timeout"})
	if err != nil {
		t.Fatal(err)
	}
	if done.Done == nil || !done.Done.Equal(t0) || done.Error != "ipmi timeout" {
		t.Errorf("done command: %+v", done)
	}
	if diff := cmp.Diff([]string{api.LEDOn, api.BootDisk, api.LEDOff}, f.pending(id)); diff != "" {
		t.Errorf("pending after done (-want +got):\n%s", diff)
	}
	if _, err := f.svc.CommandDone(f.ctx, partitionID, "nope", api.BMCCommandDone{}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("done of an unknown command: %v, want not found", err)
	}

	m, err := f.svc.ReportBMC(f.ctx, id, api.BMCReport{PowerState: "ON", LED: "on"})
	if err != nil {
		t.Fatal(err)
	}
	if m.BMC.PowerState != "ON" || m.BMC.PowerReported == nil || !m.BMC.PowerReported.Equal(t0) || m.LED.Value != "on" {
		t.Errorf("after BMC report: %+v, LED %+v", m.BMC, m.LED)
	}
}

func TestDelete(t *testing.T) {
	f := newFixture(t, fixtureConfig{machines: 2})
	alloc := f.allocate(f.req())
	free := machineID(0)
	if free == alloc.ID {
		free = machineID(1)
	}
	if _, err := f.svc.Delete(f.ctx, alloc.ID); !errors.Is(err, apierror.ErrInUse) {
		t.Errorf("delete an allocated machine: %v, want in use", err)
	}
	if _, err := f.svc.Delete(f.ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("delete an unknown machine: %v, want not found", err)
	}
	if _, err := f.svc.Delete(f.ctx, free); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Get(f.ctx, free); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleted machine: %v, want not found", err)
	}
	if _, err := f.svc.EventLog(f.ctx, free); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("event log of a deleted machine: %v, want not found", err)
	}
	for _, sw := range []string{leafID(0, 1), leafID(0, 2)} {
		conns := f.switchConns(sw)
		if len(conns) != 1 || conns[0].MachineID != alloc.ID {
			t.Errorf("connections of %s after delete: %v, want only %s", sw, conns, alloc.ID)
		}
	}
	// Its MACs are free again: the same machine can register anew.
	i := 0
	if free == machineID(1) {
		i = 1
	}
	m := f.register(f.inventory(i))
	if m.ID != free || m.Allocation != nil {
		t.Errorf("re-registered after delete: %s", m.ID)
	}
	if diff := cmp.Diff(1, len(f.eventLog(free).Events)); diff != "" {
		t.Errorf("a fresh event log after delete (-want +got):\n%s", diff)
	}
}

// Redact keeps the password in the store and removes it from what the API returns.
func TestRedact(t *testing.T) {
	f := newFixture(t, fixtureConfig{machines: 1})
	m := f.get(machineID(0))
	if m.BMC.Password == "" {
		t.Fatal("the store lost the BMC password")
	}
	got := machine.Redact(m)
	want := f.get(machineID(0))
	want.BMC.Password = ""
	if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("redacted (-want +got):\n%s", diff)
	}
}

// TestReportFailureAfterCrash: the hammer sends Crashed and then reports the failed install; the
// log shows one crash, not two.
func TestReportFailureAfterCrash(t *testing.T) {
	f := newFixture(t, fixtureConfig{machines: 1})
	m := f.allocate(f.req())
	if err := f.svc.Event(f.ctx, m.ID, api.EventRequest{Event: api.EventCrashed, Message: "install: sha256 mismatch"}); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Report(f.ctx, m.ID, api.InstallReport{Message: "install: sha256 mismatch"}); err != nil {
		t.Fatal(err)
	}
	crashes := 0
	for _, e := range f.eventLog(m.ID).Events {
		if e.Event == api.EventCrashed {
			crashes++
		}
	}
	if crashes != 1 {
		t.Fatalf("%d Crashed events for one failed install, want 1", crashes)
	}
}
