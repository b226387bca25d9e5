package sqlite_test

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/store"
	"github.com/metalforge/metalforge/pkg/store/sqlite"
	"github.com/metalforge/metalforge/pkg/store/storetest"
)

func open(t *testing.T, dir string) store.Store {
	t.Helper()
	s, err := sqlite.Open(t.Context(), dir)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return open(t, t.TempDir()) })
}

func TestBackend(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	if got := s.Backend(); got != "sqlite" {
		t.Errorf("Backend() = %q, want sqlite", got)
	}
}

// TestReopen checks that committed data, unique keys and pool values survive Close and Open.
func TestReopen(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	s := open(t, dir)
	m := &api.Machine{Meta: api.Meta{ID: "m1", Name: "one"}, PartitionID: "fra", SizeID: "c1",
		Hardware: api.MachineHardware{NICs: []api.MachineNIC{{Name: "eth0", MAC: "aa:bb"}}}}
	err := s.Write(ctx, func(tx store.Tx) error {
		if err := tx.Machines().Create(ctx, m); err != nil {
			return err
		}
		_, err := tx.Acquire(ctx, "vrf", 1, 10, 0, "m1")
		return err
	})
	if err != nil {
		t.Fatalf("write: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	s = open(t, dir)
	defer s.Close()
	err = s.Read(ctx, func(tx store.Tx) error {
		got, err := tx.Machines().Get(ctx, "m1")
		if err != nil {
			return err
		}
		if diff := cmp.Diff(m, got, cmpopts.EquateApproxTime(0)); diff != "" {
			t.Errorf("machine after reopen (-want +got):\n%s", diff)
		}
		if id, err := tx.Lookup(ctx, store.KindMachine, "mac:aa:bb"); err != nil || id != "m1" {
			t.Errorf("lookup after reopen = %q, %v; want m1", id, err)
		}
		held, err := tx.Held(ctx, "vrf", "m1")
		if err != nil {
			return err
		}
		if diff := cmp.Diff([]uint64{1}, held); diff != "" {
			t.Errorf("held after reopen (-want +got):\n%s", diff)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	// The reopened store keeps working: the next value, and a duplicate MAC is still refused.
	err = s.Write(ctx, func(tx store.Tx) error {
		v, err := tx.Acquire(ctx, "vrf", 1, 10, 0, "m2")
		if err == nil && v != 2 {
			t.Errorf("acquire after reopen = %d, want 2", v)
		}
		return err
	})
	if err != nil {
		t.Fatalf("acquire after reopen: %v", err)
	}
	dup := &api.Machine{Meta: api.Meta{ID: "m2"}, Hardware: m.Hardware}
	err = s.Write(ctx, func(tx store.Tx) error { return tx.Machines().Create(ctx, dup) })
	if !errors.Is(err, store.ErrDuplicate) {
		t.Errorf("duplicate mac after reopen: %v, want ErrDuplicate", err)
	}
}
