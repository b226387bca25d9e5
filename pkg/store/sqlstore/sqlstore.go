// Package sqlstore is the SQL engine behind store.Store. Each aggregate is a table of JSON
// documents with a few indexed columns (store.IndexOf); unique keys and number pools are tables with
// primary keys. A Dialect adapts it to SQLite or PostgreSQL.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/metalforge/metalforge/pkg/store"
)

// Dialect is what differs between databases.
type Dialect interface {
	// Name is the backend name.
	Name() string
	// Placeholder renders the n-th (1-based) bind parameter.
	Placeholder(n int) string
	// Retryable reports errors that a retry of the transaction can cure (busy, serialization).
	Retryable(err error) bool
	// PublishInTx sends changes to other replicas as part of the transaction; nil if not needed.
	PublishInTx(ctx context.Context, tx *sql.Tx, changes []store.Change) error
	// EchoLocally is true when committed changes must be delivered to local subscribers directly
	// (SQLite); false when PublishInTx delivers them back (PostgreSQL LISTEN).
	EchoLocally() bool
	// DataType is the column type of JSON documents.
	DataType() string
	// IDType is the column type of entity IDs; it must compare bytewise, so that List orders and
	// pages alike on every backend whatever the database's locale.
	IDType() string
	// SkipLocked is appended to a SELECT of Rows with Query.Lock: it locks the returned rows for the
	// transaction and skips rows other transactions hold ("" where writers are serialised anyway).
	SkipLocked() string
	// TryLock takes a transaction-scoped advisory lock on key; nil where writers are serialised.
	TryLock(ctx context.Context, tx *sql.Tx, key string) (bool, error)
}

// Config wires a store.
type Config struct {
	// Read serves read transactions, Write write transactions; they may be the same pool.
	Read, Write *sql.DB
	Dialect     Dialect
	// MaxAttempts bounds Write's retries on conflict (default 30).
	MaxAttempts int
	// Close is called by Store.Close after the pools are closed (e.g. to stop a listener).
	Close func() error
}

// Store implements store.Store.
type Store struct {
	cfg  Config
	mu   sync.Mutex
	subs map[chan store.Change]struct{}

	writes, retries atomic.Int64
}

// Stats counts write transactions and their retries since the store was opened.
func (s *Store) Stats() (writes, retries int64) { return s.writes.Load(), s.retries.Load() }

// New creates the schema if needed and returns the store.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = 30
	}
	s := &Store{cfg: cfg, subs: map[chan store.Change]struct{}{}}
	if err := s.migrate(ctx); err != nil {
		return nil, fmt.Errorf("create schema: %w", err)
	}
	return s, nil
}

