// Package storetest is the conformance suite of store.Store: every backend (store/sqlite,
// store/postgres) runs the same subtests through Run, so callers can rely on the documented
// semantics — versions and conflicts, unique keys, queries and cursors, number pools, transactional
// rollback and retry, concurrency and change notification — whichever database is underneath.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/store"
)

// timeout bounds every subtest, so a hung backend fails instead of stalling the run.
const timeout = 2 * time.Minute

// Run runs the conformance suite. open must return a fresh, empty store for each call; Run closes
// it when the subtest ends (open may register further cleanup, e.g. dropping a database, with
// t.Cleanup: it runs after the close).
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"CRUD", testCRUD},
		{"UniqueKeys", testUniqueKeys},
		{"ListCount", testListCount},
		{"Pagination", testPagination},
		{"Order", testOrder},
		{"RowsCountBy", testRowsCountBy},
		{"Pools", testPools},
		{"Rollback", testRollback},
		{"ReadOnly", testReadOnly},
		{"Retry", testRetry},
		{"ConcurrentAcquire", testConcurrentAcquire},
		{"ConcurrentIncrement", testConcurrentIncrement},
		{"Subscribe", testSubscribe},
		{"SlowSubscriber", testSlowSubscriber},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("close store: %v", err)
				}
			})
			tc.fn(t, s)
		})
	}
}

// testContext is bounded by timeout and ends with the test.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	t.Cleanup(cancel)
	return ctx
}

// write runs fn in a write transaction that must succeed.
func write(t *testing.T, s store.Store, fn func(ctx context.Context, tx store.Tx) error) {
	t.Helper()
	ctx := testContext(t)
	if err := s.Write(ctx, func(tx store.Tx) error { return fn(ctx, tx) }); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// read runs fn in a read transaction that must succeed.
func read(t *testing.T, s store.Store, fn func(ctx context.Context, tx store.Tx) error) {
	t.Helper()
	ctx := testContext(t)
	if err := s.Read(ctx, func(tx store.Tx) error { return fn(ctx, tx) }); err != nil {
		t.Fatalf("read: %v", err)
	}
}

// try runs fn in a write transaction and returns the error fn saw, committing whatever happened
// before it. Write would retry an fn that returns ErrConflict; try reports it instead.
func try(t *testing.T, s store.Store, fn func(ctx context.Context, tx store.Tx) error) error {
	t.Helper()
	var seen error
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		seen = fn(ctx, tx)
		return nil
	})
	return seen
}

// get reads one entity in its own read transaction.
func get[T any](t *testing.T, s store.Store, table func(store.Tx) store.Table[T], id string) (*T, error) {
	t.Helper()
	var e *T
	ctx := testContext(t)
	err := s.Read(ctx, func(tx store.Tx) error {
		var err error
		e, err = table(tx).Get(ctx, id)
		return err
	})
	return e, err
}

// mustGet reads an entity that must exist.
func mustGet[T any](t *testing.T, s store.Store, table func(store.Tx) store.Table[T], id string) *T {
	t.Helper()
	e, err := get(t, s, table, id)
	if err != nil {
		t.Fatalf("get %q: %v", id, err)
	}
	return e
}

// wantNotFound fails unless id is gone.
func wantNotFound[T any](t *testing.T, s store.Store, table func(store.Tx) store.Table[T], id string) {
	t.Helper()
	if e, err := get(t, s, table, id); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("get %q = %+v, %v; want ErrNotFound", id, e, err)
	}
}

// wantErr fails unless err is target.
func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: error %v, want %v", what, err, target)
	}
}

// clone deep-copies an entity through JSON, as a second reader would see it.
func clone[T any](t *testing.T, e *T) *T {
	t.Helper()
	data, err := json.Marshal(e)
	if err != nil {
		t.Fatalf("clone: %v", err)
	}
	c := new(T)
	if err := json.Unmarshal(data, c); err != nil {
		t.Fatalf("clone: %v", err)
	}
	return c
}

// Table accessors, to pass a kind to the generic helpers.
func partitions(tx store.Tx) store.Table[api.Partition]      { return tx.Partitions() }
func machines(tx store.Tx) store.Table[api.Machine]          { return tx.Machines() }
func networks(tx store.Tx) store.Table[api.Network]          { return tx.Networks() }
func tokens(tx store.Tx) store.Table[api.Token]              { return tx.Tokens() }
func projects(tx store.Tx) store.Table[api.Project]          { return tx.Projects() }
func eventLogs(tx store.Tx) store.Table[api.MachineEventLog] { return tx.EventLogs() }
