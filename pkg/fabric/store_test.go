package fabric

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/machine"
	"github.com/metalforge/metalforge/pkg/machine/machinetest"
	"github.com/metalforge/metalforge/pkg/store"
	"github.com/metalforge/metalforge/pkg/store/sqlite"
)

// TestDesiredAndRecord runs against a real store: machines registered with LLDP neighbours naming
// the switch, one allocated, one linked only by the switch's own LLDP report.
func TestDesiredAndRecord(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	machinetest.Seed(t, st, 2) // m-000, m-001 with NICs 52:54:00:00:00:00 and :01, waiting
	err = st.Write(ctx, func(tx store.Tx) error {
		return tx.Switches().Create(ctx, &api.Switch{Meta: api.Meta{ID: "leaf1"}, PartitionID: machinetest.Partition,
			Ports: []api.SwitchPort{{Name: "swp1", MAC: "aa:00:00:00:00:01"}, {Name: "swp2", MAC: "aa:00:00:00:00:02"}}})
	})
	if err != nil {
		t.Fatal(err)
	}
	ms := machine.New(machine.Config{Store: st})
	// m-000 registers again, now with its LLDP neighbour: leaf1 swp1.
	if _, err := ms.Register(ctx, &api.Machine{Meta: api.Meta{ID: "m-000"}, PartitionID: machinetest.Partition, RackID: "r0",
		Hardware: api.MachineHardware{CPUs: []api.MachineCPU{{Cores: 8}}, NICs: []api.MachineNIC{{Name: "eth0", MAC: "52:54:00:00:00:00",
			Neighbors: []api.LLDPNeighbor{{SystemName: "leaf1", PortID: "swp1"}}}}}}); err != nil {
		t.Fatal(err)
	}
	desired := func() *SwitchDesired {
		t.Helper()
		var d *SwitchDesired
		if err := st.Read(ctx, func(tx store.Tx) error { d, err = Desired(ctx, tx, "leaf1"); return err }); err != nil {
			t.Fatal(err)
		}
		return d
	}
	if d := desired(); d.Ports[0].State != PortPXE || len(d.VRFs) != 0 {
		t.Fatalf("before allocation: %+v", d)
	}
	req := machinetest.AllocateRequest()
	req.MachineID = "m-000"
	m, err := ms.Allocate(ctx, req, "test")
	if err != nil {
		t.Fatal(err)
	}
	n := m.Allocation.Networks[0]
	d := desired()
	want := SwitchPortDesired{Name: "swp1", State: PortTenant, MachineID: "m-000", VRF: VRFName(n.VRF), VNI: n.VRF, ASN: n.ASN,
		Prefixes: []string{"10.64.0.0/16"}}
	if diff := cmp.Diff(want, d.Ports[0]); diff != "" {
		t.Errorf("allocated port (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]SwitchVRF{{Name: VRFName(n.VRF), VNI: n.VRF}}, d.VRFs); diff != "" {
		t.Errorf("vrfs (-want +got):\n%s", diff)
	}

	// The agent reports: swp1 applied, swp2 sees m-001's NIC by LLDP.
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var sw *api.Switch
	err = st.Write(ctx, func(tx store.Tx) error {
		sw, err = Record(ctx, tx, "leaf1", &SwitchSyncReport{Time: now, Duration: 42 * time.Millisecond, Revision: d.Revision,
			Ports: []SwitchPortReport{{Name: "swp1", ActualState: PortTenant, VRF: VRFName(n.VRF), BGPState: "Established"},
				{Name: "swp2", ActualState: PortPXE}, {Name: "swp9", ActualState: PortPXE}},
			Neighbors: []SwitchNeighbor{{Port: "swp2", ChassisID: "52:54:00:00:00:01", PortID: "52:54:00:00:00:01"},
				{Port: "swp1", ChassisID: "de:ad:be:ef:00:00", PortID: "eth0"}, {Port: "swp9", PortID: "52:54:00:00:00:00"}}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	wantSw := []api.SwitchPort{
		{Name: "swp1", MAC: "aa:00:00:00:00:01", VRF: VRFName(n.VRF), DesiredState: PortTenant, ActualState: PortTenant, BGPState: "Established"},
		{Name: "swp2", MAC: "aa:00:00:00:00:02", DesiredState: PortPXE, ActualState: PortPXE},
	}
	if diff := cmp.Diff(wantSw, sw.Ports); diff != "" {
		t.Errorf("ports (-want +got):\n%s", diff)
	}
	wantConns := []api.SwitchConnection{{Port: "swp1", MachineID: "m-000", NICMAC: "52:54:00:00:00:00"},
		{Port: "swp2", MachineID: "m-001", NICMAC: "52:54:00:00:00:01"}}
	if diff := cmp.Diff(wantConns, sw.Connections); diff != "" {
		t.Errorf("connections (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(&api.SwitchSync{Time: now, Duration: 42 * time.Millisecond}, sw.LastSync); diff != "" {
		t.Errorf("last sync (-want +got):\n%s", diff)
	}

	if _, err := ms.Free(ctx, "m-000"); err != nil {
		t.Fatal(err)
	}
	if d := desired(); d.Ports[0].State != PortPXE || len(d.VRFs) != 0 {
		t.Errorf("after free: %+v", d)
	}
}
