package network_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/apierror"
	"github.com/metalforge/metalforge/pkg/network"
	"github.com/metalforge/metalforge/pkg/store"
	"github.com/metalforge/metalforge/pkg/store/sqlite"
)

// env is a store with two partitions and two projects, and helpers to work in transactions.
type env struct {
	t   *testing.T
	ctx context.Context
	s   store.Store
}

const (
	part1, part2 = "fra-equ01", "fra-equ02"
	projA, projB = "project-a", "project-b"
)

func newEnv(t *testing.T) *env {
	t.Helper()
	s, err := sqlite.Open(t.Context(), t.TempDir())
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	e := &env{t: t, ctx: t.Context(), s: s}
	e.write(func(tx store.Tx) error {
		for _, p := range []string{part1, part2} {
			if err := tx.Partitions().Create(e.ctx, &api.Partition{Meta: api.Meta{ID: p}}); err != nil {
				return err
			}
		}
		for _, p := range []string{projA, projB} {
			if err := tx.Projects().Create(e.ctx, &api.Project{Meta: api.Meta{ID: p}}); err != nil {
				return err
			}
		}
		return nil
	})
	return e
}

// write runs fn in a write transaction that must succeed.
func (e *env) write(fn func(tx store.Tx) error) {
	e.t.Helper()
	if err := e.s.Write(e.ctx, fn); err != nil {
		e.t.Fatalf("write: %v", err)
	}
}

// try runs fn in a write transaction and returns its error.
func (e *env) try(fn func(tx store.Tx) error) error {
	return e.s.Write(e.ctx, fn)
}

// create stores a network that must be valid.
func (e *env) create(n *api.Network) *api.Network {
	e.t.Helper()
	e.write(func(tx store.Tx) error { return network.Create(e.ctx, tx, n) })
	return n
}

// allocate allocates a private network that must succeed.
func (e *env) allocate(req api.NetworkAllocateRequest) *api.Network {
	e.t.Helper()
	var n *api.Network
	e.write(func(tx store.Tx) error {
		var err error
		n, err = network.AllocatePrivate(e.ctx, tx, req)
		return err
	})
	return n
}

// allocateIP allocates an address and returns it with the error.
func (e *env) allocateIP(req api.IPAllocateRequest, machineID string) (*api.IP, error) {
	var ip *api.IP
	err := e.try(func(tx store.Tx) error {
		var err error
		ip, err = network.AllocateIP(e.ctx, tx, req, machineID)
		return err
	})
	return ip, err
}

// snapshot is everything IPAM keeps: networks, addresses and the VRF pool of every network.
type snapshot struct {
	Networks []*api.Network
	IPs      []*api.IP
	VRFs     map[string][]uint64
}

