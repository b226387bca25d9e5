package network_test

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/apierror"
	"github.com/metalforge/metalforge/pkg/network"
	"github.com/metalforge/metalforge/pkg/store"
)

func TestAllocateIPNextFree(t *testing.T) {
	e := newEnv(t)
	e.seed()
	tiny := e.create(&api.Network{Meta: api.Meta{ID: "tiny"}, Type: api.NetworkExternal, Prefixes: []string{"192.0.2.0/30"}})
	v6 := e.create(&api.Network{Meta: api.Meta{ID: "v6"}, Type: api.NetworkExternal, Prefixes: []string{"2001:db8::/64"}})
	p2p := e.create(&api.Network{Meta: api.Meta{ID: "p2p"}, Type: api.NetworkExternal, Prefixes: []string{"198.51.100.0/31"}})
	private := e.allocate(api.NetworkAllocateRequest{ProjectID: projA, PartitionID: part1})

	next := func(n *api.Network) (string, error) {
		ip, err := e.allocateIP(api.IPAllocateRequest{NetworkID: n.ID, ProjectID: projA}, "")
		if err != nil {
			return "", err
		}
		return ip.Address, nil
	}
	var got []string
	for range 3 {
		a, err := next(private)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, a)
	}
	if diff := cmp.Diff([]string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}, got); diff != "" {
		t.Errorf("next free addresses of %s (-want +got):\n%s", private.Prefixes[0], diff)
	}

	// A /30 has two usable addresses: never the network or broadcast address.
	got = nil
	for range 2 {
		a, err := next(tiny)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, a)
	}
	if diff := cmp.Diff([]string{"192.0.2.1", "192.0.2.2"}, got); diff != "" {
		t.Errorf("addresses of a /30 (-want +got):\n%s", diff)
	}
	before := e.snapshot()
	if a, err := next(tiny); !errors.Is(err, store.ErrExhausted) {
		t.Errorf("third address of a /30: %q, %v; want exhausted", a, err)
	}
	e.wantUnchanged(before)

	if a, err := next(v6); err != nil || a != "2001:db8::1" {
		t.Errorf("first address of an IPv6 /64: %q, %v; want 2001:db8::1", a, err)
	}
	if a, err := next(p2p); err != nil || a != "198.51.100.0" {
		t.Errorf("first address of a /31: %q, %v; want 198.51.100.0", a, err)
	}

	// A freed address is handed out again first.
	e.write(func(tx store.Tx) error {
		_, err := network.ReleaseIP(e.ctx, tx, "10.0.0.2", false)
		return err
	})
	if a, err := next(private); err != nil || a != "10.0.0.2" {
		t.Errorf("after release: %q, %v; want 10.0.0.2 again", a, err)
	}
}

