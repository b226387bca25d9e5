// Package machinetest holds test fixtures for allocation tests in any package: a seeded partition
// with waiting machines, and the allocation invariants (no machine, IP or ASN handed out twice,
// nothing half-allocated) checked against the store.
package machinetest

import (
	"context"
	"fmt"
	"testing"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/machine"
	"github.com/metalforge/metalforge/pkg/network"
	"github.com/metalforge/metalforge/pkg/store"
)

// The fixture's names.
const (
	Partition = "p1"
	Size      = "s1"
	Image     = "img"
	Project   = "storm"
	Network   = "storm-net"
)

// The names SeedFirewall adds.
const (
	FirewallImage = "fw-img"
	External      = "storm-internet"
	Underlay      = "storm-underlay"
)

// FirewallRequest is a firewall allocation from the fixture (after SeedFirewall): role firewall,
// the firewall image and the external network; the project's private network and the partition's
// underlay are implied.
func FirewallRequest() api.MachineAllocateRequest {
	return api.MachineAllocateRequest{ProjectID: Project, PartitionID: Partition, SizeID: Size, ImageID: FirewallImage,
		Role: api.RoleFirewall, Networks: []api.AllocationNetwork{{NetworkID: External}}}
}

// SeedFirewall writes what firewall allocations need on top of Seed: an image with the firewall
// feature, the partition's underlay (10.255.0.0/22) and an external network with NAT (VRF 104009)
// whose prefix is externalPrefix (its size bounds how many firewalls get an egress address).
func SeedFirewall(t testing.TB, st store.Store, externalPrefix string) {
	t.Helper()
	ctx := context.Background()
	err := st.Write(ctx, func(tx store.Tx) error {
		if err := tx.Images().Create(ctx, &api.Image{Meta: api.Meta{ID: FirewallImage}, URL: "http://i/fw", OS: "debian",
			OSVersion: "12", Features: []string{api.FeatureFirewall}}); err != nil {
			return err
		}
		if err := network.Create(ctx, tx, &api.Network{Meta: api.Meta{ID: Underlay}, Type: api.NetworkUnderlay,
			Prefixes: []string{"10.255.0.0/22"}, PartitionID: Partition}); err != nil {
			return err
		}
		return network.Create(ctx, tx, &api.Network{Meta: api.Meta{ID: External}, Type: api.NetworkExternal,
			Prefixes: []string{externalPrefix}, DestinationPrefixes: []string{"0.0.0.0/0"}, VRF: 104009, NAT: true})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// AllocateRequest is an allocation from the fixture.
func AllocateRequest() api.MachineAllocateRequest {
	return api.MachineAllocateRequest{ProjectID: Project, PartitionID: Partition, SizeID: Size, ImageID: Image,
		Networks: []api.AllocationNetwork{{NetworkID: Network}}}
}

// Seed writes a partition, size, image, project, a private /16 and n registered, waiting, alive
// machines spread over four racks.
func Seed(t testing.TB, st store.Store, n int) {
	t.Helper()
	ctx := context.Background()
	err := st.Write(ctx, func(tx store.Tx) error {
		for _, err := range []error{
			tx.Partitions().Create(ctx, &api.Partition{Meta: api.Meta{ID: "p1"}}),
			tx.Sizes().Create(ctx, &api.Size{Meta: api.Meta{ID: "s1"}, Constraints: []api.Constraint{{Type: api.ConstraintCores, Min: 1, Max: 64}}}),
			tx.Images().Create(ctx, &api.Image{Meta: api.Meta{ID: "img"}, URL: "http://i/img", OS: "debian", OSVersion: "12", Features: []string{api.FeatureMachine}}),
			tx.Projects().Create(ctx, &api.Project{Meta: api.Meta{ID: "storm"}}),
		} {
			if err != nil {
				return err
			}
		}
		return network.Create(ctx, tx, &api.Network{Meta: api.Meta{ID: "storm-net", Name: "storm"}, Type: api.NetworkPrivate,
			Prefixes: []string{"10.64.0.0/16"}, PartitionID: "p1", ProjectID: "storm"})
	})
	if err != nil {
		t.Fatal(err)
	}
	ms := machine.New(machine.Config{Store: st})
	for i := range n {
		id := fmt.Sprintf("m-%03d", i)
		if _, err := ms.Register(ctx, &api.Machine{Meta: api.Meta{ID: id}, PartitionID: "p1", RackID: fmt.Sprintf("r%d", i%4),
			Hardware: api.MachineHardware{CPUs: []api.MachineCPU{{Cores: 8}}, NICs: []api.MachineNIC{{Name: "eth0", MAC: fmt.Sprintf("52:54:00:00:%02x:%02x", i/256, i%256)}}}}); err != nil {
			t.Fatal(err)
		}
		err := st.Write(ctx, func(tx store.Tx) error {
			m, err := tx.Machines().Get(ctx, id)
			if err != nil {
				return err
			}
			m.Waiting = true
			return tx.Machines().Update(ctx, m)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// CheckInvariants: every IP with a machine belongs to an allocated machine that lists it, every
// allocated machine holds exactly one ASN and its IPs exist, no ASN or IP is held twice or by a free
// machine. It returns the set of allocated machines.
func CheckInvariants(t testing.TB, st store.Store) map[string]bool {
	t.Helper()
	ctx := context.Background()
	allocated := map[string]bool{}
	err := st.Read(ctx, func(tx store.Tx) error {
		ms, _, err := tx.Machines().List(ctx, store.Query{})
		if err != nil {
			return err
		}
		ips, _, err := tx.IPs().List(ctx, store.Query{})
		if err != nil {
			return err
		}
		ipOwner := map[string]string{}
		for _, ip := range ips {
			ipOwner[ip.Address] = ip.MachineID
		}
		asns := map[uint64]string{}
		for _, m := range ms {
			held, err := tx.Held(ctx, machine.PoolASN, m.ID)
			if err != nil {
				return err
			}
			if m.Allocation == nil {
				if len(held) > 0 {
					t.Errorf("free machine %s holds ASNs %v", m.ID, held)
				}
				continue
			}
			allocated[m.ID] = true
			if len(held) != 1 || uint64(m.Allocation.Networks[0].ASN) != held[0] {
				t.Errorf("machine %s has ASN %d but holds %v", m.ID, m.Allocation.Networks[0].ASN, held)
			}
			for _, a := range held {
				if other, dup := asns[a]; dup {
					t.Errorf("ASN %d held by %s and %s", a, other, m.ID)
				}
				asns[a] = m.ID
			}
			for _, n := range m.Allocation.Networks {
				for _, ip := range n.IPs {
					if ipOwner[ip] != m.ID {
						t.Errorf("machine %s lists ip %s owned by %q", m.ID, ip, ipOwner[ip])
					}
				}
			}
		}
		for addr, owner := range ipOwner {
			if owner != "" && !allocated[owner] {
				t.Errorf("ip %s belongs to %s, which is not allocated", addr, owner)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return allocated
}
