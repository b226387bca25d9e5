package machine_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/apierror"
	"github.com/metalforge/metalforge/pkg/machine"
	"github.com/metalforge/metalforge/pkg/machine/machinetest"
	"github.com/metalforge/metalforge/pkg/network"
	"github.com/metalforge/metalforge/pkg/store"
)

// egressOf returns the addresses of the external networks of an allocation: the firewall's SNAT
// addresses, by network.
func egressOf(m *api.Machine) map[string][]string {
	out := map[string][]string{}
	for _, n := range m.Allocation.Networks {
		if n.NetworkType == api.NetworkExternal {
			out[n.NetworkID] = n.IPs
		}
	}
	return out
}

// TestAllocateFirewallEgress: a firewall that names only its external networks gets its project's
// private network and the underlay implied, one egress address on an external network without
// named addresses and exactly the named ones on another; GET shows them, and Free releases the
// ephemeral ones and detaches the named (static) ones.
func TestAllocateFirewallEgress(t *testing.T) {
	f := newFixture(t, fixtureConfig{machines: 2})
	f.createNetwork(&api.Network{Meta: api.Meta{ID: "transit"}, Type: api.NetworkExternal, Prefixes: []string{"203.0.113.0/24"},
		VRF: 104010, NAT: true})
	req := f.req()
	req.Role, req.ImageID = api.RoleFirewall, imgFirewall
	req.Networks = []api.AllocationNetwork{{NetworkID: internetID}, {NetworkID: "transit", IPs: []string{"203.0.113.10", "203.0.113.11"}}}
	m := f.allocate(req)

	var got []string
	for _, n := range m.Allocation.Networks {
		got = append(got, fmt.Sprintf("%s %s vrf=%d ips=%v", n.NetworkID, n.NetworkType, n.VRF, n.IPs))
	}
	want := []string{
		privateAID + " private vrf=" + fmt.Sprint(f.network(privateAID).VRF) + " ips=[10.0.0.1]",
		internetID + " external vrf=104009 ips=[185.1.0.1]",
		"transit external vrf=104010 ips=[203.0.113.10 203.0.113.11]",
		underlayID + " underlay vrf=0 ips=[10.255.0.1]",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("firewall networks (-want +got):\n%s", diff)
	}
	wantEgress := map[string][]string{internetID: {"185.1.0.1"}, "transit": {"203.0.113.10", "203.0.113.11"}}
	if diff := cmp.Diff(wantEgress, egressOf(f.get(m.ID))); diff != "" {
		t.Errorf("egress addresses of the stored firewall (-want +got):\n%s", diff)
	}
	var ipGot []string
	for _, ip := range f.ipsOf(m.ID) {
		ipGot = append(ipGot, ip.Address+" "+ip.NetworkID+" "+ip.Type)
	}
	slices.Sort(ipGot)
	ipWant := []string{"10.0.0.1 " + privateAID + " ephemeral", "10.255.0.1 " + underlayID + " ephemeral",
		"185.1.0.1 " + internetID + " ephemeral", "203.0.113.10 transit static", "203.0.113.11 transit static"}
	if diff := cmp.Diff(ipWant, ipGot); diff != "" {
		t.Errorf("ips of the firewall (-want +got):\n%s", diff)
	}

	if _, err := f.svc.Free(f.ctx, m.ID); err != nil {
		t.Fatal(err)
	}
	if ips := f.ipsOf(m.ID); len(ips) != 0 {
		t.Errorf("freed firewall still holds %v", ips)
	}
	if asn := f.asnOf(m.ID); len(asn) != 0 {
		t.Errorf("freed firewall still holds ASN %v", asn)
	}
	var left []string
	f.read(func(tx store.Tx) error {
		ips, _, err := tx.IPs().List(f.ctx, store.Query{})
		for _, ip := range ips {
			left = append(left, fmt.Sprintf("%s %s machine=%q", ip.Address, ip.Type, ip.MachineID))
		}
		return err
	})
	slices.Sort(left)
	if diff := cmp.Diff([]string{`203.0.113.10 static machine=""`, `203.0.113.11 static machine=""`}, left); diff != "" {
		t.Errorf("addresses after free (-want +got): the named egress addresses stay with the project, detached\n%s", diff)
	}
	machinetest.CheckInvariants(t, f.store)

	// The named addresses are the project's now: the next firewall takes them again.
	m = f.allocate(req)
	if diff := cmp.Diff(wantEgress["transit"], egressOf(m)["transit"]); diff != "" {
		t.Errorf("re-allocated firewall's named egress (-want +got):\n%s", diff)
	}
}