func TestAllocateIP(t *testing.T) {
	e := newEnv(t)
	super, underlay, internet := e.seed()
	privA := e.allocate(api.NetworkAllocateRequest{ProjectID: projA, PartitionID: part1})
	privB := e.allocate(api.NetworkAllocateRequest{ProjectID: projB, PartitionID: part1})
	sharedB := e.allocate(api.NetworkAllocateRequest{ProjectID: projB, PartitionID: part1, Shared: true})
	if _, err := e.allocateIP(api.IPAllocateRequest{NetworkID: internet.ID, ProjectID: projB, Address: "185.1.2.10"}, ""); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		req     api.IPAllocateRequest
		want    string // the address, when it must succeed
		wantErr error
	}{
		{"specific address", api.IPAllocateRequest{NetworkID: privA.ID, ProjectID: projA, Address: "10.0.0.77"}, "10.0.0.77", nil},
		{"specific ipv4 broadcast", api.IPAllocateRequest{NetworkID: privA.ID, ProjectID: projA, Address: "10.0.3.255"}, "", apierror.ErrInvalid},
		{"specific network address", api.IPAllocateRequest{NetworkID: privA.ID, ProjectID: projA, Address: "10.0.0.0"}, "", apierror.ErrInvalid},
		{"outside the prefixes", api.IPAllocateRequest{NetworkID: privA.ID, ProjectID: projA, Address: "10.0.4.1"}, "", apierror.ErrInvalid},
		{"of another network", api.IPAllocateRequest{NetworkID: privA.ID, ProjectID: projA, Address: "185.1.2.11"}, "", apierror.ErrInvalid},
		{"not an address", api.IPAllocateRequest{NetworkID: privA.ID, ProjectID: projA, Address: "10.0.0.300"}, "", apierror.ErrInvalid},
		{"a prefix", api.IPAllocateRequest{NetworkID: privA.ID, ProjectID: projA, Address: "10.0.0.8/32"}, "", apierror.ErrInvalid},
		{"duplicate", api.IPAllocateRequest{NetworkID: internet.ID, ProjectID: projA, Address: "185.1.2.10"}, "", store.ErrDuplicate},
		{"other project's private network", api.IPAllocateRequest{NetworkID: privB.ID, ProjectID: projA}, "", apierror.ErrForbidden},
		{"other project's private network, specific", api.IPAllocateRequest{NetworkID: privB.ID, ProjectID: projA, Address: "10.0.4.9"},
			"", apierror.ErrForbidden},
		{"other project's shared network", api.IPAllocateRequest{NetworkID: sharedB.ID, ProjectID: projA}, "10.0.8.1", nil},
		{"external network", api.IPAllocateRequest{NetworkID: internet.ID, ProjectID: projA, Type: api.IPStatic}, "185.1.2.1", nil},
		{"underlay", api.IPAllocateRequest{NetworkID: underlay.ID, ProjectID: projA}, "10.255.0.1", nil},
		{"super network", api.IPAllocateRequest{NetworkID: super.ID, ProjectID: projA}, "", apierror.ErrInvalid},
		{"unknown network", api.IPAllocateRequest{NetworkID: "nope", ProjectID: projA}, "", apierror.ErrInvalid},
		{"unknown project", api.IPAllocateRequest{NetworkID: internet.ID, ProjectID: "nobody"}, "", apierror.ErrInvalid},
		{"no project", api.IPAllocateRequest{NetworkID: internet.ID}, "", apierror.ErrInvalid},
		{"bad type", api.IPAllocateRequest{NetworkID: internet.ID, ProjectID: projA, Type: "floating"}, "", apierror.ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := e.snapshot()
			ip, err := e.allocateIP(tc.req, "")
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("AllocateIP = %v, %v; want %v", ip, err, tc.wantErr)
				}
				if apierror.Status(err) >= 500 {
					t.Errorf("status %d for %v, want a client error", apierror.Status(err), err)
				}
				e.wantUnchanged(before)
				return
			}
			if err != nil {
				t.Fatalf("AllocateIP: %v", err)
			}
			if ip.Address != tc.want {
				t.Errorf("AllocateIP = %s, want %s", ip.Address, tc.want)
			}
			after := e.snapshot()
			if len(after.IPs) != len(before.IPs)+1 {
				t.Errorf("%d ips stored, want %d", len(after.IPs), len(before.IPs)+1)
			}
		})
	}
}

