package machine_test

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/apierror"
	"github.com/metalforge/metalforge/pkg/lifecycle"
	"github.com/metalforge/metalforge/pkg/machine"
	"github.com/metalforge/metalforge/pkg/network"
	"github.com/metalforge/metalforge/pkg/store"
)

// createNetwork stores a network that must be valid.
func (f *fixture) createNetwork(n *api.Network) *api.Network {
	f.t.Helper()
	f.write(func(tx store.Tx) error { return network.Create(f.ctx, tx, n) })
	return n
}

// createProject stores a project with quotas.
func (f *fixture) createProject(id string, q api.Quotas) {
	f.t.Helper()
	f.write(func(tx store.Tx) error {
		return tx.Projects().Create(f.ctx, &api.Project{Meta: api.Meta{ID: id}, Quotas: q})
	})
}

func TestAllocate(t *testing.T) {
	f := newFixture(t, fixtureConfig{machines: 3})
	priv := f.network(privateAID)
	req := f.req()
	req.Name = "worker-1"
	req.Hostname = "worker-1"
	req.Description = "first worker"
	req.SSHPubKeys = []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBjb user@example"}
	req.UserData = "#cloud-config\n"
	req.Tags = []string{"cluster=a"}
	m, err := f.svc.Allocate(f.ctx, req, "alice")
	if err != nil {
		t.Fatal(err)
	}

	want := &api.MachineAllocation{
		Created: t0, Creator: "alice", ProjectID: projA, Name: "worker-1", Hostname: "worker-1", Description: "first worker",
		ImageID: imgUbuntu, SSHPubKeys: req.SSHPubKeys, UserData: req.UserData, Role: api.RoleMachine,
		Networks: []api.MachineNetwork{{NetworkID: privateAID, NetworkType: api.NetworkPrivate, Prefixes: []string{"10.0.0.0/22"},
			IPs: []string{"10.0.0.1"}, VRF: priv.VRF, ASN: machine.ASNMin, Private: true}},
	}
	if diff := cmp.Diff(want, m.Allocation); diff != "" {
		t.Errorf("allocation (-want +got):\n%s", diff)
	}
	if priv.VRF < network.VRFMin {
		t.Errorf("private network vrf %d", priv.VRF)
	}
	if m.Waiting || !m.PreAllocated || len(m.Tags) != 1 || m.Tags[0] != "cluster=a" {
		t.Errorf("waiting %v, preallocated %v, tags %v; want false, true, [cluster=a]", m.Waiting, m.PreAllocated, m.Tags)
	}
	if diff := cmp.Diff(m, f.get(m.ID)); diff != "" {
		t.Errorf("stored machine differs from the returned one (-returned +stored):\n%s", diff)
	}
	wantIPs := []*api.IP{{Meta: api.Meta{ID: "10.0.0.1"}, Address: "10.0.0.1", NetworkID: privateAID, ProjectID: projA,
		Type: api.IPEphemeral, MachineID: m.ID}}
	if diff := cmp.Diff(wantIPs, f.ipsOf(m.ID), ignoreMeta); diff != "" {
		t.Errorf("ips of the machine (-want +got):\n%s", diff)
	}
	if got := f.asnOf(m.ID); !cmp.Equal(got, []uint64{machine.ASNMin}) {
		t.Errorf("asn pool holds %v for the machine, want [%d]", got, machine.ASNMin)
	}

	// The next allocation gets the next address and ASN, and another machine.
	m2 := f.allocate(f.req())
	if m2.ID == m.ID {
		t.Fatalf("machine %s allocated twice", m.ID)
	}
	n := m2.Allocation.Networks[0]
	if n.IPs[0] != "10.0.0.2" || n.ASN != machine.ASNMin+1 {
		t.Errorf("second allocation got %v and ASN %d, want 10.0.0.2 and %d", n.IPs, n.ASN, machine.ASNMin+1)
	}
	if m2.Allocation.Name != m2.ID || m2.Allocation.Hostname != m2.ID {
		t.Errorf("default name %q and hostname %q, want the machine id", m2.Allocation.Name, m2.Allocation.Hostname)
	}
	waiting := 0
	for _, m := range f.list() {
		if m.Waiting {
			waiting++
		}
	}
	if waiting != 1 {
		t.Errorf("%d machines still waiting, want 1", waiting)
	}
}

