// Package store defines metal-api's persistence: one table interface per aggregate, unique keys,
// number pools (ASN, VRF) and change notification. The SQL engine in store/sqlstore implements it
// for SQLite (store/sqlite, the embedded default) and PostgreSQL (store/postgres, for HA); the
// conformance suite in store/storetest runs on both.
//
// Correctness never depends on in-process locks: every update is checked against the version it
// read (ErrConflict otherwise), unique keys and pool values are unique constraints, and Write retries
// the whole transaction on ErrConflict.
package store

import (
	"context"
	"errors"

	"github.com/metalforge/metalforge/pkg/api"
)

// Sentinel errors callers branch on.
var (
	ErrNotFound = errors.New("not found")
	// ErrConflict means a concurrent writer changed what the transaction read; Write retries it.
	ErrConflict = errors.New("conflict")
	// ErrDuplicate means an ID or unique key is taken; it is not retried.
	ErrDuplicate = errors.New("already exists")
	// ErrExhausted means a pool has no free value.
	ErrExhausted = errors.New("exhausted")
)

// Store is a transactional store.
type Store interface {
	// Read runs fn in a read transaction.
	Read(ctx context.Context, fn func(Tx) error) error
	// Write runs fn in a write transaction and commits when fn returns nil. It retries fn from the
	// start (with jittered backoff) when fn or the commit fails with ErrConflict; fn must therefore
	// have no side effects outside the transaction.
	Write(ctx context.Context, fn func(Tx) error) error
	// Subscribe delivers changes committed by any writer (on PostgreSQL also by other replicas)
	// until ctx ends. Slow receivers miss changes rather than block writers; a missed change is
	// signalled by a Change with an empty Kind, after which the receiver should re-read.
	Subscribe(ctx context.Context) <-chan Change
	// Backend names the implementation ("sqlite", "postgres").
	Backend() string
	Close() error
}

// Change says an entity was written.
type Change struct {
	Kind Kind
	ID   string
}

// Tx is one transaction.
type Tx interface {
	Partitions() Table[api.Partition]
	Projects() Table[api.Project]
	Sizes() Table[api.Size]
	SizeReservations() Table[api.SizeReservation]
	Images() Table[api.Image]
	FilesystemLayouts() Table[api.FilesystemLayout]
	Machines() Table[api.Machine]
	EventLogs() Table[api.MachineEventLog]
	Networks() Table[api.Network]
	IPs() Table[api.IP]
	Switches() Table[api.Switch]
	BMCCommands() Table[api.BMCCommand]
	Tokens() Table[api.Token]

	// Lookup finds the entity of a kind that holds a unique key (see Kind.Keys).
	Lookup(ctx context.Context, kind Kind, key string) (id string, err error)
	// Acquire takes a value from a pool: want if non-zero, else the lowest free value in
	// [min, max]. A taken want is ErrDuplicate, a full pool ErrExhausted.
	Acquire(ctx context.Context, pool string, min, max, want uint64, owner string) (uint64, error)
	// Release frees every value of a pool held by owner and returns how many were freed.
	Release(ctx context.Context, pool, owner string) (int, error)
	// Held lists the values of a pool held by owner, ascending.
	Held(ctx context.Context, pool, owner string) ([]uint64, error)
	// TryReserve takes a transaction-scoped claim on a key (e.g. a candidate address) and reports
	// false when a concurrent transaction holds it, so callers move on to another candidate instead
	// of queueing behind it. Claims end with the transaction; where writers are serialised anyway
	// (SQLite) it always succeeds. It is a hint for throughput: correctness still comes from the
	// unique constraints.
	TryReserve(ctx context.Context, key string) (bool, error)
	// Notify publishes a change on commit (Create, Update and Delete of machines do so themselves).
	Notify(kind Kind, id string)
}

// Table is the repository of one aggregate.
type Table[T any] interface {
	Get(ctx context.Context, id string) (*T, error)
	// List returns up to q.Limit entities ordered by ID after q.After, and the cursor of the next
	// page ("" on the last).
	List(ctx context.Context, q Query) ([]*T, string, error)
	// Create stores e with Version 1 and Created/Changed set (ID must be set); ErrDuplicate if the
	// ID or a unique key is taken.
	Create(ctx context.Context, e *T) error
	// Update stores e if its Version is current and increments it; ErrConflict otherwise.
	Update(ctx context.Context, e *T) error
	// Delete removes the entity; ErrNotFound if it does not exist.
	Delete(ctx context.Context, id string) error
	Count(ctx context.Context, q Query) (int, error)
	// Rows lists the IDs and indexed columns of the matching entities without decoding them, for
	// hot paths that only need to choose (allocation candidates, used addresses).
	Rows(ctx context.Context, q Query) ([]Row, error)
	// CountBy counts the matching entities per value of one indexed column: "project",
	// "partition", "key1", "key2" or "key3".
	CountBy(ctx context.Context, q Query, column string) (map[string]int, error)
}

// Row is the ID and the indexed columns of an entity.
type Row struct {
	ID string
	Index
}

// Query filters a list; empty fields match anything. Key1..Key3 are the kind's indexed columns
// (see Kind).
type Query struct {
	Project   string
	Partition string
	Key1      string
	Key2      string
	Key3      string
	After     string
	Limit     int
	// Lock, for Rows in a write transaction, locks the returned rows until the transaction ends and
	// skips rows that concurrent transactions have locked, so concurrent allocators pick different
	// candidates instead of colliding and retrying.
	Lock bool
}