// TestAllocateFirewallRejected: role and image feature must agree, and a firewall needs an external
// network; a rejected allocation leaves the store as it was, although the firewall's private
// network, underlay address and ASN were already taken in the transaction.
func TestAllocateFirewallRejected(t *testing.T) {
	f := newFixture(t, fixtureConfig{machines: 1})
	firewall := func(r *api.MachineAllocateRequest) { r.Role, r.ImageID = api.RoleFirewall, imgFirewall }
	tests := []struct {
		name    string
		change  func(r *api.MachineAllocateRequest)
		wantMsg string
	}{
		{"firewall with a machine image", func(r *api.MachineAllocateRequest) {
			r.Role = api.RoleFirewall
			r.Networks = append(r.Networks, api.AllocationNetwork{NetworkID: internetID})
		}, "role firewall needs an image with feature firewall"},
		{"machine with a firewall image", func(r *api.MachineAllocateRequest) { r.ImageID = imgFirewall },
			"role machine needs an image with feature machine"},
		{"firewall without an external network", firewall, "at least one external network"},
		{"firewall with an implied private network but no external network", func(r *api.MachineAllocateRequest) {
			firewall(r)
			r.ProjectID, r.Networks = projB, nil
		}, "at least one external network"},
		{"firewall with an egress address outside the external network", func(r *api.MachineAllocateRequest) {
			firewall(r)
			r.Networks = []api.AllocationNetwork{{NetworkID: internetID, IPs: []string{"192.0.2.1"}}}
		}, "192.0.2.1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := f.dump()
			req := f.req()
			tc.change(&req)
			m, err := f.svc.Allocate(f.ctx, req, "test")
			if !errors.Is(err, apierror.ErrInvalid) || apierror.Status(err) != 400 {
				t.Fatalf("Allocate = %s, %v (status %d); want invalid, 400", idOf(m), err, apierror.Status(err))
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("Allocate = %q, want a message with %q", err, tc.wantMsg)
			}
			if diff := cmp.Diff(before, f.dump()); diff != "" {
				t.Errorf("a rejected allocation changed the store (-before +after):\n%s", diff)
			}
		})
	}
}

