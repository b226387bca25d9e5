package machine_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/lifecycle"
)

// findFixture is a partition of 12 large machines over two racks and 2 small ones, in every state
// Find can tell apart:
//
//	0 web-0 of A (tags cluster=a, role=web)   1 worker of A   2 firewall of A   3 machine of B
//	4 tainted   5 locked   6 not waiting   7 dead   8..11 waiting   12, 13 small, not waiting
func findFixture(t *testing.T) *fixture {
	t.Helper()
	f := newFixture(t, fixtureConfig{machines: 12, racks: 2})
	byID := func(i int) api.MachineAllocateRequest {
		r := f.req()
		r.MachineID = machineID(i)
		return r
	}
	r := byID(0)
	r.Hostname, r.Tags = "web-0", []string{"cluster=a", "role=web"}
	f.allocate(r)
	f.allocate(byID(1))
	r = byID(2)
	r.Role, r.ImageID = api.RoleFirewall, imgFirewall
	f.createNetwork(&api.Network{Meta: api.Meta{ID: "egress"}, Type: api.NetworkExternal, Prefixes: []string{"203.0.113.0/24"}, NAT: true})
	r.Networks = append(r.Networks, api.AllocationNetwork{NetworkID: "egress"})
	f.allocate(r)
	r = byID(3)
	r.ProjectID, r.Networks, r.AutoNetwork = projB, nil, true
	f.allocate(r)
	for i, st := range map[int]string{4: api.StateTainted, 5: api.StateLocked} {
		if _, err := f.svc.SetState(f.ctx, machineID(i), api.MachineStateRequest{Value: st, Description: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	f.update(machineID(6), func(m *api.Machine) { m.Waiting = false })
	for _, i := range []int{12, 13} {
		in := f.inventory(i)
		in.Hardware.CPUs = []api.MachineCPU{{Model: "Intel Xeon E-2278G", Cores: 8, Threads: 16}}
		in.Hardware.Memory = 32 * gib
		f.register(in)
	}
	f.clock.Advance(lifecycle.Timeout + time.Minute)
	for i := range 14 {
		if i != 7 {
			f.event(machineID(i), api.EventAlive)
		}
	}
	if _, err := f.svc.CheckLiveliness(f.ctx); err != nil {
		t.Fatal(err)
	}
	return f
}

func ids(is ...int) []string {
	var out []string
	for _, i := range is {
		out = append(out, machineID(i))
	}
	slices.Sort(out)
	return out
}

func rangeIDs(from, to int) []string {
	var is []int
	for i := from; i < to; i++ {
		is = append(is, i)
	}
	return ids(is...)
}

func without(all []string, drop ...string) []string {
	return slices.DeleteFunc(slices.Clone(all), func(id string) bool { return slices.Contains(drop, id) })
}

func all(*api.Machine) bool { return true }

func TestFind(t *testing.T) {
	f := findFixture(t)
	yes, no := true, false
	tainted, locked, available := api.StateTainted, api.StateLocked, api.StateAvailable
	web := f.get(machineID(0))
	webIP := web.Allocation.Networks[0].IPs[0]

	tests := []struct {
		name string
		req  api.MachineFindRequest
		want []string
	}{
		{"everything", api.MachineFindRequest{}, rangeIDs(0, 14)},
		{"partition", api.MachineFindRequest{PartitionID: partitionID}, rangeIDs(0, 14)},
		{"other partition", api.MachineFindRequest{PartitionID: "fra-equ02"}, nil},
		{"size", api.MachineFindRequest{SizeID: sizeSmall}, ids(12, 13)},
		{"rack", api.MachineFindRequest{RackID: rackID(0)}, ids(0, 2, 4, 6, 8, 10, 12)},
		{"project", api.MachineFindRequest{ProjectID: projA}, ids(0, 1, 2)},
		{"project and rack", api.MachineFindRequest{ProjectID: projA, RackID: rackID(0)}, ids(0, 2)},
		{"allocated", api.MachineFindRequest{Allocated: &yes}, ids(0, 1, 2, 3)},
		{"free", api.MachineFindRequest{Allocated: &no}, rangeIDs(4, 14)},
		{"waiting", api.MachineFindRequest{Waiting: &yes}, ids(4, 5, 7, 8, 9, 10, 11)},
		{"not waiting", api.MachineFindRequest{Waiting: &no}, ids(0, 1, 2, 3, 6, 12, 13)},
		{"waiting and large", api.MachineFindRequest{Waiting: &yes, SizeID: sizeLarge, RackID: rackID(1)}, ids(5, 7, 9, 11)},
		{"tainted", api.MachineFindRequest{State: &tainted}, ids(4)},
		{"locked", api.MachineFindRequest{State: &locked}, ids(5)},
		{"available", api.MachineFindRequest{State: &available}, without(rangeIDs(0, 14), ids(4, 5)...)},
		{"dead", api.MachineFindRequest{Liveliness: api.LivelinessDead}, ids(7)},
		{"alive and waiting", api.MachineFindRequest{Liveliness: api.LivelinessAlive, Waiting: &yes}, ids(4, 5, 8, 9, 10, 11)},
		{"hostname", api.MachineFindRequest{Hostname: "web-0"}, ids(0)},
		{"name", api.MachineFindRequest{Name: "m008"}, ids(8)},
		{"image", api.MachineFindRequest{ImageID: imgFirewall}, ids(2)},
		{"role firewall", api.MachineFindRequest{Role: api.RoleFirewall}, ids(2)},
		{"role machine", api.MachineFindRequest{Role: api.RoleMachine}, ids(0, 1, 3)},
		{"network", api.MachineFindRequest{NetworkID: privateAID}, ids(0, 1, 2)},
		{"underlay", api.MachineFindRequest{NetworkID: underlayID}, ids(2)},
		{"unused network", api.MachineFindRequest{NetworkID: internetID}, nil},
		{"ip", api.MachineFindRequest{IP: webIP}, ids(0)},
		{"unknown ip", api.MachineFindRequest{IP: "10.99.0.1"}, nil},
		{"tag", api.MachineFindRequest{Tags: []string{"cluster=a"}}, ids(0)},
		{"all tags", api.MachineFindRequest{Tags: []string{"role=web", "cluster=a"}}, ids(0)},
		{"missing tag", api.MachineFindRequest{Tags: []string{"cluster=a", "gpu"}}, nil},
		{"id", api.MachineFindRequest{ID: machineID(9)}, ids(9)},
		{"id not matching the filter", api.MachineFindRequest{ID: machineID(9), Allocated: &yes}, nil},
		{"unknown id", api.MachineFindRequest{ID: "nope"}, nil},
		{"id in another partition", api.MachineFindRequest{ID: machineID(9), PartitionID: "fra-equ02"}, nil},
		{"id of another size", api.MachineFindRequest{ID: machineID(9), SizeID: sizeSmall}, nil},
		{"id in another rack", api.MachineFindRequest{ID: machineID(9), RackID: rackID(0)}, nil},
		{"id of another project", api.MachineFindRequest{ID: machineID(0), ProjectID: projB}, nil},
		{"id, all matching", api.MachineFindRequest{ID: machineID(0), ProjectID: projA, PartitionID: partitionID, SizeID: sizeLarge,
			RackID: rackID(0)}, ids(0)},
		{"mac", api.MachineFindRequest{MAC: nicMAC(9, 1)}, ids(9)},
		{"mac in another spelling", api.MachineFindRequest{MAC: strings.ToUpper(strings.ReplaceAll(nicMAC(9, 1), ":", "-"))}, ids(9)},
		{"mac and id", api.MachineFindRequest{MAC: nicMAC(9, 0), ID: machineID(9)}, ids(9)},
		{"mac of another id", api.MachineFindRequest{MAC: nicMAC(9, 0), ID: machineID(8)}, nil},
		{"unknown mac", api.MachineFindRequest{MAC: "02:00:00:00:00:01"}, nil},
		{"mac and filter", api.MachineFindRequest{MAC: nicMAC(0, 0), ProjectID: projA}, ids(0)},
		{"mac and other filter", api.MachineFindRequest{MAC: nicMAC(0, 0), ProjectID: projB}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			page, err := f.svc.Find(f.ctx, tc.req, all)
			if err != nil {
				t.Fatal(err)
			}
			if page.Next != "" {
				t.Errorf("unlimited find returned a cursor %q", page.Next)
			}
			var got []string
			for _, m := range page.Items {
				got = append(got, m.ID)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Find(%+v) (-want +got):\n%s", tc.req, diff)
			}
		})
	}

	// What the caller may not see is not returned.
	page, err := f.svc.Find(f.ctx, api.MachineFindRequest{ProjectID: projA}, func(m *api.Machine) bool { return m.ID != machineID(1) })
	if err != nil {
		t.Fatal(err)
	}
	if got := len(page.Items); got != 2 {
		t.Errorf("visible machines of A: %d, want 2", got)
	}
	page, err = f.svc.Find(f.ctx, api.MachineFindRequest{ID: machineID(1)}, func(*api.Machine) bool { return false })
	if err != nil || len(page.Items) != 0 {
		t.Errorf("find by id of an invisible machine: %v, %v", page.Items, err)
	}
}

// TestFindPages walks every page: each machine appears exactly once, whatever the page size, the
// filter and what the caller may see.
func TestFindPages(t *testing.T) {
	f := findFixture(t)
	yes := true
	evenOnly := func(m *api.Machine) bool {
		for i := 0; i < 14; i += 2 {
			if m.ID == machineID(i) {
				return true
			}
		}
		return false
	}
	tests := []struct {
		name    string
		req     api.MachineFindRequest
		visible func(*api.Machine) bool
		want    []string
	}{
		{"all", api.MachineFindRequest{}, all, rangeIDs(0, 14)},
		{"waiting", api.MachineFindRequest{Waiting: &yes}, all, ids(4, 5, 7, 8, 9, 10, 11)},
		{"rack", api.MachineFindRequest{RackID: rackID(1)}, all, ids(1, 3, 5, 7, 9, 11, 13)},
		{"visible even", api.MachineFindRequest{}, evenOnly, ids(0, 2, 4, 6, 8, 10, 12)},
		{"waiting and visible even", api.MachineFindRequest{Waiting: &yes}, evenOnly, ids(4, 8, 10)},
		{"nothing", api.MachineFindRequest{SizeID: "nope"}, all, nil},
	}
	for _, tc := range tests {
		for _, limit := range []int{1, 2, 3, 5, 7, 13, 14, 15, 100} {
			t.Run(fmt.Sprintf("%s/limit-%d", tc.name, limit), func(t *testing.T) {
				req := tc.req
				req.Limit = limit
				var got []string
				pages := 0
				for {
					pages++
					if pages > 30 {
						t.Fatalf("more than 30 pages: the cursor does not advance (%v so far)", got)
					}
					page, err := f.svc.Find(f.ctx, req, tc.visible)
					if err != nil {
						t.Fatal(err)
					}
					if len(page.Items) > limit {
						t.Fatalf("page of %d items, limit %d", len(page.Items), limit)
					}
					for _, m := range page.Items {
						got = append(got, m.ID)
					}
					if page.Next == "" {
						break
					}
					if len(page.Items) == 0 {
						t.Fatalf("an empty page with a cursor %q", page.Next)
					}
					req.Cursor = page.Next
				}
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Errorf("all pages (-want +got):\n%s", diff)
				}
				if want := (len(tc.want) + limit - 1) / limit; len(tc.want) > 0 && pages > want+1 {
					t.Errorf("%d pages for %d machines at %d a page", pages, len(tc.want), limit)
				}
			})
		}
	}
}
