package agent

import (
	"context"
	"errors"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/auth"
	"github.com/metalforge/metalforge/pkg/fabric"
	"github.com/metalforge/metalforge/pkg/machine"
	"github.com/metalforge/metalforge/pkg/machine/machinetest"
	"github.com/metalforge/metalforge/pkg/rest"
	"github.com/metalforge/metalforge/pkg/store"
	"github.com/metalforge/metalforge/pkg/store/sqlite"
	"github.com/metalforge/metalforge/switch-agent/render"
)

// device is a fake switch: it records what it is asked to apply.
type device struct {
	mu      sync.Mutex
	applied []*render.Config
	fail    error
}

func (d *device) Ports(context.Context) ([]api.SwitchPort, error) {
	return []api.SwitchPort{{Name: "swp1", MAC: "aa:00:00:00:00:01"}, {Name: "swp2", MAC: "aa:00:00:00:00:02"}}, nil
}

func (d *device) Apply(_ context.Context, c *render.Config) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fail != nil {
		return d.fail
	}
	d.applied = append(d.applied, c)
	return nil
}

func (d *device) Observe(context.Context) ([]fabric.SwitchPortReport, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	state := fabric.PortPXE
	if n := len(d.applied); n > 0 && len(d.applied[n-1].Links.VRFs) > 0 {
		state = fabric.PortTenant
	}
	return []fabric.SwitchPortReport{{Name: "swp1", ActualState: state, BGPState: "Established"}}, nil
}

func (d *device) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.applied)
}

// validator rejects configs while bad is set.
type validator struct{ bad error }

func (v *validator) Validate(context.Context, []byte) error { return v.bad }

// TestSync runs the agent against a real REST server and store: registration, the desired state
// of an allocated machine's port, skipping unchanged revisions, refusing configs that fail
// validation, and the reports in the switch.
func TestSync(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	machinetest.Seed(t, st, 1)
	ms := machine.New(machine.Config{Store: st})
	srv := httptest.NewServer(rest.New(rest.Config{Store: st, Machines: ms, Auth: auth.NewAuthenticator(st, time.Second)}).Handler())
	t.Cleanup(srv.Close)
	var token, otherToken string
	err = st.Write(ctx, func(tx store.Tx) error {
		if err := tx.Partitions().Create(ctx, &api.Partition{Meta: api.Meta{ID: "p2"}}); err != nil {
			return err
		}
		var err error
		if token, _, err = auth.Issue(ctx, tx, api.Token{Role: api.RoleService, PartitionID: machinetest.Partition}); err != nil {
			return err
		}
		otherToken, _, err = auth.Issue(ctx, tx, api.Token{Role: api.RoleService, PartitionID: "p2"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	dev, val := &device{}, &validator{}
	cfg := Config{SwitchID: "leaf1", PartitionID: machinetest.Partition, API: srv.URL, Token: token,
		Switch:   render.Switch{ASN: 64513, Loopback: netip.MustParseAddr("10.255.0.11"), Uplinks: []string{"uplink"}},
		Renderer: render.Lab{}, Device: dev, Validator: val, ErrorBackoff: time.Nanosecond, ReportInterval: time.Hour}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	getSwitch := func() *api.Switch {
		t.Helper()
		var sw *api.Switch
		if err := st.Read(ctx, func(tx store.Tx) error { sw, err = tx.Switches().Get(ctx, "leaf1"); return err }); err != nil {
			t.Fatal(err)
		}
		return sw
	}

	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if sw := getSwitch(); len(sw.Ports) != 2 || sw.LastSync == nil || sw.LastSync.Error != "" {
		t.Fatalf("after first sync: %+v", sw)
	}
	if dev.count() != 1 || len(dev.applied[0].Links.PXEPorts) != 2 {
		t.Fatalf("first apply: %d configs", dev.count())
	}
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if dev.count() != 1 {
		t.Errorf("unchanged revision applied again")
	}

	// m-000 is connected to swp1 and allocated: the port goes into its VRF, but only once the
	// config passes validation.
	if _, err := ms.Register(ctx, &api.Machine{Meta: api.Meta{ID: "m-000"}, PartitionID: machinetest.Partition, RackID: "r0",
		Hardware: api.MachineHardware{CPUs: []api.MachineCPU{{Cores: 8}}, NICs: []api.MachineNIC{{Name: "eth0", MAC: "52:54:00:00:00:00",
			Neighbors: []api.LLDPNeighbor{{SystemName: "leaf1", PortID: "swp1"}}}}}}); err != nil {
		t.Fatal(err)
	}
	req := machinetest.AllocateRequest()
	req.MachineID = "m-000"
	if _, err := ms.Allocate(ctx, req, "test"); err != nil {
		t.Fatal(err)
	}
	val.bad = errors.New("line 3: % Unknown command")
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if dev.count() != 1 {
		t.Errorf("a config that failed validation was applied")
	}
	if sw := getSwitch(); sw.LastSync == nil || sw.LastSync.Error == "" {
		t.Errorf("validation error not reported: %+v", sw.LastSync)
	}
	val.bad = nil
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if dev.count() != 2 || len(dev.applied[1].Links.VRFs) != 1 || dev.applied[1].Links.VRFs[0].Ports[0] != "swp1" {
		t.Fatalf("allocation not applied: %+v", dev.applied)
	}
	sw := getSwitch()
	if sw.LastSync.Error != "" || sw.Ports[0].DesiredState != fabric.PortTenant || sw.Ports[0].ActualState != fabric.PortTenant ||
		sw.Ports[0].BGPState != "Established" {
		t.Errorf("after allocation: %+v %+v", sw.LastSync, sw.Ports)
	}
	if st := a.Status(); st.Err != nil || st.Applies != 3 || st.Revision != dev.applied[1].Revision {
		t.Errorf("status %+v", st)
	}

	// A service token of another partition neither sees nor reports for this switch.
	other := &client{base: srv.URL, token: otherToken, http: srv.Client()}
	if _, err := other.desired(ctx, "leaf1"); err == nil {
		t.Error("token of partition p2 read the desired state of a p1 switch")
	}
	if err := other.sync(ctx, "leaf1", &fabric.SwitchSyncReport{Error: "spoofed"}); err == nil {
		t.Error("token of partition p2 reported for a p1 switch")
	}
}

func TestNewRejects(t *testing.T) {
	for name, c := range map[string]Config{
		"no id":       {PartitionID: "p", API: "http://x", Token: "t", Renderer: render.Lab{}, Device: &device{}},
		"no api":      {SwitchID: "s", PartitionID: "p", Token: "t", Renderer: render.Lab{}, Device: &device{}},
		"no renderer": {SwitchID: "s", PartitionID: "p", API: "http://x", Token: "t", Device: &device{}},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