func TestAllocateByID(t *testing.T) {
	f := newFixture(t, fixtureConfig{machines: 3})
	req := f.req()
	req.MachineID = machineID(2)
	req.PartitionID, req.SizeID = "", ""
	m := f.allocate(req)
	if m.ID != machineID(2) {
		t.Errorf("allocated %s, want %s", m.ID, machineID(2))
	}
	if _, err := f.svc.Allocate(f.ctx, req, ""); !errors.Is(err, apierror.ErrUnavailable) {
		t.Errorf("allocate it again: %v, want unavailable", err)
	}
	req.MachineID = "00000000-0000-4000-8000-ffffffffffff"
	if _, err := f.svc.Allocate(f.ctx, req, ""); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("allocate an unknown machine: %v, want not found", err)
	}
	req.MachineID = machineID(1)
	req.SizeID = sizeSmall
	if _, err := f.svc.Allocate(f.ctx, req, ""); !errors.Is(err, apierror.ErrInvalid) {
		t.Errorf("allocate a machine by id with another size: %v, want invalid", err)
	}
	req.SizeID, req.PartitionID = sizeLarge, partitionID
	if m := f.allocate(req); m.ID != machineID(1) {
		t.Errorf("allocated %s, want %s", m.ID, machineID(1))
	}
}

func TestAllocateAutoNetwork(t *testing.T) {
	f := newFixture(t, fixtureConfig{machines: 2})
	req := f.req()
	req.ProjectID = projB
	req.Networks = []api.AllocationNetwork{{NetworkID: internetID}}
	req.AutoNetwork = true
	m := f.allocate(req)

	nets := m.Allocation.Networks
	if len(nets) != 2 {
		t.Fatalf("networks %+v, want the new private one and the internet", nets)
	}
	priv := f.network(nets[0].NetworkID)
	if priv.Type != api.NetworkPrivate || priv.ProjectID != projB || priv.ParentNetworkID != superID || priv.PartitionID != partitionID {
		t.Errorf("auto network %+v, want a private network of %s from %s", priv, projB, superID)
	}
	if priv.VRF < network.VRFMin || nets[0].VRF != priv.VRF || !nets[0].Private {
		t.Errorf("auto network vrf %d, allocation says %d, private %v", priv.VRF, nets[0].VRF, nets[0].Private)
	}
	if p := netip.MustParsePrefix(priv.Prefixes[0]); !p.Contains(netip.MustParseAddr(nets[0].IPs[0])) {
		t.Errorf("address %v is outside the auto network %s", nets[0].IPs, p)
	}
	if nets[1].NetworkID != internetID || nets[1].Private || !nets[1].NAT || nets[1].IPs[0] != "185.1.0.1" {
		t.Errorf("internet network of the allocation: %+v", nets[1])
	}
	private := 0
	for _, n := range nets {
		if n.Private {
			private++
		}
		if n.ASN != nets[0].ASN {
			t.Errorf("network %s has ASN %d, network 0 %d: one ASN per machine", n.NetworkID, n.ASN, nets[0].ASN)
		}
	}
	if private != 1 {
		t.Errorf("%d private networks, want exactly one", private)
	}
	if ips := f.ipsOf(m.ID); len(ips) != 2 {
		t.Errorf("ips of the machine: %v, want two", ips)
	}
}

