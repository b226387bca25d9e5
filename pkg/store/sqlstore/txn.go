package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/store"
)

// txn implements store.Tx.
type txn struct {
	s        *Store
	tx       *sql.Tx
	readOnly bool
	changes  []store.Change
}

// bind rewrites ? placeholders for the dialect.
func (t *txn) bind(q string) string {
	if t.s.cfg.Dialect.Placeholder(1) == "?" {
		return q
	}
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteString(t.s.cfg.Dialect.Placeholder(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func (t *txn) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	if t.readOnly {
		return nil, errors.New("write in a read transaction")
	}
	return t.tx.ExecContext(ctx, t.bind(q), args...)
}

func (t *txn) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return t.tx.QueryContext(ctx, t.bind(q), args...)
}

func (t *txn) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	return t.tx.QueryRowContext(ctx, t.bind(q), args...)
}

func (t *txn) TryReserve(ctx context.Context, key string) (bool, error) {
	if t.readOnly {
		return false, errors.New("reserve in a read transaction")
	}
	ok, err := t.s.cfg.Dialect.TryLock(ctx, t.tx, key)
	if err != nil {
		return false, fmt.Errorf("reserve %s: %w", key, err)
	}
	return ok, nil
}

func (t *txn) Notify(kind store.Kind, id string) {
	t.changes = append(t.changes, store.Change{Kind: kind, ID: id})
}

func (t *txn) Partitions() store.Table[api.Partition] {
	return table[api.Partition, *api.Partition]{t, store.KindPartition}
}
func (t *txn) Projects() store.Table[api.Project] {
	return table[api.Project, *api.Project]{t, store.KindProject}
}
func (t *txn) Sizes() store.Table[api.Size] { return table[api.Size, *api.Size]{t, store.KindSize} }
func (t *txn) SizeReservations() store.Table[api.SizeReservation] {
	return table[api.SizeReservation, *api.SizeReservation]{t, store.KindSizeReservation}
}
func (t *txn) Images() store.Table[api.Image] {
	return table[api.Image, *api.Image]{t, store.KindImage}
}
func (t *txn) FilesystemLayouts() store.Table[api.FilesystemLayout] {
	return table[api.FilesystemLayout, *api.FilesystemLayout]{t, store.KindFilesystemLayout}
}
func (t *txn) Machines() store.Table[api.Machine] {
	return table[api.Machine, *api.Machine]{t, store.KindMachine}
}
func (t *txn) EventLogs() store.Table[api.MachineEventLog] {
	return table[api.MachineEventLog, *api.MachineEventLog]{t, store.KindEventLog}
}
func (t *txn) Networks() store.Table[api.Network] {
	return table[api.Network, *api.Network]{t, store.KindNetwork}
}
func (t *txn) IPs() store.Table[api.IP] { return table[api.IP, *api.IP]{t, store.KindIP} }
func (t *txn) Switches() store.Table[api.Switch] {
	return table[api.Switch, *api.Switch]{t, store.KindSwitch}
}
func (t *txn) BMCCommands() store.Table[api.BMCCommand] {
	return table[api.BMCCommand, *api.BMCCommand]{t, store.KindBMCCommand}
}
func (t *txn) Tokens() store.Table[api.Token] {
	return table[api.Token, *api.Token]{t, store.KindToken}
}

