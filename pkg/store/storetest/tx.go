package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/store"
)

func testRollback(t *testing.T, s store.Store) {
	const pool = "rollback"
	keep := partitionFixture("p-keep")
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		if err := tx.Partitions().Create(ctx, keep); err != nil {
			return err
		}
		if err := tx.Machines().Create(ctx, machineWithMACs("m-keep", "ke:ep")); err != nil {
			return err
		}
		_, err := tx.Acquire(ctx, pool, 1, 100, 0, "keep")
		return err
	})

	boom := errors.New("boom")
	ctx := testContext(t)
	calls := 0
	err := s.Write(ctx, func(tx store.Tx) error {
		calls++
		if err := tx.Partitions().Create(ctx, partitionFixture("p-new")); err != nil {
			return err
		}
		if err := tx.Machines().Create(ctx, machineWithMACs("m-new", "ne:w1")); err != nil {
			return err
		}
		p, err := tx.Partitions().Get(ctx, "p-keep")
		if err != nil {
			return err
		}
		p.Labels["region"] = "us"
		if err := tx.Partitions().Update(ctx, p); err != nil {
			return err
		}
		if err := tx.Machines().Delete(ctx, "m-keep"); err != nil {
			return err
		}
		if _, err := tx.Acquire(ctx, pool, 1, 100, 0, "new"); err != nil {
			return err
		}
		if _, err := tx.Acquire(ctx, pool, 1, 100, 50, "new"); err != nil {
			return err
		}
		if _, err := tx.Release(ctx, pool, "keep"); err != nil {
			return err
		}
		return fmt.Errorf("after writing: %w", boom)
	})
	wantErr(t, "write", err, boom)
	if calls != 1 {
		t.Errorf("fn called %d times, want 1 (only ErrConflict is retried)", calls)
	}

	wantNotFound(t, s, partitions, "p-new")
	wantNotFound(t, s, machines, "m-new")
	wantHolder(t, s, store.KindMachine, "mac:ne:w1", "")
	if diff := cmp.Diff(keep, mustGet(t, s, partitions, "p-keep"), cmpOpts); diff != "" {
		t.Errorf("p-keep after rollback (-want +got):\n%s", diff)
	}
	mustGet(t, s, machines, "m-keep")
	wantHolder(t, s, store.KindMachine, "mac:ke:ep", "m-keep")
	if vs := held(t, s, pool, "new"); len(vs) != 0 {
		t.Errorf("held by new after rollback = %v, want none", vs)
	}
	if diff := cmp.Diff([]uint64{1}, held(t, s, pool, "keep")); diff != "" {
		t.Errorf("held by keep after rollback (-want +got):\n%s", diff)
	}
	if v, err := acquire(t, s, pool, 1, 100, 50, "other"); err != nil || v != 50 {
		t.Errorf("acquire 50 after rollback = %d, %v; want 50", v, err)
	}
	if v, err := acquire(t, s, pool, 1, 100, 0, "other"); err != nil || v != 2 {
		t.Errorf("acquire after rollback = %d, %v; want 2", v, err)
	}
}

