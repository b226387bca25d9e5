package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/store"
)

type entity[T any] interface {
	*T
	GetMeta() *api.Meta
}

// table implements store.Table for one kind inside one transaction.
type table[T any, P entity[T]] struct {
	t    *txn
	kind store.Kind
}

func (tb table[T, P]) Get(ctx context.Context, id string) (*T, error) {
	var data []byte
	err := tb.t.queryRow(ctx, fmt.Sprintf(`SELECT data FROM %s WHERE id = ?`, tb.kind), id).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%s %q: %w", singular(tb.kind), id, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get %s %q: %w", singular(tb.kind), id, err)
	}
	return decode[T](data)
}

func decode[T any](data []byte) (*T, error) {
	e := new(T)
	if err := json.Unmarshal(data, e); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	return e, nil
}

func where(q store.Query) (string, []any) {
	var conds []string
	var args []any
	add := func(col, v string) {
		if v != "" {
			conds = append(conds, col+" = ?")
			args = append(args, v)
		}
	}
	add("project", q.Project)
	add("partition", q.Partition)
	add("key1", q.Key1)
	add("key2", q.Key2)
	add("key3", q.Key3)
	if q.After != "" {
		conds = append(conds, "id > ?")
		args = append(args, q.After)
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

func (tb table[T, P]) List(ctx context.Context, q store.Query) ([]*T, string, error) {
	w, args := where(q)
	query := fmt.Sprintf(`SELECT data FROM %s%s ORDER BY id`, tb.kind, w)
	if q.Limit > 0 {
		query += fmt.Sprintf(" LIMIT %d", q.Limit+1)
	}
	rows, err := tb.t.query(ctx, query, args...)
	if err != nil {
		return nil, "", fmt.Errorf("list %s: %w", tb.kind, err)
	}
	defer rows.Close()
	var out []*T
	for rows.Next() {
		var data []byte
		if err := rows.Scan(&data); err != nil {
			return nil, "", fmt.Errorf("list %s: %w", tb.kind, err)
		}
		e, err := decode[T](data)
		if err != nil {
			return nil, "", fmt.Errorf("list %s: %w", tb.kind, err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("list %s: %w", tb.kind, err)
	}
	next := ""
	if q.Limit > 0 && len(out) > q.Limit {
		out = out[:q.Limit]
		next = P(out[len(out)-1]).GetMeta().ID
	}
	return out, next, nil
}

func (tb table[T, P]) Rows(ctx context.Context, q store.Query) ([]store.Row, error) {
	w, args := where(q)
	query := fmt.Sprintf(`SELECT id, project, partition, key1, key2, key3 FROM %s%s ORDER BY id`, tb.kind, w)
	if q.Limit > 0 {
		query += fmt.Sprintf(" LIMIT %d", q.Limit)
	}
	if q.Lock && !tb.t.readOnly {
		query += tb.t.s.cfg.Dialect.SkipLocked()
	}
	rows, err := tb.t.query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("rows of %s: %w", tb.kind, err)
	}
	defer rows.Close()
	var out []store.Row
	for rows.Next() {
		var r store.Row
		if err := rows.Scan(&r.ID, &r.Project, &r.Partition, &r.Key1, &r.Key2, &r.Key3); err != nil {
			return nil, fmt.Errorf("rows of %s: %w", tb.kind, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("rows of %s: %w", tb.kind, err)
	}
	return out, nil
}

func (tb table[T, P]) CountBy(ctx context.Context, q store.Query, column string) (map[string]int, error) {
	switch column {
	case "project", "partition", "key1", "key2", "key3":
	default:
		return nil, fmt.Errorf("count %s by %q: not an indexed column", tb.kind, column)
	}
	w, args := where(q)
	rows, err := tb.t.query(ctx, fmt.Sprintf(`SELECT %s, COUNT(*) FROM %s%s GROUP BY %s`, column, tb.kind, w, column), args...)
	if err != nil {
		return nil, fmt.Errorf("count %s by %s: %w", tb.kind, column, err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var k string
		var n int
		if err := rows.Scan(&k, &n); err != nil {
			return nil, fmt.Errorf("count %s by %s: %w", tb.kind, column, err)
		}
		out[k] = n
	}
	return out, rows.Err()
}

func (tb table[T, P]) Count(ctx context.Context, q store.Query) (int, error) {
	w, args := where(q)
	var n int
	if err := tb.t.queryRow(ctx, fmt.Sprintf(`SELECT COUNT(*) FROM %s%s`, tb.kind, w), args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count %s: %w", tb.kind, err)
	}
	return n, nil
}

func (tb table[T, P]) Create(ctx context.Context, e *T) error {
	m := P(e).GetMeta()
	if m.ID == "" {
		return fmt.Errorf("create %s: empty id", singular(tb.kind))
	}
	now := time.Now().UTC()
	m.Created, m.Changed, m.Version = now, now, 1
	idx, keys := store.IndexOf(e)
	data, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode %s: %w", singular(tb.kind), err)
	}
	res, err := tb.t.exec(ctx, fmt.Sprintf(`INSERT INTO %s (id, version, project, partition, key1, key2, key3, data)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`, tb.kind),
		m.ID, m.Version, idx.Project, idx.Partition, idx.Key1, idx.Key2, idx.Key3, data)
	if err != nil {
		return fmt.Errorf("create %s %q: %w", singular(tb.kind), m.ID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%s %q: %w", singular(tb.kind), m.ID, store.ErrDuplicate)
	}
	if err := tb.t.putKeys(ctx, tb.kind, m.ID, keys, false); err != nil {
		return err
	}
	tb.t.Notify(tb.kind, m.ID)
	return nil
}

func (tb table[T, P]) Update(ctx context.Context, e *T) error {
	m := P(e).GetMeta()
	old := m.Version
	m.Version++
	m.Changed = time.Now().UTC()
	idx, keys := store.IndexOf(e)
	data, err := json.Marshal(e)
	if err != nil {
		m.Version = old
		return fmt.Errorf("encode %s: %w", singular(tb.kind), err)
	}
	res, err := tb.t.exec(ctx, fmt.Sprintf(`UPDATE %s SET version = ?, project = ?, partition = ?, key1 = ?,
		key2 = ?, key3 = ?, data = ? WHERE id = ? AND version = ?`, tb.kind),
		m.Version, idx.Project, idx.Partition, idx.Key1, idx.Key2, idx.Key3, data, m.ID, old)
	if err != nil {
		m.Version = old
		return fmt.Errorf("update %s %q: %w", singular(tb.kind), m.ID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		m.Version = old
		if _, err := tb.Get(ctx, m.ID); err != nil {
			return err
		}
		return fmt.Errorf("%s %q was changed concurrently (version %d): %w", singular(tb.kind), m.ID, old, store.ErrConflict)
	}
	if err := tb.t.putKeys(ctx, tb.kind, m.ID, keys, true); err != nil {
		m.Version = old // the transaction fails: the caller keeps the version it read
		return err
	}
	tb.t.Notify(tb.kind, m.ID)
	return nil
}

func (tb table[T, P]) Delete(ctx context.Context, id string) error {
	res, err := tb.t.exec(ctx, fmt.Sprintf(`DELETE FROM %s WHERE id = ?`, tb.kind), id)
	if err != nil {
		return fmt.Errorf("delete %s %q: %w", singular(tb.kind), id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%s %q: %w", singular(tb.kind), id, store.ErrNotFound)
	}
	if _, err := tb.t.exec(ctx, `DELETE FROM unique_keys WHERE kind = ? AND id = ?`, string(tb.kind), id); err != nil {
		return fmt.Errorf("delete keys of %s %q: %w", singular(tb.kind), id, err)
	}
	tb.t.Notify(tb.kind, id)
	return nil
}

func singular(k store.Kind) string {
	s := string(k)
	switch {
	case strings.HasSuffix(s, "ches"):
		return strings.TrimSuffix(s, "es")
	case strings.HasSuffix(s, "s"):
		return strings.TrimSuffix(s, "s")
	}
	return s
}