func (e *env) snapshot() snapshot {
	e.t.Helper()
	var sn snapshot
	err := e.s.Read(e.ctx, func(tx store.Tx) error {
		var err error
		if sn.Networks, _, err = tx.Networks().List(e.ctx, store.Query{}); err != nil {
			return err
		}
		if sn.IPs, _, err = tx.IPs().List(e.ctx, store.Query{}); err != nil {
			return err
		}
		sn.VRFs = map[string][]uint64{}
		for _, n := range sn.Networks {
			if sn.VRFs[n.ID], err = tx.Held(e.ctx, network.PoolVRF, n.ID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		e.t.Fatalf("snapshot: %v", err)
	}
	return sn
}

// held lists the VRF pool values of an owner that has no network (e.g. one whose creation failed).
func (e *env) held(owner string) []uint64 {
	e.t.Helper()
	var v []uint64
	err := e.s.Read(e.ctx, func(tx store.Tx) error {
		var err error
		v, err = tx.Held(e.ctx, network.PoolVRF, owner)
		return err
	})
	if err != nil {
		e.t.Fatalf("held: %v", err)
	}
	return v
}

// wantUnchanged fails the test when IPAM state differs from before.
func (e *env) wantUnchanged(before snapshot) {
	e.t.Helper()
	if diff := cmp.Diff(before, e.snapshot()); diff != "" {
		e.t.Errorf("store changed by a failed operation (-before +after):\n%s", diff)
	}
}

// seed creates the usual networks of partition 1: super 10.0.0.0/16 (/22 children), underlay and
// internet.
func (e *env) seed() (super, underlay, internet *api.Network) {
	e.t.Helper()
	super = e.create(&api.Network{Meta: api.Meta{ID: "tenant-super-" + part1}, Type: api.NetworkSuper,
		Prefixes: []string{"10.0.0.0/16"}, PartitionID: part1, ChildPrefixLength: 22})
	underlay = e.create(&api.Network{Meta: api.Meta{ID: "underlay-" + part1}, Type: api.NetworkUnderlay,
		Prefixes: []string{"10.255.0.0/24"}, PartitionID: part1})
	internet = e.create(&api.Network{Meta: api.Meta{ID: "internet"}, Type: api.NetworkExternal,
		Prefixes: []string{"185.1.2.0/24"}, DestinationPrefixes: []string{"0.0.0.0/0"}, VRF: 104009, NAT: true})
	return super, underlay, internet
}

func TestCreate(t *testing.T) {
	e := newEnv(t)
	e.seed()
	e.create(&api.Network{Meta: api.Meta{ID: "shared-storage"}, Type: api.NetworkPrivateShared, ProjectID: projB,
		Prefixes: []string{"10.0.200.0/22"}, PartitionID: part1, ParentNetworkID: "tenant-super-" + part1})

	tests := []struct {
		name    string
		n       api.Network
		wantErr error
		// wantMsg is a part of the error message the caller sees.
		wantMsg string
	}{
		{"bad type", api.Network{Meta: api.Meta{ID: "n"}, Type: "public", Prefixes: []string{"1.2.3.0/24"}},
			apierror.ErrInvalid, `network type "public"`},
		{"empty type", api.Network{Meta: api.Meta{ID: "n"}, Prefixes: []string{"1.2.3.0/24"}}, apierror.ErrInvalid, "network type"},
		{"non-canonical prefix", api.Network{Meta: api.Meta{ID: "n"}, Type: api.NetworkExternal, Prefixes: []string{"1.2.3.4/24"}},
			apierror.ErrInvalid, "not canonical"},
		{"prefix length out of range", api.Network{Meta: api.Meta{ID: "n"}, Type: api.NetworkExternal, Prefixes: []string{"1.2.3.0/33"}},
			apierror.ErrInvalid, "1.2.3.0/33"},
		{"not a prefix", api.Network{Meta: api.Meta{ID: "n"}, Type: api.NetworkExternal, Prefixes: []string{"internet"}},
			apierror.ErrInvalid, "internet"},
		{"address without length", api.Network{Meta: api.Meta{ID: "n"}, Type: api.NetworkExternal, Prefixes: []string{"1.2.3.0"}},
			apierror.ErrInvalid, "1.2.3.0"},
		{"ipv4-mapped", api.Network{Meta: api.Meta{ID: "n"}, Type: api.NetworkExternal, Prefixes: []string{"::ffff:1.2.3.0/120"}},
			apierror.ErrInvalid, "IPv4-mapped"},
		{"own prefixes overlap", api.Network{Meta: api.Meta{ID: "n"}, Type: api.NetworkExternal,
			Prefixes: []string{"1.2.0.0/16", "1.2.3.0/24"}}, apierror.ErrInvalid, "overlaps"},
		{"no prefix", api.Network{Meta: api.Meta{ID: "n"}, Type: api.NetworkExternal}, apierror.ErrInvalid, "at least one prefix"},
		{"bad destination prefix", api.Network{Meta: api.Meta{ID: "n"}, Type: api.NetworkExternal, Prefixes: []string{"1.2.3.0/24"},
			DestinationPrefixes: []string{"0.0.0.0/33"}}, apierror.ErrInvalid, "destination prefixes"},
		{"overlaps another network", api.Network{Meta: api.Meta{ID: "n"}, Type: api.NetworkExternal, Prefixes: []string{"185.1.0.0/16"}},
			apierror.ErrInvalid, "overlaps 185.1.2.0/24 of network internet"},
		{"inside another network", api.Network{Meta: api.Meta{ID: "n"}, Type: api.NetworkExternal, Prefixes: []string{"10.255.0.128/25"}},
			apierror.ErrInvalid, "of network underlay-" + part1},
		{"overlaps a super network", api.Network{Meta: api.Meta{ID: "n"}, Type: api.NetworkUnderlay, PartitionID: part2,
			Prefixes: []string{"10.0.4.0/24"}}, apierror.ErrInvalid, "of network tenant-super-" + part1},
		{"overlaps a sibling", api.Network{Meta: api.Meta{ID: "n"}, Type: api.NetworkPrivate, PartitionID: part1, ProjectID: projA,
			ParentNetworkID: "tenant-super-" + part1, Prefixes: []string{"10.0.201.0/24"}}, apierror.ErrInvalid, "of network shared-storage"},
		{"second super network", api.Network{Meta: api.Meta{ID: "n"}, Type: api.NetworkSuper, PartitionID: part1,
			Prefixes: []string{"10.1.0.0/16"}}, apierror.ErrInvalid, "already has super network tenant-super-" + part1},
		{"super without partition", api.Network{Meta: api.Meta{ID: "n"}, Type: api.NetworkSuper, Prefixes: []string{"10.1.0.0/16"}},
			apierror.ErrInvalid, "needs a partition"},
		{"underlay without partition", api.Network{Meta: api.Meta{ID: "n"}, Type: api.NetworkUnderlay, Prefixes: []string{"10.254.0.0/24"}},
			apierror.ErrInvalid, "needs a partition"},
		{"unknown partition", api.Network{Meta: api.Meta{ID: "n"}, Type: api.NetworkUnderlay, PartitionID: "nowhere",
			Prefixes: []string{"10.254.0.0/24"}}, apierror.ErrInvalid, "nowhere"},
		{"private without project", api.Network{Meta: api.Meta{ID: "n"}, Type: api.NetworkPrivate, PartitionID: part2,
			Prefixes: []string{"10.2.0.0/22"}}, apierror.ErrInvalid, "needs a project"},
		{"unknown project", api.Network{Meta: api.Meta{ID: "n"}, Type: api.NetworkPrivate, PartitionID: part2, ProjectID: "nobody",
			Prefixes: []string{"10.2.0.0/22"}}, apierror.ErrInvalid, "nobody"},
		{"unknown parent", api.Network{Meta: api.Meta{ID: "n"}, Type: api.NetworkPrivate, PartitionID: part1, ProjectID: projA,
			ParentNetworkID: "nope", Prefixes: []string{"10.0.8.0/22"}}, apierror.ErrInvalid, "nope"},
		{"outside the parent", api.Network{Meta: api.Meta{ID: "n"}, Type: api.NetworkPrivate, PartitionID: part1, ProjectID: projA,
			ParentNetworkID: "tenant-super-" + part1, Prefixes: []string{"10.3.0.0/22"}}, apierror.ErrInvalid, "not inside parent"},
		{"child length too short", api.Network{Meta: api.Meta{ID: "n"}, Type: api.NetworkSuper, PartitionID: part2,
			Prefixes: []string{"10.2.0.0/16"}, ChildPrefixLength: 16}, apierror.ErrInvalid, "child prefix length /16"},
		{"child length too long", api.Network{Meta: api.Meta{ID: "n"}, Type: api.NetworkSuper, PartitionID: part2,
			Prefixes: []string{"10.2.0.0/16"}, ChildPrefixLength: 33}, apierror.ErrInvalid, "child prefix length /33"},
		{"vrf out of range", api.Network{Meta: api.Meta{ID: "n"}, Type: api.NetworkExternal, Prefixes: []string{"1.2.3.0/24"},
			VRF: network.VRFMax + 1}, apierror.ErrInvalid, "vrf"},
		{"vrf of another network", api.Network{Meta: api.Meta{ID: "n"}, Type: api.NetworkExternal, Prefixes: []string{"1.2.3.0/24"},
			VRF: 104009}, apierror.ErrInvalid, "vrf 104009 is used"},
		{"id taken", api.Network{Meta: api.Meta{ID: "internet"}, Type: api.NetworkExternal, Prefixes: []string{"1.2.3.0/24"}},
			store.ErrDuplicate, "internet"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := e.snapshot()
			n := tc.n
			err := e.try(func(tx store.Tx) error { return network.Create(e.ctx, tx, &n) })
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Create = %v, want %v", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("Create = %q, want a message with %q", err, tc.wantMsg)
			}
			if apierror.Status(err) >= 500 {
				t.Errorf("Create = %v: status %d, want a client error", err, apierror.Status(err))
			}
			e.wantUnchanged(before)
			if n.ID != "" && n.ID != "internet" {
				if v := e.held(n.ID); len(v) > 0 {
					t.Errorf("failed network %s holds vrf %v", n.ID, v)
				}
			}
		})
	}
}

func TestCreateValid(t *testing.T) {
	e := newEnv(t)
	super, underlay, internet := e.seed()

	// Every kind of network, and what it gets.
	mpls := e.create(&api.Network{Meta: api.Meta{Name: "mpls"}, Type: api.NetworkExternal, Prefixes: []string{"100.64.0.0/24"}})
	if mpls.ID == "" {
		t.Errorf("a network without id got none")
	}
	superB := e.create(&api.Network{Meta: api.Meta{ID: "tenant-super-" + part2}, Type: api.NetworkSuper,
		Prefixes: []string{"10.1.0.0/16", "fd00:1::/48"}, PartitionID: part2})
	private := e.create(&api.Network{Meta: api.Meta{ID: "static-private"}, Type: api.NetworkPrivate, PartitionID: part1,
		ProjectID: projA, ParentNetworkID: super.ID, Prefixes: []string{"10.0.252.0/22"}})
	private2 := e.create(&api.Network{Meta: api.Meta{ID: "static-private-2"}, Type: api.NetworkPrivate, PartitionID: part1,
		ProjectID: projA, ParentNetworkID: super.ID, Prefixes: []string{"10.0.248.0/22"}})
	withVRF := e.create(&api.Network{Meta: api.Meta{ID: "dmz"}, Type: api.NetworkExternal, Prefixes: []string{"192.0.2.0/24"}, VRF: 42})

	for _, n := range []*api.Network{super, underlay, superB, mpls} {
		if n.VRF != 0 {
			t.Errorf("network %s (%s) got vrf %d, want none", n.ID, n.Type, n.VRF)
		}
	}
	if internet.VRF != 104009 || withVRF.VRF != 42 {
		t.Errorf("given vrfs changed: internet %d, dmz %d", internet.VRF, withVRF.VRF)
	}
	// Private networks get tenant VRFs, distinct, and held in the pool.
	for _, n := range []*api.Network{private, private2} {
		if n.VRF < network.VRFMin || n.VRF > network.VRFMax {
			t.Errorf("private network %s got vrf %d, want one of the tenant range %d-%d", n.ID, n.VRF, network.VRFMin, network.VRFMax)
		}
	}
	if private.VRF == private2.VRF {
		t.Errorf("two private networks share vrf %d", private.VRF)
	}
	sn := e.snapshot()
	want := map[string][]uint64{
		super.ID: nil, underlay.ID: nil, internet.ID: {104009}, mpls.ID: nil, superB.ID: nil,
		private.ID: {uint64(private.VRF)}, private2.ID: {uint64(private2.VRF)}, withVRF.ID: {42},
	}
	if diff := cmp.Diff(want, sn.VRFs, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("vrf pool (-want +got):\n%s", diff)
	}
	if len(sn.Networks) != 8 {
		t.Errorf("%d networks stored, want 8", len(sn.Networks))
	}
	var stored *api.Network
	e.write(func(tx store.Tx) error {
		var err error
		stored, err = tx.Networks().Get(e.ctx, internet.ID)
		return err
	})
	if diff := cmp.Diff(internet, stored); diff != "" {
		t.Errorf("stored network differs from the created one (-created +stored):\n%s", diff)
	}
}

func TestSuperNetworkPerPartition(t *testing.T) {
	e := newEnv(t)
	e.create(&api.Network{Meta: api.Meta{ID: "super-1"}, Type: api.NetworkSuper, Prefixes: []string{"10.0.0.0/16"}, PartitionID: part1})
	e.create(&api.Network{Meta: api.Meta{ID: "super-2"}, Type: api.NetworkSuper, Prefixes: []string{"10.1.0.0/16"}, PartitionID: part2})
	before := e.snapshot()
	err := e.try(func(tx store.Tx) error {
		return network.Create(e.ctx, tx, &api.Network{Meta: api.Meta{ID: "super-1b"}, Type: api.NetworkSuper,
			Prefixes: []string{"10.2.0.0/16"}, PartitionID: part1})
	})
	if !errors.Is(err, apierror.ErrInvalid) || !strings.Contains(err.Error(), "super-1") {
		t.Errorf("second super network of a partition: %v, want invalid naming super-1", err)
	}
	e.wantUnchanged(before)

	// Private networks come from their partition's super network.
	for _, tc := range []struct{ partition, within string }{{part1, "10.0.0.0/16"}, {part2, "10.1.0.0/16"}} {
		n := e.allocate(api.NetworkAllocateRequest{ProjectID: projA, PartitionID: tc.partition})
		p := netip.MustParsePrefix(n.Prefixes[0])
		if !netip.MustParsePrefix(tc.within).Contains(p.Addr()) || n.PartitionID != tc.partition {
			t.Errorf("private network of %s is %s in %s, want inside %s", tc.partition, p, n.PartitionID, tc.within)
		}
	}
}

func TestUpdate(t *testing.T) {
	e := newEnv(t)
	_, underlay, _ := e.seed()
	if _, err := e.allocateIP(api.IPAllocateRequest{NetworkID: underlay.ID, ProjectID: projA, Address: "10.255.0.10"}, ""); err != nil {
		t.Fatal(err)
	}
	update := func(n api.Network) error {
		return e.try(func(tx store.Tx) error {
			_, err := network.Update(e.ctx, tx, &n)
			return err
		})
	}
	cur := func() api.Network {
		var n *api.Network
		e.write(func(tx store.Tx) error {
			var err error
			n, err = tx.Networks().Get(e.ctx, underlay.ID)
			return err
		})
		return *n
	}

	n := cur()
	n.Prefixes = append(n.Prefixes, "10.254.0.0/24")
	n.Description = "fabric"
	if err := update(n); err != nil {
		t.Fatalf("add a prefix: %v", err)
	}
	if got := cur(); !slices.Equal(got.Prefixes, []string{"10.255.0.0/24", "10.254.0.0/24"}) || got.Description != "fabric" {
		t.Errorf("after update: prefixes %v, description %q", got.Prefixes, got.Description)
	}

	stale := n // still the version before the update
	stale.Description = "stale"
	if err := update(stale); err == nil || apierror.Status(err) != 409 {
		t.Errorf("update of a stale version: %v, want a 409 error", err)
	}

	n = cur()
	n.Prefixes = []string{"10.254.0.0/24"}
	if err := update(n); !errors.Is(err, apierror.ErrInUse) {
		t.Errorf("drop the prefix holding an ip: %v, want in use", err)
	}
	n = cur()
	n.Type = api.NetworkExternal
	if err := update(n); !errors.Is(err, apierror.ErrInvalid) {
		t.Errorf("change the type: %v, want invalid", err)
	}
	n = cur()
	n.Prefixes = append(n.Prefixes, "10.0.1.0/24")
	if err := update(n); !errors.Is(err, apierror.ErrInvalid) {
		t.Errorf("add a prefix overlapping the super network: %v, want invalid", err)
	}
}

func TestAllocatePrivate(t *testing.T) {
	e := newEnv(t)
	super, _, _ := e.seed()
	superPrefix := netip.MustParsePrefix(super.Prefixes[0])

	var nets []*api.Network
	for i := range 5 {
		n := e.allocate(api.NetworkAllocateRequest{ProjectID: projA, PartitionID: part1, Name: fmt.Sprintf("cluster-%d", i),
			Labels: map[string]string{"cluster": fmt.Sprint(i)}})
		nets = append(nets, n)
	}
	shared := e.allocate(api.NetworkAllocateRequest{ProjectID: projB, PartitionID: part1, Shared: true})
	small := e.allocate(api.NetworkAllocateRequest{ProjectID: projB, PartitionID: part1, PrefixLength: 26})
	nets = append(nets, shared, small)

	if shared.Type != api.NetworkPrivateShared {
		t.Errorf("shared allocation has type %q", shared.Type)
	}
	if shared.Name != shared.ID {
		t.Errorf("network without a name is named %q, want its id", shared.Name)
	}
	if nets[0].Name != "cluster-0" || nets[0].Labels["cluster"] != "0" {
		t.Errorf("name and labels not kept: %q %v", nets[0].Name, nets[0].Labels)
	}
	if got := netip.MustParsePrefix(small.Prefixes[0]).Bits(); got != 26 {
		t.Errorf("requested /26, got /%d", got)
	}
	wantFirst := []string{"10.0.0.0/22", "10.0.4.0/22", "10.0.8.0/22"}
	for i, w := range wantFirst {
		if nets[i].Prefixes[0] != w {
			t.Errorf("allocation %d got %v, want %s (first fit)", i, nets[i].Prefixes, w)
		}
	}
	checkDistinct(t, nets, superPrefix)
	for _, n := range nets {
		if n.ParentNetworkID != super.ID || n.PartitionID != part1 {
			t.Errorf("network %s: parent %q partition %q", n.ID, n.ParentNetworkID, n.PartitionID)
		}
	}
	sn := e.snapshot()
	for _, n := range nets {
		if !slices.Equal(sn.VRFs[n.ID], []uint64{uint64(n.VRF)}) {
			t.Errorf("network %s has vrf %d, pool holds %v for it", n.ID, n.VRF, sn.VRFs[n.ID])
		}
	}

	usage := func(n *api.Network) *api.NetworkUsage {
		var u *api.NetworkUsage
		e.write(func(tx store.Tx) error {
			var err error
			u, err = network.Usage(e.ctx, tx, n)
			return err
		})
		return u
	}
	if u := usage(super); u.UsedPrefixes != uint64(len(nets)) || u.Available != 65534 || u.Used != 0 {
		t.Errorf("super usage %+v, want %d used prefixes, 65534 addresses", u, len(nets))
	}
}

func checkDistinct(t *testing.T, nets []*api.Network, super netip.Prefix) {
	t.Helper()
	vrfs := map[uint32]string{}
	for i, n := range nets {
		if len(n.Prefixes) != 1 {
			t.Fatalf("network %s has prefixes %v, want one", n.ID, n.Prefixes)
		}
		p := netip.MustParsePrefix(n.Prefixes[0])
		if !super.Contains(p.Addr()) || p.Bits() < super.Bits() {
			t.Errorf("network %s prefix %s is outside the super network %s", n.ID, p, super)
		}
		for _, o := range nets[:i] {
			if op := netip.MustParsePrefix(o.Prefixes[0]); op.Overlaps(p) {
				t.Errorf("networks %s (%s) and %s (%s) overlap", n.ID, p, o.ID, op)
			}
		}
		if n.VRF < network.VRFMin || n.VRF > network.VRFMax {
			t.Errorf("network %s vrf %d outside %d-%d", n.ID, n.VRF, network.VRFMin, network.VRFMax)
		}
		if other, ok := vrfs[n.VRF]; ok {
			t.Errorf("networks %s and %s share vrf %d", n.ID, other, n.VRF)
		}
		vrfs[n.VRF] = n.ID
	}
}

// TestAllocatePrivateConcurrent: concurrent allocations (retried by the store on conflict) never share
// a prefix or a VRF.
func TestAllocatePrivateConcurrent(t *testing.T) {
	e := newEnv(t)
	super, _, _ := e.seed()
	const workers, each = 8, 4
	var (
		mu   sync.Mutex
		nets []*api.Network
		wg   sync.WaitGroup
	)
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Go(func() {
			for range each {
				var n *api.Network
				err := e.s.Write(e.ctx, func(tx store.Tx) error {
					var err error
					n, err = network.AllocatePrivate(e.ctx, tx, api.NetworkAllocateRequest{ProjectID: []string{projA, projB}[w%2], PartitionID: part1})
					return err
				})
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				nets = append(nets, n)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("allocate: %v", err)
	}
	if len(nets) != workers*each {
		t.Fatalf("%d networks, want %d", len(nets), workers*each)
	}
	checkDistinct(t, nets, netip.MustParsePrefix(super.Prefixes[0]))
	if got := len(e.snapshot().Networks); got != 3+workers*each {
		t.Errorf("%d networks stored, want %d", got, 3+workers*each)
	}
}

func TestAllocatePrivateErrors(t *testing.T) {
	e := newEnv(t)
	one := 1
	e.write(func(tx store.Tx) error {
		return tx.Projects().Create(e.ctx, &api.Project{Meta: api.Meta{ID: "limited"}, Quotas: api.Quotas{Networks: &one}})
	})
	// A small super network: four /26.
	e.create(&api.Network{Meta: api.Meta{ID: "super-small"}, Type: api.NetworkSuper, Prefixes: []string{"10.9.0.0/24"},
		PartitionID: part1, ChildPrefixLength: 26})
	for range 3 {
		e.allocate(api.NetworkAllocateRequest{ProjectID: projA, PartitionID: part1})
	}
	e.allocate(api.NetworkAllocateRequest{ProjectID: "limited", PartitionID: part1})

	tests := []struct {
		name    string
		req     api.NetworkAllocateRequest
		wantErr error
	}{
		{"exhausted", api.NetworkAllocateRequest{ProjectID: projA, PartitionID: part1}, store.ErrExhausted},
		{"no room for a /25 either", api.NetworkAllocateRequest{ProjectID: projA, PartitionID: part1, PrefixLength: 25}, store.ErrExhausted},
		{"quota", api.NetworkAllocateRequest{ProjectID: "limited", PartitionID: part1}, apierror.ErrUnavailable},
		{"no super network", api.NetworkAllocateRequest{ProjectID: projA, PartitionID: part2}, apierror.ErrInvalid},
		{"unknown partition", api.NetworkAllocateRequest{ProjectID: projA, PartitionID: "nowhere"}, apierror.ErrInvalid},
		{"unknown project", api.NetworkAllocateRequest{ProjectID: "nobody", PartitionID: part1}, apierror.ErrInvalid},
		{"no project", api.NetworkAllocateRequest{PartitionID: part1}, apierror.ErrInvalid},
		{"no partition", api.NetworkAllocateRequest{ProjectID: projA}, apierror.ErrInvalid},
		{"prefix longer than the super network's", api.NetworkAllocateRequest{ProjectID: projA, PartitionID: part1, PrefixLength: 16},
			apierror.ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := e.snapshot()
			err := e.try(func(tx store.Tx) error {
				_, err := network.AllocatePrivate(e.ctx, tx, tc.req)
				return err
			})
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("AllocatePrivate = %v, want %v", err, tc.wantErr)
			}
			if apierror.Status(err) >= 500 {
				t.Errorf("status %d for %v, want a client error", apierror.Status(err), err)
			}
			e.wantUnchanged(before)
		})
	}
}

func TestDelete(t *testing.T) {
	e := newEnv(t)
	super, _, internet := e.seed()
	private := e.allocate(api.NetworkAllocateRequest{ProjectID: projA, PartitionID: part1})
	ip, err := e.allocateIP(api.IPAllocateRequest{NetworkID: private.ID, ProjectID: projA}, "")
	if err != nil {
		t.Fatal(err)
	}
	del := func(id string) error {
		return e.try(func(tx store.Tx) error {
			_, err := network.Delete(e.ctx, tx, id)
			return err
		})
	}

	before := e.snapshot()
	if err := del(private.ID); !errors.Is(err, apierror.ErrInUse) {
		t.Errorf("delete a network with an ip: %v, want in use", err)
	}
	if err := del(super.ID); !errors.Is(err, apierror.ErrInUse) {
		t.Errorf("delete a super network with children: %v, want in use", err)
	}
	if err := del("nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("delete an unknown network: %v, want not found", err)
	}
	e.wantUnchanged(before)

	e.write(func(tx store.Tx) error {
		_, err := network.ReleaseIP(e.ctx, tx, ip.Address, false)
		return err
	})
	if err := del(private.ID); err != nil {
		t.Fatalf("delete an empty private network: %v", err)
	}
	if v := e.held(private.ID); len(v) != 0 {
		t.Errorf("deleted network still holds vrf %v", v)
	}
	if err := del(super.ID); err != nil {
		t.Errorf("delete a super network without children: %v", err)
	}
	if err := del(internet.ID); err != nil {
		t.Errorf("delete the internet network: %v", err)
	}
	if v := e.held(internet.ID); len(v) != 0 {
		t.Errorf("deleted network still holds vrf %v", v)
	}
	// Its VRF can be given again.
	e.create(&api.Network{Meta: api.Meta{ID: "internet-2"}, Type: api.NetworkExternal, Prefixes: []string{"185.1.2.0/24"}, VRF: 104009})
	if got := len(e.snapshot().Networks); got != 2 {
		t.Errorf("%d networks left, want underlay and internet-2", got)
	}
}