func testReadOnly(t *testing.T, s store.Store) {
	const pool = "ro"
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		if err := tx.Partitions().Create(ctx, partitionFixture("p1")); err != nil {
			return err
		}
		_, err := tx.Acquire(ctx, pool, 1, 10, 0, "a")
		return err
	})
	before := mustGet(t, s, partitions, "p1")

	ops := []struct {
		name string
		op   func(ctx context.Context, tx store.Tx) error
	}{
		{"create", func(ctx context.Context, tx store.Tx) error {
			return tx.Partitions().Create(ctx, partitionFixture("p2"))
		}},
		{"update", func(ctx context.Context, tx store.Tx) error {
			p, err := tx.Partitions().Get(ctx, "p1")
			if err != nil {
				return fmt.Errorf("get: %w (reading must work)", err)
			}
			p.Labels["region"] = "us"
			return tx.Partitions().Update(ctx, p)
		}},
		{"delete", func(ctx context.Context, tx store.Tx) error { return tx.Partitions().Delete(ctx, "p1") }},
		{"acquire", func(ctx context.Context, tx store.Tx) error {
			_, err := tx.Acquire(ctx, pool, 1, 10, 0, "b")
			return err
		}},
		{"acquire want", func(ctx context.Context, tx store.Tx) error {
			_, err := tx.Acquire(ctx, pool, 1, 10, 5, "b")
			return err
		}},
		{"release", func(ctx context.Context, tx store.Tx) error {
			_, err := tx.Release(ctx, pool, "a")
			return err
		}},
	}
	for _, tc := range ops {
		ctx := testContext(t)
		if err := s.Read(ctx, func(tx store.Tx) error { return tc.op(ctx, tx) }); err == nil {
			t.Errorf("%s in a read transaction: no error", tc.name)
		}
	}

	if diff := cmp.Diff(before, mustGet(t, s, partitions, "p1"), cmpOpts); diff != "" {
		t.Errorf("p1 after read-only writes (-want +got):\n%s", diff)
	}
	wantNotFound(t, s, partitions, "p2")
	if diff := cmp.Diff([]uint64{1}, held(t, s, pool, "a")); diff != "" {
		t.Errorf("held by a (-want +got):\n%s", diff)
	}
	if vs := held(t, s, pool, "b"); len(vs) != 0 {
		t.Errorf("held by b = %v, want none", vs)
	}
}

func testRetry(t *testing.T, s store.Store) {
	t.Run("conflict then success", func(t *testing.T) {
		ctx := testContext(t)
		calls := 0
		err := s.Write(ctx, func(tx store.Tx) error {
			calls++
			if err := tx.Partitions().Create(ctx, &api.Partition{Meta: api.Meta{ID: fmt.Sprintf("attempt-%d", calls)}}); err != nil {
				return err
			}
			if calls <= 2 {
				return fmt.Errorf("simulated: %w", store.ErrConflict)
			}
			return tx.Partitions().Create(ctx, &api.Partition{Meta: api.Meta{ID: "final"}})
		})
		if err != nil {
			t.Fatalf("write: %v", err)
		}
		if calls != 3 {
			t.Errorf("fn called %d times, want 3", calls)
		}
		// Only the last attempt's writes were committed, once.
		wantNotFound(t, s, partitions, "attempt-1")
		wantNotFound(t, s, partitions, "attempt-2")
		for _, id := range []string{"attempt-3", "final"} {
			if p := mustGet(t, s, partitions, id); p.Version != 1 {
				t.Errorf("%s: version %d, want 1", id, p.Version)
			}
		}
		if n := count(t, s, partitions, store.Query{}); n != 2 {
			t.Errorf("count = %d, want 2", n)
		}
	})

	t.Run("other errors are not retried", func(t *testing.T) {
		for _, sentinel := range []error{store.ErrDuplicate, store.ErrNotFound, store.ErrExhausted, errors.New("plain")} {
			ctx := testContext(t)
			calls := 0
			err := s.Write(ctx, func(tx store.Tx) error {
				calls++
				return fmt.Errorf("wrapped: %w", sentinel)
			})
			wantErr(t, "write", err, sentinel)
			if calls != 1 {
				t.Errorf("%v: fn called %d times, want 1", sentinel, calls)
			}
		}
	})

	t.Run("gives up", func(t *testing.T) {
		ctx := testContext(t)
		calls := 0
		err := s.Write(ctx, func(tx store.Tx) error {
			calls++
			return store.ErrConflict
		})
		wantErr(t, "write", err, store.ErrConflict)
		if calls < 2 {
			t.Errorf("fn called %d times, want retries", calls)
		}
	})

	t.Run("cancel stops retries", func(t *testing.T) {
		ctx, cancel := context.WithCancel(testContext(t))
		defer cancel()
		calls := 0
		err := s.Write(ctx, func(tx store.Tx) error {
			calls++
			if calls == 3 {
				cancel()
			}
			return store.ErrConflict
		})
		wantErr(t, "write", err, context.Canceled)
		if calls != 3 {
			t.Errorf("fn called %d times, want 3", calls)
		}
	})
}