func (s *Store) migrate(ctx context.Context) error {
	dt, it := s.cfg.Dialect.DataType(), s.cfg.Dialect.IDType()
	var stmts []string
	for _, k := range store.Kinds() {
		stmts = append(stmts,
			fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (id %s PRIMARY KEY, version BIGINT NOT NULL,
				project TEXT NOT NULL, partition TEXT NOT NULL, key1 TEXT NOT NULL, key2 TEXT NOT NULL,
				key3 TEXT NOT NULL, data %s NOT NULL)`, k, it, dt),
			fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %s_project ON %s (project, id)`, k, k),
			fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %s_scope ON %s (partition, key1, key2, key3, id)`, k, k),
			fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %s_key1 ON %s (key1, id)`, k, k),
			fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %s_key2 ON %s (key2, id)`, k, k),
		)
	}
	stmts = append(stmts,
		`CREATE TABLE IF NOT EXISTS unique_keys (kind TEXT NOT NULL, key TEXT NOT NULL, id TEXT NOT NULL,
			PRIMARY KEY (kind, key))`,
		`CREATE INDEX IF NOT EXISTS unique_keys_id ON unique_keys (kind, id)`,
		`CREATE TABLE IF NOT EXISTS pools (pool TEXT NOT NULL, value BIGINT NOT NULL, owner TEXT NOT NULL,
			PRIMARY KEY (pool, value))`,
		`CREATE INDEX IF NOT EXISTS pools_owner ON pools (pool, owner)`,
	)
	for _, q := range stmts {
		if _, err := s.cfg.Write.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", strings.Fields(q)[0:6], err)
		}
	}
	return nil
}

// Backend implements store.Store.
func (s *Store) Backend() string { return s.cfg.Dialect.Name() }

// Close implements store.Store.
func (s *Store) Close() error {
	err := s.cfg.Write.Close()
	if s.cfg.Read != s.cfg.Write {
		err = errors.Join(err, s.cfg.Read.Close())
	}
	if s.cfg.Close != nil {
		err = errors.Join(err, s.cfg.Close())
	}
	return err
}

// Read implements store.Store.
func (s *Store) Read(ctx context.Context, fn func(store.Tx) error) error {
	sqlTx, err := s.cfg.Read.BeginTx(ctx, &sql.TxOptions{ReadOnly: s.cfg.Dialect.Name() == "postgres"})
	if err != nil {
		return fmt.Errorf("begin read: %w", err)
	}
	defer sqlTx.Rollback() //nolint:errcheck // rollback after commit is a no-op
	t := &txn{s: s, tx: sqlTx, readOnly: true}
	if err := fn(t); err != nil {
		return err
	}
	return sqlTx.Commit()
}

// Write implements store.Store.
func (s *Store) Write(ctx context.Context, fn func(store.Tx) error) error {
	var err error
	for attempt := 0; attempt < s.cfg.MaxAttempts; attempt++ {
		if attempt > 0 {
			backoff := time.Duration(rand.Int64N(int64(time.Millisecond) << min(attempt, 6)))
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(backoff):
			}
		}
		err = s.writeOnce(ctx, fn)
		if err == nil || !s.retryable(err) {
			s.writes.Add(1)
			return err
		}
		s.retries.Add(1)
	}
	return fmt.Errorf("gave up after %d attempts: %w", s.cfg.MaxAttempts, err)
}

func (s *Store) retryable(err error) bool {
	return errors.Is(err, store.ErrConflict) || s.cfg.Dialect.Retryable(err)
}

func (s *Store) writeOnce(ctx context.Context, fn func(store.Tx) error) error {
	sqlTx, err := s.cfg.Write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin write: %w", err)
	}
	defer sqlTx.Rollback() //nolint:errcheck // rollback after commit is a no-op
	t := &txn{s: s, tx: sqlTx}
	if err := fn(t); err != nil {
		return err
	}
	if len(t.changes) > 0 {
		if err := s.cfg.Dialect.PublishInTx(ctx, sqlTx, t.changes); err != nil {
			return fmt.Errorf("publish changes: %w", err)
		}
	}
	if err := sqlTx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	if s.cfg.Dialect.EchoLocally() {
		for _, c := range t.changes {
			s.Publish(c)
		}
	}
	return nil
}

// Subscribe implements store.Store.
func (s *Store) Subscribe(ctx context.Context) <-chan store.Change {
	ch := make(chan store.Change, 1024)
	s.mu.Lock()
	s.subs[ch] = struct{}{}
	s.mu.Unlock()
	go func() {
		<-ctx.Done()
		s.mu.Lock()
		delete(s.subs, ch)
		s.mu.Unlock()
		close(ch)
	}()
	return ch
}

// Publish delivers a change to local subscribers without blocking; a full subscriber gets an empty
// Change ("re-read everything") once it has room again.
func (s *Store) Publish(c store.Change) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ch := range s.subs {
		select {
		case ch <- c:
		default:
			// Full: drop the oldest pending change and signal a gap instead.
			select {
			case <-ch:
			default:
			}
			select {
			case ch <- store.Change{}:
			default:
			}
		}
	}
}