// putKeys sets the unique keys of an entity; replace drops its old keys first.
func (t *txn) putKeys(ctx context.Context, kind store.Kind, id string, keys []string, replace bool) error {
	if replace {
		if _, err := t.exec(ctx, `DELETE FROM unique_keys WHERE kind = ? AND id = ?`, string(kind), id); err != nil {
			return fmt.Errorf("replace keys of %s %q: %w", singular(kind), id, err)
		}
	}
	for _, k := range keys {
		res, err := t.exec(ctx, `INSERT INTO unique_keys (kind, key, id) VALUES (?, ?, ?) ON CONFLICT (kind, key) DO NOTHING`,
			string(kind), k, id)
		if err != nil {
			return fmt.Errorf("key %s of %s %q: %w", k, singular(kind), id, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			holder, _ := t.Lookup(ctx, kind, k)
			if holder == id {
				continue // the same key twice in one entity
			}
			return fmt.Errorf("%s of %s %q is held by %q: %w", k, singular(kind), id, holder, store.ErrDuplicate)
		}
	}
	return nil
}

func (t *txn) Lookup(ctx context.Context, kind store.Kind, key string) (string, error) {
	var id string
	err := t.queryRow(ctx, `SELECT id FROM unique_keys WHERE kind = ? AND key = ?`, string(kind), key).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("%s with %s: %w", singular(kind), key, store.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("lookup %s: %w", key, err)
	}
	return id, nil
}

func (t *txn) Acquire(ctx context.Context, pool string, lo, hi, want uint64, owner string) (uint64, error) {
	if lo > hi || hi > 1<<62 {
		return 0, fmt.Errorf("pool %s: invalid range %d-%d", pool, lo, hi)
	}
	if want != 0 {
		if want < lo || want > hi {
			return 0, fmt.Errorf("pool %s: %d is outside %d-%d", pool, want, lo, hi)
		}
		ok, err := t.insertPool(ctx, pool, want, owner)
		if err != nil {
			return 0, err
		}
		if !ok {
			return 0, fmt.Errorf("pool %s: %d: %w", pool, want, store.ErrDuplicate)
		}
		return want, nil
	}
	// Every concurrent allocator computes the same lowest free value, so losing the insert is the
	// common case under contention. The insert waited for the winner to commit; look again (each
	// statement sees newly committed values) instead of failing the whole transaction, which left
	// allocators of a busy pool exhausting Write's retries.
	// Values another transaction is about to insert are skipped (TryReserve) rather than waited for.
	start := lo
	for range lostRaces {
		candidate, err := t.lowestFree(ctx, pool, start, hi)
		if err != nil {
			return 0, err
		}
		if candidate > hi {
			if start > lo {
				start = lo // the skipped values may have been rolled back; look once more from the start
				continue
			}
			return 0, fmt.Errorf("pool %s (%d-%d): %w", pool, lo, hi, store.ErrExhausted)
		}
		if free, err := t.TryReserve(ctx, fmt.Sprintf("pool/%s/%d", pool, candidate)); err != nil {
			return 0, err
		} else if !free {
			start = candidate + 1
			continue
		}
		ok, err := t.insertPool(ctx, pool, candidate, owner)
		if err != nil {
			return 0, err
		}
		if ok {
			return candidate, nil
		}
	}
	return 0, fmt.Errorf("pool %s: values taken concurrently: %w", pool, store.ErrConflict)
}

// lostRaces bounds Acquire's attempts within one transaction. Each lost race means another
// transaction committed a value, so the loop makes progress; the bound only guards against surprises.
const lostRaces = 64

// lowestFree returns the lowest value of [lo, hi] not in the pool, or hi+1.
func (t *txn) lowestFree(ctx context.Context, pool string, lo, hi uint64) (uint64, error) {
	var taken int
	if err := t.queryRow(ctx, `SELECT COUNT(*) FROM pools WHERE pool = ? AND value = ?`, pool, int64(lo)).Scan(&taken); err != nil {
		return 0, fmt.Errorf("pool %s: %w", pool, err)
	}
	if taken == 0 {
		return lo, nil
	}
	var gap sql.NullInt64
	err := t.queryRow(ctx, `SELECT MIN(p.value) + 1 FROM pools p WHERE p.pool = ? AND p.value >= ? AND p.value <= ?
		AND NOT EXISTS (SELECT 1 FROM pools q WHERE q.pool = p.pool AND q.value = p.value + 1)`,
		pool, int64(lo), int64(hi)).Scan(&gap)
	if err != nil {
		return 0, fmt.Errorf("pool %s: %w", pool, err)
	}
	return uint64(gap.Int64), nil
}

func (t *txn) insertPool(ctx context.Context, pool string, v uint64, owner string) (bool, error) {
	res, err := t.exec(ctx, `INSERT INTO pools (pool, value, owner) VALUES (?, ?, ?) ON CONFLICT (pool, value) DO NOTHING`,
		pool, int64(v), owner)
	if err != nil {
		return false, fmt.Errorf("pool %s: %w", pool, err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

func (t *txn) Release(ctx context.Context, pool, owner string) (int, error) {
	res, err := t.exec(ctx, `DELETE FROM pools WHERE pool = ? AND owner = ?`, pool, owner)
	if err != nil {
		return 0, fmt.Errorf("release %s of %s: %w", pool, owner, err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

func (t *txn) Held(ctx context.Context, pool, owner string) ([]uint64, error) {
	rows, err := t.query(ctx, `SELECT value FROM pools WHERE pool = ? AND owner = ? ORDER BY value`, pool, owner)
	if err != nil {
		return nil, fmt.Errorf("held %s of %s: %w", pool, owner, err)
	}
	defer rows.Close()
	var out []uint64
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, uint64(v))
	}
	return out, rows.Err()
}

// FormatPlaceholder is the PostgreSQL placeholder style, for dialects.
func FormatPlaceholder(n int) string { return "$" + strconv.Itoa(n) }
