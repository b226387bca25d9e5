// Package sqlite opens the embedded metal-api store: a SQLite database (modernc.org/sqlite, pure Go)
// in WAL mode in a data directory. Writers use one connection with BEGIN IMMEDIATE, readers a pool.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/metalforge/metalforge/pkg/store"
	"github.com/metalforge/metalforge/pkg/store/sqlstore"
)

// Open opens (creating if needed) the store in dir/metal.db.
func Open(ctx context.Context, dir string) (*sqlstore.Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	path := filepath.Join(dir, "metal.db")
	pragmas := url.Values{}
	for _, p := range []string{"journal_mode(WAL)", "busy_timeout(10000)", "synchronous(NORMAL)", "foreign_keys(1)"} {
		pragmas.Add("_pragma", p)
	}
	write, err := sql.Open("sqlite", "file:"+path+"?"+pragmas.Encode()+"&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	write.SetMaxOpenConns(1)
	read, err := sql.Open("sqlite", "file:"+path+"?"+pragmas.Encode()+"&mode=ro")
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	read.SetMaxOpenConns(8)
	s, err := sqlstore.New(ctx, sqlstore.Config{Read: read, Write: write, Dialect: dialect{}})
	if err != nil {
		write.Close()
		read.Close()
		return nil, err
	}
	return s, nil
}

type dialect struct{}

func (dialect) Name() string           { return "sqlite" }
func (dialect) Placeholder(int) string { return "?" }
func (dialect) DataType() string       { return "BLOB" }
func (dialect) IDType() string         { return "TEXT" } // BINARY collation
func (dialect) EchoLocally() bool      { return true }
func (dialect) SkipLocked() string     { return "" } // one writer at a time

func (dialect) TryLock(context.Context, *sql.Tx, string) (bool, error) { return true, nil }

func (dialect) PublishInTx(context.Context, *sql.Tx, []store.Change) error { return nil }

func (dialect) Retryable(err error) bool {
	var e *sqlite.Error
	if errors.As(err, &e) {
		switch e.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			return true
		}
	}
	return false
}