func TestAllocateFirewall(t *testing.T) {
	f := newFixture(t, fixtureConfig{machines: 1})
	req := f.req()
	req.Role = api.RoleFirewall
	req.ImageID = imgFirewall
	req.Networks = append(req.Networks, api.AllocationNetwork{NetworkID: internetID})
	m := f.allocate(req)

	var got []string
	for _, n := range m.Allocation.Networks {
		got = append(got, fmt.Sprintf("%s %s private=%v underlay=%v ips=%v", n.NetworkID, n.NetworkType, n.Private, n.Underlay, n.IPs))
		if n.ASN != machine.ASNMin {
			t.Errorf("network %s ASN %d, want %d", n.NetworkID, n.ASN, machine.ASNMin)
		}
	}
	want := []string{
		privateAID + " private private=true underlay=false ips=[10.0.0.1]",
		internetID + " external private=false underlay=false ips=[185.1.0.1]",
		underlayID + " underlay private=false underlay=true ips=[10.255.0.1]",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("firewall networks (-want +got):\n%s", diff)
	}
	if m.Allocation.Role != api.RoleFirewall {
		t.Errorf("role %q", m.Allocation.Role)
	}
	if ips := f.ipsOf(m.ID); len(ips) != 3 {
		t.Errorf("ips of the firewall: %v", ips)
	}
}

func TestAllocateNamedIPs(t *testing.T) {
	f := newFixture(t, fixtureConfig{machines: 1})
	f.createIP(api.IPAllocateRequest{NetworkID: internetID, ProjectID: projA, Address: "185.1.0.100", Type: api.IPStatic,
		Name: "ingress"}, "")
	req := f.req()
	req.Networks = []api.AllocationNetwork{{NetworkID: privateAID, IPs: []string{"10.0.1.50"}},
		{NetworkID: internetID, IPs: []string{"185.1.0.100"}}}
	m := f.allocate(req)
	if a, b := m.Allocation.Networks[0].IPs, m.Allocation.Networks[1].IPs; !cmp.Equal(a, []string{"10.0.1.50"}) ||
		!cmp.Equal(b, []string{"185.1.0.100"}) {
		t.Errorf("addresses %v, %v; want the named ones", a, b)
	}
	want := []*api.IP{
		{Meta: api.Meta{ID: "10.0.1.50"}, Address: "10.0.1.50", NetworkID: privateAID, ProjectID: projA, Type: api.IPStatic, MachineID: m.ID},
		{Meta: api.Meta{ID: "185.1.0.100", Name: "ingress"}, Address: "185.1.0.100", NetworkID: internetID, ProjectID: projA,
			Type: api.IPStatic, MachineID: m.ID},
	}
	if diff := cmp.Diff(want, f.ipsOf(m.ID), ignoreMeta); diff != "" {
		t.Errorf("ips (-want +got):\n%s", diff)
	}
}