// TestFirewallStorm allocates firewalls concurrently on the machinetest fixture, on SQLite and
// PostgreSQL: 16 machines, 20 goroutines, an external /28 (14 addresses, 4 of them static addresses of the
// project, each named by two goroutines). Every firewall gets a distinct egress address, a named address goes to exactly
// one firewall (the other request fails with "in use" and leaves nothing behind), and the
// requests that find the external network exhausted fail cleanly. Then all are freed concurrently
// and no address stays attached.
func TestFirewallStorm(t *testing.T) {
	for _, b := range []backend{sqliteBackend, postgresBackend} {
		t.Run(b.name, func(t *testing.T) {
			st, _ := b.open(t)
			const machines, goroutines = 16, 20
			machinetest.Seed(t, st, machines)
			machinetest.SeedFirewall(t, st, "198.51.100.0/28")
			svc := machine.New(machine.Config{Store: st})
			ctx := t.Context()

			// The named addresses are the project's static addresses already, so that the next-free
			// allocations of the other requests never take them.
			named := []string{"198.51.100.11", "198.51.100.12", "198.51.100.13", "198.51.100.14"}
			err := st.Write(ctx, func(tx store.Tx) error {
				for _, a := range named {
					if _, err := network.AllocateIP(ctx, tx, api.IPAllocateRequest{NetworkID: machinetest.External,
						ProjectID: machinetest.Project, Address: a, Type: api.IPStatic}, ""); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			var (
				mu   sync.Mutex
				got  []*api.Machine
				errs []error
				wg   sync.WaitGroup
			)
			for g := range goroutines {
				wg.Go(func() {
					req := machinetest.FirewallRequest()
					req.Name = fmt.Sprintf("fw-%02d", g)
					if g < 2*len(named) {
						req.Networks = []api.AllocationNetwork{{NetworkID: machinetest.External, IPs: []string{named[g/2]}}}
					}
					m, err := svc.Allocate(ctx, req, "storm")
					mu.Lock()
					defer mu.Unlock()
					if err != nil {
						errs = append(errs, err)
						return
					}
					got = append(got, m)
				})
			}
			wg.Wait()

			inUse, unavailable := 0, 0
			for _, err := range errs {
				switch {
				case errors.Is(err, apierror.ErrInUse):
					inUse++
				case errors.Is(err, apierror.ErrUnavailable), errors.Is(err, store.ErrExhausted):
					unavailable++
				default:
					t.Errorf("unexpected allocation error: %v", err)
				}
			}
			egress := map[string]string{}
			for _, m := range got {
				e := egressOf(m)[machinetest.External]
				if len(e) != 1 {
					t.Errorf("firewall %s has egress %v, want one address", m.ID, e)
				}
				for _, ip := range e {
					if other, dup := egress[ip]; dup {
						t.Errorf("egress %s given to %s and %s", ip, other, m.ID)
					}
					egress[ip] = m.ID
				}
				if len(m.Allocation.Networks) != 3 {
					t.Errorf("firewall %s has %d networks, want private, external and underlay", m.ID, len(m.Allocation.Networks))
				}
			}
			for _, ip := range named {
				if egress[ip] == "" {
					t.Errorf("named egress %s went to no firewall", ip)
				}
			}
			t.Logf("%d firewalls, %d lost a named address, %d found nothing left (machines or egress addresses)", len(got), inUse, unavailable)
			if inUse != len(named) {
				t.Errorf("%d allocations failed with in use, want %d (one per doubly named address)", inUse, len(named))
			}
			if len(got)+len(errs) != goroutines {
				t.Errorf("%d results for %d allocations", len(got)+len(errs), goroutines)
			}
			allocated := machinetest.CheckInvariants(t, st)
			if len(allocated) != len(got) {
				t.Errorf("%d machines allocated in the store, %d allocations succeeded", len(allocated), len(got))
			}

			for _, m := range got {
				wg.Go(func() {
					if _, err := svc.Free(ctx, m.ID); err != nil {
						t.Errorf("free %s: %v", m.ID, err)
					}
				})
			}
			wg.Wait()
			machinetest.CheckInvariants(t, st)
			err = st.Read(ctx, func(tx store.Tx) error {
				ips, _, err := tx.IPs().List(ctx, store.Query{})
				for _, ip := range ips {
					if ip.MachineID != "" || ip.Type != api.IPStatic {
						t.Errorf("after freeing every firewall: ip %s (%s) of machine %q", ip.Address, ip.Type, ip.MachineID)
					}
				}
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestFirewallSameNewEgress: four firewalls ask at once for the same egress address that nobody
// holds yet. Exactly one gets it; the others fail with "in use" (on PostgreSQL the losers may meet
// the address's unique key instead of the row) and leave nothing behind.
func TestFirewallSameNewEgress(t *testing.T) {
	for _, b := range []backend{sqliteBackend, postgresBackend} {
		t.Run(b.name, func(t *testing.T) {
			st, _ := b.open(t)
			machinetest.Seed(t, st, 4)
			machinetest.SeedFirewall(t, st, "198.51.100.0/24")
			svc := machine.New(machine.Config{Store: st})
			const addr = "198.51.100.77"
			var (
				mu      sync.Mutex
				winners []string
				wg      sync.WaitGroup
			)
			start := make(chan struct{})
			for range 4 {
				wg.Go(func() {
					req := machinetest.FirewallRequest()
					req.Networks = []api.AllocationNetwork{{NetworkID: machinetest.External, IPs: []string{addr}}}
					<-start
					m, err := svc.Allocate(t.Context(), req, "race")
					mu.Lock()
					defer mu.Unlock()
					switch {
					case err == nil:
						winners = append(winners, m.ID)
					case !errors.Is(err, apierror.ErrInUse):
						t.Errorf("losing allocation: %v, want in use", err)
					}
				})
			}
			close(start)
			wg.Wait()
			if len(winners) != 1 {
				t.Fatalf("%d firewalls got %s, want exactly one", len(winners), addr)
			}
			if got := machinetest.CheckInvariants(t, st); len(got) != 1 {
				t.Errorf("%d machines allocated, want 1", len(got))
			}
		})
	}
}