func TestAllocateIPStored(t *testing.T) {
	e := newEnv(t)
	_, _, internet := e.seed()
	ip, err := e.allocateIP(api.IPAllocateRequest{Name: "ingress", Description: "cluster ingress", NetworkID: internet.ID,
		ProjectID: projA, Type: api.IPStatic, Tags: []string{"service=ingress"}}, "machine-1")
	if err != nil {
		t.Fatal(err)
	}
	var stored *api.IP
	e.write(func(tx store.Tx) error {
		var err error
		stored, err = tx.IPs().Get(e.ctx, "185.1.2.1")
		return err
	})
	want := &api.IP{Meta: api.Meta{ID: "185.1.2.1", Name: "ingress", Description: "cluster ingress"}, Address: "185.1.2.1",
		NetworkID: internet.ID, ProjectID: projA, Type: api.IPStatic, Tags: []string{"service=ingress"}, MachineID: "machine-1"}
	ignore := cmpopts.IgnoreFields(api.Meta{}, "Created", "Changed", "Version")
	if diff := cmp.Diff(want, stored, ignore); diff != "" {
		t.Errorf("stored ip (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(stored, ip); diff != "" {
		t.Errorf("returned ip differs from the stored one (-stored +returned):\n%s", diff)
	}
	eph, err := e.allocateIP(api.IPAllocateRequest{NetworkID: internet.ID, ProjectID: projA}, "")
	if err != nil || eph.Type != api.IPEphemeral {
		t.Errorf("default type: %+v, %v; want ephemeral", eph, err)
	}
}

func TestReleaseIP(t *testing.T) {
	e := newEnv(t)
	_, _, internet := e.seed()
	if _, err := e.allocateIP(api.IPAllocateRequest{NetworkID: internet.ID, ProjectID: projA}, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := e.allocateIP(api.IPAllocateRequest{NetworkID: internet.ID, ProjectID: projA}, "machine-1"); err != nil {
		t.Fatal(err)
	}
	release := func(addr string, force bool) (*api.IP, error) {
		var ip *api.IP
		err := e.try(func(tx store.Tx) error {
			var err error
			ip, err = network.ReleaseIP(e.ctx, tx, addr, force)
			return err
		})
		return ip, err
	}

	before := e.snapshot()
	if _, err := release("185.1.2.2", false); !errors.Is(err, apierror.ErrInUse) {
		t.Errorf("release a machine's address: %v, want in use", err)
	}
	if _, err := release("185.1.2.99", false); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("release an unknown address: %v, want not found", err)
	}
	e.wantUnchanged(before)

	ip, err := release("185.1.2.1", false)
	if err != nil || ip.Address != "185.1.2.1" {
		t.Fatalf("release: %v, %v", ip, err)
	}
	if _, err := release("185.1.2.2", true); err != nil {
		t.Fatalf("forced release of a machine's address: %v", err)
	}
	if got := e.snapshot().IPs; len(got) != 0 {
		t.Errorf("ips left after release: %v", got)
	}
}

func TestUsage(t *testing.T) {
	e := newEnv(t)
	super, _, internet := e.seed()
	dual := e.create(&api.Network{Meta: api.Meta{ID: "dual"}, Type: api.NetworkExternal,
		Prefixes: []string{"192.0.2.0/24", "2001:db8::/64"}})
	for range 3 {
		if _, err := e.allocateIP(api.IPAllocateRequest{NetworkID: internet.ID, ProjectID: projA}, ""); err != nil {
			t.Fatal(err)
		}
	}
	e.allocate(api.NetworkAllocateRequest{ProjectID: projA, PartitionID: part1})
	e.allocate(api.NetworkAllocateRequest{ProjectID: projB, PartitionID: part1})

	tests := []struct {
		n    *api.Network
		want api.NetworkUsage
	}{
		{internet, api.NetworkUsage{NetworkID: internet.ID, Available: 254, Used: 3}},
		{super, api.NetworkUsage{NetworkID: super.ID, Available: 65534, UsedPrefixes: 2}},
		{dual, api.NetworkUsage{NetworkID: dual.ID, Available: 1<<63 - 1}},
	}
	for _, tc := range tests {
		var got *api.NetworkUsage
		e.write(func(tx store.Tx) error {
			var err error
			got, err = network.Usage(e.ctx, tx, tc.n)
			return err
		})
		if diff := cmp.Diff(&tc.want, got); diff != "" {
			t.Errorf("Usage(%s) (-want +got):\n%s", tc.n.ID, diff)
		}
	}
}

func TestShared(t *testing.T) {
	for typ, want := range map[string]bool{
		api.NetworkExternal: true, api.NetworkUnderlay: true, api.NetworkPrivateShared: true,
		api.NetworkPrivate: false, api.NetworkSuper: false,
	} {
		if got := network.Shared(&api.Network{Type: typ}); got != want {
			t.Errorf("Shared(%s) = %v, want %v", typ, got, want)
		}
	}
}

// TestAllocateIPMultiPrefix checks that addresses of a multi-prefix network fill the first prefix first.
func TestAllocateIPMultiPrefix(t *testing.T) {
	e := newEnv(t)
	n := e.create(&api.Network{Meta: api.Meta{ID: "two"}, Type: api.NetworkExternal, Prefixes: []string{"192.0.2.0/30", "198.51.100.0/30"}})
	var got []string
	for range 4 {
		ip, err := e.allocateIP(api.IPAllocateRequest{NetworkID: n.ID, ProjectID: projA}, "")
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ip.Address)
	}
	if diff := cmp.Diff([]string{"192.0.2.1", "192.0.2.2", "198.51.100.1", "198.51.100.2"}, got); diff != "" {
		t.Errorf("addresses (-want +got):\n%s", diff)
	}
}