// TestAllocateRejected: every rejected allocation leaves the database exactly as it was: no
// addresses, no ASN or VRF, no network, the machines still waiting. Several cases fail only after
// the ASN, a private network and addresses were taken in the transaction.
func TestAllocateRejected(t *testing.T) {
	f := newFixture(t, fixtureConfig{machines: 2})
	zero := 0
	f.createProject("no-networks", api.Quotas{Networks: &zero})
	f.createNetwork(&api.Network{Meta: api.Meta{ID: "private-b"}, Type: api.NetworkPrivate, ProjectID: projB,
		PartitionID: partitionID, ParentNetworkID: superID, Prefixes: []string{"10.0.4.0/22"}})
	f.createNetwork(&api.Network{Meta: api.Meta{ID: "private-a2"}, Type: api.NetworkPrivate, ProjectID: projA,
		PartitionID: partitionID, ParentNetworkID: superID, Prefixes: []string{"10.0.8.0/22"}})
	f.createNetwork(&api.Network{Meta: api.Meta{ID: "tiny"}, Type: api.NetworkExternal, Prefixes: []string{"192.0.2.0/30"}})
	f.createIP(api.IPAllocateRequest{NetworkID: "tiny", ProjectID: projA}, "")
	f.createIP(api.IPAllocateRequest{NetworkID: "tiny", ProjectID: projA}, "")
	f.createIP(api.IPAllocateRequest{NetworkID: internetID, ProjectID: projA, Address: "185.1.0.100", Type: api.IPStatic}, "")
	f.createIP(api.IPAllocateRequest{NetworkID: internetID, ProjectID: projB, Address: "185.1.0.101", Type: api.IPStatic}, "ghost")
	f.write(func(tx store.Tx) error {
		return tx.FilesystemLayouts().Create(f.ctx, &api.FilesystemLayout{Meta: api.Meta{ID: "layout-small"},
			Constraints: api.LayoutConstraints{Sizes: []string{sizeSmall}}})
	})

	// auto is an allocation for project B with a network allocated on the fly, plus more networks.
	auto := func(project string, more ...api.AllocationNetwork) func(r *api.MachineAllocateRequest) {
		return func(r *api.MachineAllocateRequest) {
			r.ProjectID, r.AutoNetwork, r.Networks = project, true, more
		}
	}
	tests := []struct {
		name    string
		change  func(r *api.MachineAllocateRequest)
		wantErr error
		wantMsg string
	}{
		{"unknown size", func(r *api.MachineAllocateRequest) { r.SizeID = "c9-huge" }, apierror.ErrInvalid, "c9-huge"},
		{"unknown partition", func(r *api.MachineAllocateRequest) { r.PartitionID = "nowhere" }, apierror.ErrInvalid, "nowhere"},
		{"unknown project", func(r *api.MachineAllocateRequest) { r.ProjectID = "nobody" }, apierror.ErrInvalid, "nobody"},
		{"unknown image", func(r *api.MachineAllocateRequest) { r.ImageID = "windows" }, apierror.ErrInvalid, "windows"},
		{"image without the machine feature", func(r *api.MachineAllocateRequest) { r.ImageID = imgFirewall }, apierror.ErrInvalid,
			"no machine feature"},
		{"image without the firewall feature", func(r *api.MachineAllocateRequest) { r.Role = api.RoleFirewall }, apierror.ErrInvalid,
			"no firewall feature"},
		{"expired image", func(r *api.MachineAllocateRequest) { r.ImageID = imgExpired }, apierror.ErrInvalid, "expired"},
		{"bad role", func(r *api.MachineAllocateRequest) { r.Role = "router" }, apierror.ErrInvalid, "router"},
		{"bad hostname", func(r *api.MachineAllocateRequest) { r.Hostname = "Worker_1" }, apierror.ErrInvalid, "Worker_1"},
		{"no project", func(r *api.MachineAllocateRequest) { r.ProjectID = "" }, apierror.ErrInvalid, "project"},
		{"no image", func(r *api.MachineAllocateRequest) { r.ImageID = "" }, apierror.ErrInvalid, "image"},
		{"no size", func(r *api.MachineAllocateRequest) { r.SizeID = "" }, apierror.ErrInvalid, "size"},
		{"huge user data", func(r *api.MachineAllocateRequest) { r.UserData = strings.Repeat("x", 64<<10+1) }, apierror.ErrInvalid,
			"64 KiB"},
		{"network without id", func(r *api.MachineAllocateRequest) { r.Networks = append(r.Networks, api.AllocationNetwork{}) },
			apierror.ErrInvalid, "no id"},
		{"unknown network", func(r *api.MachineAllocateRequest) {
			r.Networks = append(r.Networks, api.AllocationNetwork{NetworkID: "dmz"})
		}, apierror.ErrInvalid, "dmz"},
		{"no private network", func(r *api.MachineAllocateRequest) {
			r.Networks = []api.AllocationNetwork{{NetworkID: internetID}}
		}, apierror.ErrInvalid, "exactly one private network"},
		{"two private networks", func(r *api.MachineAllocateRequest) {
			r.Networks = append(r.Networks, api.AllocationNetwork{NetworkID: "private-a2"})
		}, apierror.ErrInvalid, "exactly one private network"},
		{"other project's private network", func(r *api.MachineAllocateRequest) {
			r.Networks = []api.AllocationNetwork{{NetworkID: "private-b"}}
		}, apierror.ErrForbidden, "private-b"},
		{"super network", func(r *api.MachineAllocateRequest) {
			r.Networks = append(r.Networks, api.AllocationNetwork{NetworkID: superID})
		}, apierror.ErrInvalid, "super network"},
		{"underlay for a machine", func(r *api.MachineAllocateRequest) {
			r.Networks = append(r.Networks, api.AllocationNetwork{NetworkID: underlayID})
		}, apierror.ErrInvalid, "only firewalls"},
		{"unknown layout", func(r *api.MachineAllocateRequest) { r.FilesystemLayoutID = "raid-9" }, apierror.ErrInvalid, "raid-9"},
		{"layout of another size", func(r *api.MachineAllocateRequest) { r.FilesystemLayoutID = "layout-small" }, apierror.ErrInvalid,
			"not for size"},
		{"no machine of the size", func(r *api.MachineAllocateRequest) { r.SizeID = sizeSmall }, apierror.ErrUnavailable, "no machine"},
		{"by id with another size", func(r *api.MachineAllocateRequest) { r.MachineID, r.SizeID = machineID(0), sizeSmall },
			apierror.ErrInvalid, "with size"},
		// These fail after the ASN, a network and addresses were taken.
		{"named address outside the network", func(r *api.MachineAllocateRequest) {
			r.Networks = []api.AllocationNetwork{{NetworkID: privateAID, IPs: []string{"10.0.9.1"}}}
		}, apierror.ErrInvalid, "10.0.9.1"},
		{"auto network, then another project's address", auto(projB, api.AllocationNetwork{NetworkID: internetID,
			IPs: []string{"185.1.0.100"}}), apierror.ErrForbidden, "185.1.0.100"},
		{"auto network, then an address in use", auto(projB, api.AllocationNetwork{NetworkID: internetID,
			IPs: []string{"185.1.0.101"}}), apierror.ErrInUse, "ghost"},
		{"auto network, then an exhausted network", auto(projB, api.AllocationNetwork{NetworkID: "tiny"}), store.ErrExhausted, "tiny"},
		{"auto network over the network quota", auto("no-networks"), apierror.ErrUnavailable, "quota"},
		{"auto network, firewall, then an address in use", func(r *api.MachineAllocateRequest) {
			auto(projB, api.AllocationNetwork{NetworkID: internetID, IPs: []string{"185.1.0.101"}})(r)
			r.Role, r.ImageID = api.RoleFirewall, imgFirewall
		}, apierror.ErrInUse, "ghost"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := f.dump()
			req := f.req()
			tc.change(&req)
			m, err := f.svc.Allocate(f.ctx, req, "test")
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Allocate = %s, %v; want %v", idOf(m), err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("Allocate = %q, want a message with %q", err, tc.wantMsg)
			}
			if s := apierror.Status(err); s < 400 || s >= 500 {
				t.Errorf("status %d for %v, want a client error", s, err)
			}
			if diff := cmp.Diff(before, f.dump()); diff != "" {
				t.Errorf("a rejected allocation changed the store (-before +after):\n%s", diff)
			}
		})
	}
	// Both machines are still there to allocate.
	for range 2 {
		f.allocate(f.req())
	}
}

