// Package postgres opens the HA metal-api store on PostgreSQL (pgx). Several metal-api replicas share
// one database; committed changes travel to every replica with LISTEN/NOTIFY.
package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/metalforge/metalforge/pkg/store"
	"github.com/metalforge/metalforge/pkg/store/sqlstore"
)

const channel = "metalforge_changes"

// schemaLock is the advisory lock key that serialises schema creation.
const schemaLock = 0x6d6574616c66 // "metalf"

// Open connects to dsn, creates the schema if needed and starts the change listener.
func Open(ctx context.Context, dsn string) (*sqlstore.Store, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse postgres dsn: %w", err)
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(32)
	db.SetMaxIdleConns(32)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect postgres: %w", err)
	}
	// Replicas starting together on an empty database race on CREATE ... IF NOT EXISTS, which
	// PostgreSQL does not make atomic; a transaction-scoped advisory lock serialises schema creation.
	lock, err := db.BeginTx(ctx, nil)
	if err == nil {
		_, err = lock.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", schemaLock)
	}
	if err != nil {
		if lock != nil {
			lock.Rollback() //nolint:errcheck // the error that matters is err
		}
		db.Close()
		return nil, fmt.Errorf("lock schema: %w", err)
	}
	lctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	s, err := sqlstore.New(ctx, sqlstore.Config{Read: db, Write: db, Dialect: dialect{}, Close: func() error {
		cancel()
		<-done
		return nil
	}})
	lock.Rollback() //nolint:errcheck // ending the transaction releases the lock either way
	if err != nil {
		cancel()
		db.Close()
		return nil, err
	}
	ready := make(chan error, 1)
	go func() {
		defer close(done)
		listen(lctx, cfg, s, ready)
	}()
	if err := <-ready; err != nil {
		s.Close()
		return nil, fmt.Errorf("listen for changes: %w", err)
	}
	return s, nil
}

// listen keeps a LISTEN connection open and republishes notifications locally; after a reconnect it
// publishes an empty change so subscribers re-read what they may have missed.
func listen(ctx context.Context, cfg *pgx.ConnConfig, s *sqlstore.Store, ready chan<- error) {
	first := true
	for ctx.Err() == nil {
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err == nil {
			_, err = conn.Exec(ctx, "LISTEN "+channel)
		}
		if first {
			ready <- err
			first = false
			if err != nil {
				return
			}
		} else if err == nil {
			s.Publish(store.Change{})
		}
		for err == nil {
			var n *pgconn.Notification
			n, err = conn.WaitForNotification(ctx)
			if err == nil {
				for _, line := range strings.Split(n.Payload, "\n") {
					kind, id, _ := strings.Cut(line, "/")
					s.Publish(store.Change{Kind: store.Kind(kind), ID: id})
				}
			}
		}
		if conn != nil {
			conn.Close(context.Background())
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

type dialect struct{}

func (dialect) Name() string             { return "postgres" }
func (dialect) Placeholder(n int) string { return sqlstore.FormatPlaceholder(n) }
func (dialect) DataType() string         { return "BYTEA" }
func (dialect) SkipLocked() string       { return " FOR UPDATE SKIP LOCKED" }

// TryLock takes a transaction-scoped advisory lock on the 64-bit hash of key; a hash collision only
// makes a caller skip a candidate it could have taken.
func (dialect) TryLock(ctx context.Context, tx *sql.Tx, key string) (bool, error) {
	var ok bool
	err := tx.QueryRowContext(ctx, "SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))", key).Scan(&ok)
	return ok, err
}
func (dialect) IDType() string    { return `TEXT COLLATE "C"` }
func (dialect) EchoLocally() bool { return false }

// PublishInTx sends the changes with pg_notify, which PostgreSQL delivers on commit. Payloads are
// limited to 8000 bytes, so changes are sent in chunks.
func (dialect) PublishInTx(ctx context.Context, tx *sql.Tx, changes []store.Change) error {
	var b strings.Builder
	flush := func() error {
		if b.Len() == 0 {
			return nil
		}
		_, err := tx.ExecContext(ctx, "SELECT pg_notify($1, $2)", channel, b.String())
		b.Reset()
		return err
	}
	for _, c := range changes {
		line := string(c.Kind) + "/" + c.ID
		if b.Len()+len(line)+1 > 7900 {
			if err := flush(); err != nil {
				return err
			}
		}
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(line)
	}
	return flush()
}

// Retryable: serialization failures and deadlocks.
func (dialect) Retryable(err error) bool {
	var e *pgconn.PgError
	if errors.As(err, &e) {
		return e.Code == "40001" || e.Code == "40P01"
	}
	return false
}
