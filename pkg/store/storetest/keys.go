package storetest

import (
	"context"
	"testing"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/store"
)

// machineWithMACs is a free machine with one NIC per MAC.
func machineWithMACs(id string, macs ...string) *api.Machine {
	m := &api.Machine{Meta: api.Meta{ID: id}, PartitionID: "fra", SizeID: "c1"}
	for i, mac := range macs {
		m.Hardware.NICs = append(m.Hardware.NICs, api.MachineNIC{Name: "eth" + string(rune('0'+i)), MAC: mac})
	}
	return m
}

// wantHolder fails unless key of kind is held by id ("" meaning nobody).
func wantHolder(t *testing.T, s store.Store, kind store.Kind, key, id string) {
	t.Helper()
	ctx := testContext(t)
	var got string
	err := s.Read(ctx, func(tx store.Tx) error {
		var err error
		got, err = tx.Lookup(ctx, kind, key)
		return err
	})
	switch {
	case id == "":
		wantErr(t, "lookup "+key, err, store.ErrNotFound)
	case err != nil:
		t.Errorf("lookup %s: %v, want %q", key, err, id)
	case got != id:
		t.Errorf("lookup %s = %q, want %q", key, got, id)
	}
}

func testUniqueKeys(t *testing.T, s store.Store) {
	ctx := testContext(t)
	const macA, macB, macC, macD = "aa:aa", "bb:bb", "cc:cc", "dd:dd"

	t.Run("machines", func(t *testing.T) {
		write(t, s, func(ctx context.Context, tx store.Tx) error {
			return tx.Machines().Create(ctx, machineWithMACs("m1", macA, macB))
		})
		wantHolder(t, s, store.KindMachine, "mac:"+macA, "m1")
		wantHolder(t, s, store.KindMachine, "mac:"+macB, "m1")
		// Keys are per kind.
		wantHolder(t, s, store.KindNetwork, "mac:"+macA, "")

		// A second machine with a taken MAC is a duplicate and is not stored at all.
		err := s.Write(ctx, func(tx store.Tx) error {
			return tx.Machines().Create(ctx, machineWithMACs("m2", macC, macB))
		})
		wantErr(t, "create with a taken mac", err, store.ErrDuplicate)
		wantNotFound(t, s, machines, "m2")
		wantHolder(t, s, store.KindMachine, "mac:"+macB, "m1")
		wantHolder(t, s, store.KindMachine, "mac:"+macC, "")

		// The same MAC twice in one machine is not a conflict with itself.
		write(t, s, func(ctx context.Context, tx store.Tx) error {
			return tx.Machines().Create(ctx, machineWithMACs("m3", macC, macC))
		})
		wantHolder(t, s, store.KindMachine, "mac:"+macC, "m3")

		// Updating m1's NICs frees its old keys and takes the new ones.
		m1 := mustGet(t, s, machines, "m1")
		m1.Hardware.NICs = machineWithMACs("", macD).Hardware.NICs
		write(t, s, func(ctx context.Context, tx store.Tx) error { return tx.Machines().Update(ctx, m1) })
		wantHolder(t, s, store.KindMachine, "mac:"+macA, "")
		wantHolder(t, s, store.KindMachine, "mac:"+macB, "")
		wantHolder(t, s, store.KindMachine, "mac:"+macD, "m1")
		write(t, s, func(ctx context.Context, tx store.Tx) error {
			return tx.Machines().Create(ctx, machineWithMACs("m2", macA, macB))
		})
		wantHolder(t, s, store.KindMachine, "mac:"+macB, "m2")

		// An update that takes a held MAC fails and leaves both machines as they were.
		m1 = mustGet(t, s, machines, "m1")
		m1.Hardware.NICs = machineWithMACs("", macD, macA).Hardware.NICs
		err = s.Write(ctx, func(tx store.Tx) error { return tx.Machines().Update(ctx, m1) })
		wantErr(t, "update to a taken mac", err, store.ErrDuplicate)
		if m1.Version != 2 {
			t.Errorf("failed update left the caller's version at %d, want 2 restored", m1.Version)
		}
		if got := mustGet(t, s, machines, "m1"); got.Version != 2 || len(got.Hardware.NICs) != 1 {
			t.Errorf("m1 after failed update: version %d, %d nics; want version 2, 1 nic", got.Version, len(got.Hardware.NICs))
		}
		wantHolder(t, s, store.KindMachine, "mac:"+macD, "m1")
		wantHolder(t, s, store.KindMachine, "mac:"+macA, "m2")

		// Delete frees the keys.
		write(t, s, func(ctx context.Context, tx store.Tx) error { return tx.Machines().Delete(ctx, "m1") })
		wantHolder(t, s, store.KindMachine, "mac:"+macD, "")
		write(t, s, func(ctx context.Context, tx store.Tx) error {
			return tx.Machines().Create(ctx, machineWithMACs("m4", macD))
		})
		wantHolder(t, s, store.KindMachine, "mac:"+macD, "m4")
	})

	t.Run("networks", func(t *testing.T) {
		write(t, s, func(ctx context.Context, tx store.Tx) error {
			return tx.Networks().Create(ctx, networkFixture("n1", "10.0.0.0/24", 10))
		})
		wantHolder(t, s, store.KindNetwork, "prefix:10.0.0.0/24", "n1")
		wantHolder(t, s, store.KindNetwork, "vrf:10", "n1")
		for _, tc := range []struct {
			name string
			n    *api.Network
		}{
			{"same prefix", networkFixture("n2", "10.0.0.0/24", 0)},
			{"same vrf", networkFixture("n2", "10.0.1.0/24", 10)},
		} {
			err := s.Write(ctx, func(tx store.Tx) error { return tx.Networks().Create(ctx, tc.n) })
			wantErr(t, tc.name, err, store.ErrDuplicate)
			wantNotFound(t, s, networks, "n2")
			wantHolder(t, s, store.KindNetwork, "prefix:10.0.1.0/24", "")
		}
		write(t, s, func(ctx context.Context, tx store.Tx) error { return tx.Networks().Delete(ctx, "n1") })
		wantHolder(t, s, store.KindNetwork, "prefix:10.0.0.0/24", "")
		wantHolder(t, s, store.KindNetwork, "vrf:10", "")
		write(t, s, func(ctx context.Context, tx store.Tx) error {
			return tx.Networks().Create(ctx, networkFixture("n2", "10.0.0.0/24", 10))
		})
		wantHolder(t, s, store.KindNetwork, "prefix:10.0.0.0/24", "n2")
	})

	t.Run("tokens", func(t *testing.T) {
		write(t, s, func(ctx context.Context, tx store.Tx) error {
			return tx.Tokens().Create(ctx, &api.Token{Meta: api.Meta{ID: "t1"}, Role: api.RoleAdmin, Secret: "h1"})
		})
		err := s.Write(ctx, func(tx store.Tx) error {
			return tx.Tokens().Create(ctx, &api.Token{Meta: api.Meta{ID: "t2"}, Role: api.RoleAdmin, Secret: "h1"})
		})
		wantErr(t, "token with a taken hash", err, store.ErrDuplicate)
		wantHolder(t, s, store.KindToken, "hash:h1", "t1")
		wantNotFound(t, s, tokens, "t2")
	})
}