func TestAllocateNeverPicks(t *testing.T) {
	f := newFixture(t, fixtureConfig{machines: 6})
	tainted, locked, notWaiting, dead, allocated, good := machineID(0), machineID(1), machineID(2), machineID(3), machineID(4), machineID(5)
	if _, err := f.svc.SetState(f.ctx, tainted, api.MachineStateRequest{Value: api.StateTainted, Description: "ECC errors"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.SetState(f.ctx, locked, api.MachineStateRequest{Value: api.StateLocked, Description: "forensics"}); err != nil {
		t.Fatal(err)
	}
	f.update(notWaiting, func(m *api.Machine) { m.Waiting = false })
	req := f.req()
	req.MachineID = allocated
	f.allocate(req)
	// Time passes; every machine but the dead one sends a heartbeat.
	f.clock.Advance(lifecycle.Timeout + time.Minute)
	for _, m := range f.machines {
		if m.ID != dead {
			if err := f.svc.Event(f.ctx, m.ID, api.EventRequest{Event: api.EventAlive}); err != nil {
				t.Fatal(err)
			}
		}
	}

	if m := f.allocate(f.req()); m.ID != good {
		t.Errorf("allocated %s, want the only allocatable %s", m.ID, good)
	}
	before := f.dump()
	if m, err := f.svc.Allocate(f.ctx, f.req(), ""); !errors.Is(err, apierror.ErrUnavailable) {
		t.Errorf("Allocate = %s, %v; want unavailable", idOf(m), err)
	}
	for _, id := range []string{tainted, locked, notWaiting, dead, allocated} {
		req := f.req()
		req.MachineID = id
		if m, err := f.svc.Allocate(f.ctx, req, ""); !errors.Is(err, apierror.ErrUnavailable) {
			t.Errorf("Allocate(%s) = %s, %v; want unavailable", id, idOf(m), err)
		}
	}
	if diff := cmp.Diff(before, f.dump()); diff != "" {
		t.Errorf("refused allocations changed the store (-before +after):\n%s", diff)
	}
}

func (f *fixture) reserve(id, project string, amount int, partitions ...string) {
	f.t.Helper()
	f.write(func(tx store.Tx) error {
		return tx.SizeReservations().Create(f.ctx, &api.SizeReservation{Meta: api.Meta{ID: id}, SizeID: sizeLarge, Amount: amount,
			ProjectID: project, PartitionIDs: partitions})
	})
}

func TestSizeReservation(t *testing.T) {
	f := newFixture(t, fixtureConfig{machines: 4})
	f.reserve("res-b", projB, 2, partitionID)
	f.reserve("res-b-elsewhere", projB, 10, "fra-equ02")
	f.reserve("res-a-elsewhere", projA, 10, "fra-equ02")
	forA, forB := f.req(), f.req()
	forB.ProjectID, forB.Networks, forB.AutoNetwork = projB, nil, true

	steps := []struct {
		who     string
		req     api.MachineAllocateRequest
		wantErr error
	}{
		{"B", forB, nil},                     // 3 waiting, B's reservation still claims 1
		{"A", forA, nil},                     // 3 > 1
		{"A", forA, nil},                     // 2 > 1
		{"A", forA, apierror.ErrUnavailable}, // 1 left, reserved for B
		{"B", forB, nil},                     // the holder takes it
		{"B", forB, apierror.ErrUnavailable}, // none left
	}
	for i, s := range steps {
		_, err := f.svc.Allocate(f.ctx, s.req, "")
		if !isErr(err, s.wantErr) {
			t.Fatalf("step %d: %s allocates: %v, want %v", i, s.who, err, s.wantErr)
		}
		if s.wantErr != nil && s.who == "A" && !strings.Contains(err.Error(), "1 reserved for other projects") {
			t.Errorf("step %d: %v, want the reservation named", i, err)
		}
	}
}

// TestSizeReservationDeadMachines: machines that can't be allocated don't count as free for a
// reservation; otherwise another project takes what the holder was promised.
func TestSizeReservationDeadMachines(t *testing.T) {
	f := newFixture(t, fixtureConfig{machines: 4})
	f.reserve("res-b", projB, 2, partitionID)
	f.clock.Advance(lifecycle.Timeout + time.Minute)
	for _, m := range f.machines[:3] { // machine 3 stays silent: dead
		if err := f.svc.Event(f.ctx, m.ID, api.EventRequest{Event: api.EventAlive}); err != nil {
			t.Fatal(err)
		}
	}
	f.allocate(f.req()) // 3 alive, 2 reserved
	if m, err := f.svc.Allocate(f.ctx, f.req(), ""); !errors.Is(err, apierror.ErrUnavailable) {
		t.Fatalf("A takes a second machine: %s, %v; want unavailable, the two alive ones are reserved for B", idOf(m), err)
	}
	forB := f.req()
	forB.ProjectID, forB.Networks, forB.AutoNetwork = projB, nil, true
	for range 2 {
		f.allocate(forB)
	}
}

func TestRackSpreading(t *testing.T) {
	f := newFixture(t, fixtureConfig{machines: 8, racks: 2})
	// Project B holds a machine in rack 1: it does not count for A.
	forB := f.req()
	forB.ProjectID, forB.Networks, forB.AutoNetwork, forB.MachineID = projB, nil, true, machineID(0)
	f.allocate(forB)

	perRack := map[string]int{}
	for i := range 4 {
		m := f.allocate(f.req())
		perRack[m.RackID]++
		if d := perRack[rackID(0)] - perRack[rackID(1)]; d < -1 || d > 1 {
			t.Fatalf("after %d allocations: %v, want the racks balanced", i+1, perRack)
		}
	}
	if want := map[string]int{rackID(0): 2, rackID(1): 2}; !cmp.Equal(want, perRack) {
		t.Errorf("project A per rack %v, want %v", perRack, want)
	}
}

// TestRackSpreadingByTag: with SpreadTag, only the project's machines carrying the tag count, so a
// second cluster of the same project is spread on its own.
func TestRackSpreadingByTag(t *testing.T) {
	f := newFixture(t, fixtureConfig{machines: 8, racks: 2})
	// Cluster a holds two machines, both in rack 1 (machines 0 and 2).
	for _, i := range []int{0, 2} {
		req := f.req()
		req.MachineID, req.Tags = machineID(i), []string{"cluster=a"}
		f.allocate(req)
	}
	// Spread by the project, cluster b's first two machines both go to rack 2.
	// Spread by its tag, they go one to each rack.
	perRack := map[string]int{}
	for range 2 {
		req := f.req()
		req.Tags, req.SpreadTag = []string{"cluster=b"}, "cluster=b"
		perRack[f.allocate(req).RackID]++
	}
	if want := map[string]int{rackID(0): 1, rackID(1): 1}; !cmp.Equal(want, perRack) {
		t.Errorf("cluster b per rack %v, want %v", perRack, want)
	}
}

func TestAllocateQuota(t *testing.T) {
	f := newFixture(t, fixtureConfig{machines: 3})
	two := 2
	f.createProject("limited", api.Quotas{Machines: &two})
	req := f.req()
	req.ProjectID, req.Networks, req.AutoNetwork = "limited", nil, true
	first := f.allocate(req)
	f.allocate(req)
	before := f.dump()
	if m, err := f.svc.Allocate(f.ctx, req, ""); !errors.Is(err, apierror.ErrUnavailable) || !strings.Contains(err.Error(), "quota") {
		t.Fatalf("third allocation: %s, %v; want unavailable over quota", idOf(m), err)
	}
	byID := req
	byID.MachineID = machineID(2)
	if _, err := f.svc.Allocate(f.ctx, byID, ""); !errors.Is(err, apierror.ErrUnavailable) {
		t.Errorf("third allocation by id: %v; want unavailable over quota", err)
	}
	if diff := cmp.Diff(before, f.dump()); diff != "" {
		t.Errorf("refused allocation changed the store (-before +after):\n%s", diff)
	}
	// Other projects are not limited by it.
	f.allocate(f.req())
	// Freeing one makes room (the freed machine is not waiting yet, so use the last one).
	if _, err := f.svc.Free(f.ctx, first.ID); err != nil {
		t.Fatal(err)
	}
	f.markWaiting(first.ID)
	f.allocate(req)
}

// idOf names a machine in a message; "<nil>" for none.
func idOf(m *api.Machine) string {
	if m == nil {
		return "<nil>"
	}
	return m.ID
}

// TestAllocateFindsTheLastAllocatable: a rack with many waiting machines that can't be allocated
// (dead, tainted) and one that can, far from the start of the rack: it must be found.
func TestAllocateFindsTheLastAllocatable(t *testing.T) {
	const n = 40
	f := newFixture(t, fixtureConfig{machines: n})
	for i := range n - 5 {
		if i%2 == 0 {
			if _, err := f.svc.SetState(f.ctx, machineID(i), api.MachineStateRequest{Value: api.StateTainted, Description: "bad"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	f.clock.Advance(lifecycle.Timeout + time.Minute)
	for _, i := range []int{2, 33} { // 2 is tainted, 33 the only allocatable one
		f.event(machineID(i), api.EventAlive)
	}
	if m, err := f.svc.Allocate(f.ctx, f.req(), ""); err != nil || m.ID != machineID(33) {
		t.Fatalf("Allocate = %s, %v; want %s, the only alive untainted machine", idOf(m), err, machineID(33))
	}
	if m, err := f.svc.Allocate(f.ctx, f.req(), ""); !errors.Is(err, apierror.ErrUnavailable) {
		t.Errorf("Allocate = %s, %v; want unavailable", idOf(m), err)
	}
}

// TestAllocateFindsBehindManyDead: more dead machines in a rack than any bounded probe would look at
// must not hide the one alive machine behind them.
func TestAllocateFindsBehindManyDead(t *testing.T) {
	const n = 100
	f := newFixture(t, fixtureConfig{machines: n})
	f.clock.Advance(lifecycle.Timeout + time.Minute)
	f.event(machineID(90), api.EventAlive) // the others are dead
	if m, err := f.svc.Allocate(f.ctx, f.req(), ""); err != nil || m.ID != machineID(90) {
		t.Fatalf("Allocate = %s, %v; want %s, the only alive machine", idOf(m), err, machineID(90))
	}
}

// TestAllocateAutoNetworkReuses: the second auto-network allocation of a project in a partition
// attaches the project's existing private network instead of allocating another.
func TestAllocateAutoNetworkReuses(t *testing.T) {
	f := newFixture(t, fixtureConfig{machines: 2})
	req := f.req()
	req.ProjectID, req.Networks, req.AutoNetwork = projB, nil, true
	first, second := f.allocate(req), f.allocate(req)
	if a, b := first.Allocation.Networks[0].NetworkID, second.Allocation.Networks[0].NetworkID; a != b {
		t.Fatalf("auto networks %s and %s, want the project's one network twice", a, b)
	}
	if first.Allocation.Networks[0].IPs[0] == second.Allocation.Networks[0].IPs[0] {
		t.Fatal("both machines got the same address")
	}
}

// TestAllocateByIDHonoursReservations: a named machine is not handed to a project when the
// allocatable machines of its size are promised to another project.
func TestAllocateByIDHonoursReservations(t *testing.T) {
	f := newFixture(t, fixtureConfig{machines: 2})
	f.reserve("res-b", projB, 2, partitionID)
	before := f.dump()
	req := f.req()
	req.MachineID = machineID(0)
	if _, err := f.svc.Allocate(f.ctx, req, ""); !errors.Is(err, apierror.ErrUnavailable) || !strings.Contains(err.Error(), "reserved") {
		t.Fatalf("allocate a reserved machine by id for another project: %v, want unavailable", err)
	}
	if diff := cmp.Diff(before, f.dump()); diff != "" {
		t.Errorf("refused allocation changed the store (-before +after):\n%s", diff)
	}
	req.ProjectID, req.Networks, req.AutoNetwork = projB, nil, true
	f.allocate(req) // the holder may
}

// TestAllocateIPQuota: a machine allocation counts against the project's IP quota.
func TestAllocateIPQuota(t *testing.T) {
	f := newFixture(t, fixtureConfig{machines: 2})
	one := 1
	f.createProject("few-ips", api.Quotas{IPs: &one})
	req := f.req()
	req.ProjectID, req.Networks, req.AutoNetwork = "few-ips", nil, true
	f.allocate(req)
	before := f.dump()
	if _, err := f.svc.Allocate(f.ctx, req, ""); !errors.Is(err, apierror.ErrUnavailable) || !strings.Contains(err.Error(), "quota of 1 ips") {
		t.Fatalf("second allocation over the ip quota: %v, want unavailable", err)
	}
	if diff := cmp.Diff(before, f.dump()); diff != "" {
		t.Errorf("refused allocation changed the store (-before +after):\n%s", diff)
	}
}
