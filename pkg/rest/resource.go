package rest

import (
	"context"
	"fmt"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/apierror"
	"github.com/metalforge/metalforge/pkg/id"
	"github.com/metalforge/metalforge/pkg/store"
)

// defaultLimit and maxLimit bound list pages.
const (
	defaultLimit = 100
	maxLimit     = 1000
)

type entity[T any] interface {
	*T
	GetMeta() *api.Meta
}

// resource describes a plain CRUD aggregate.
type resource[T any, P entity[T]] struct {
	name  string // path segment
	title string // operation suffix, e.g. "FilesystemLayout"
	table func(store.Tx) store.Table[T]
	// read and write are the access levels; project scopes objects for non-admins ("" = global).
	read, write access
	project     func(*T) string
	// validate checks a new or changed entity inside the transaction (old is nil on create).
	validate func(ctx context.Context, tx store.Tx, e, old *T) error
	// inUse refuses a delete while something depends on the entity.
	inUse func(ctx context.Context, tx store.Tx, e *T) error
	// generateID fills an empty ID on create.
	generateID bool
	// ownerOnly limits writes to the project's owners (for the project itself).
	ownerOnly bool
}

func (rs resource[T, P]) mayWrite(c *call, e *T) bool {
	if rs.ownerOnly {
		return c.p.CanOwn(rs.projectOf(e))
	}
	return c.p.CanWrite(rs.projectOf(e))
}

func (rs resource[T, P]) projectOf(e *T) string {
	if rs.project == nil {
		return ""
	}
	return rs.project(e)
}

// routes are list, get, create, update, delete.
func (rs resource[T, P]) routes() []route {
	base := "/v1/" + rs.name
	t := rs.title
	return []route{
		op("GET", base, "list"+t+"s", "List "+rs.name+"s visible to the caller", rs.read, rs.list).withQuery("limit", "cursor"),
		op("GET", base+"/{id}", "get"+t, "Get a "+rs.name, rs.read, rs.get),
		op("POST", base, "create"+t, "Create a "+rs.name, rs.write, rs.create).created(),
		op("PUT", base+"/{id}", "update"+t, "Update a "+rs.name+" (the body carries the version it read)", rs.write, rs.update),
		op("DELETE", base+"/{id}", "delete"+t, "Delete a "+rs.name, rs.write, rs.del),
	}
}

func (rs resource[T, P]) visible(c *call, e *T) bool { return c.p.CanRead(rs.projectOf(e)) }

func (rs resource[T, P]) list(c *call, _ *none) (*api.Page[*T], error) {
	q := store.Query{}
	if rs.project != nil && !c.p.IsAdmin() && c.p.Role != api.RoleService {
		q.Project = c.p.ProjectID
	}
	return listPage(c, rs.table, q, func(e *T) bool { return rs.visible(c, e) })
}

// listPage reads one page of a table, skipping what the caller may not see.
func listPage[T any](c *call, table func(store.Tx) store.Table[T], q store.Query, visible func(*T) bool) (*api.Page[*T], error) {
	limit, err := c.intQuery("limit", defaultLimit)
	if err != nil {
		return nil, err
	}
	if limit == 0 || limit > maxLimit {
		limit = maxLimit
	}
	q.After = c.r.URL.Query().Get("cursor")
	page := &api.Page[*T]{Items: []*T{}}
	err = c.s.cfg.Store.Read(c.ctx, func(tx store.Tx) error {
		for {
			q.Limit = limit
			es, next, err := table(tx).List(c.ctx, q)
			if err != nil {
				return err
			}
			for i, e := range es {
				if !visible(e) {
					continue
				}
				page.Items = append(page.Items, e)
				if len(page.Items) == limit {
					if i < len(es)-1 || next != "" {
						page.Next = any(e).(interface{ GetMeta() *api.Meta }).GetMeta().ID
					}
					return nil
				}
			}
			if next == "" {
				return nil
			}
			q.After = next
		}
	})
	return page, err
}

func (rs resource[T, P]) get(c *call, _ *none) (*T, error) {
	var e *T
	err := c.s.cfg.Store.Read(c.ctx, func(tx store.Tx) error {
		var err error
		e, err = rs.table(tx).Get(c.ctx, c.path("id"))
		if err == nil && !rs.visible(c, e) {
			return notFound(rs.name, c.path("id"))
		}
		return err
	})
	return e, err
}

// notFound hides objects of other projects behind the same answer as missing ones.
func notFound(kind, id string) error {
	return fmt.Errorf("%s %q: %w", kind, id, store.ErrNotFound)
}

func (rs resource[T, P]) create(c *call, e *T) (*T, error) {
	m := P(e).GetMeta()
	if m.ID == "" && rs.generateID {
		m.ID = id.New()
	}
	if err := validID(m.ID); err != nil {
		return nil, err
	}
	if !rs.mayWrite(c, e) {
		return nil, fmt.Errorf("create %s: %w", rs.name, apierror.ErrForbidden)
	}
	err := c.s.cfg.Store.Write(c.ctx, func(tx store.Tx) error {
		if rs.validate != nil {
			if err := rs.validate(c.ctx, tx, e, nil); err != nil {
				return err
			}
		}
		return rs.table(tx).Create(c.ctx, e)
	})
	return e, err
}

func (rs resource[T, P]) update(c *call, e *T) (*T, error) {
	m := P(e).GetMeta()
	if m.ID == "" {
		m.ID = c.path("id")
	}
	if m.ID != c.path("id") {
		return nil, apierror.Invalid("id %q in the body does not match %q in the path", m.ID, c.path("id"))
	}
	err := c.s.cfg.Store.Write(c.ctx, func(tx store.Tx) error {
		old, err := rs.table(tx).Get(c.ctx, m.ID)
		if err != nil {
			return err
		}
		if !rs.visible(c, old) {
			return notFound(rs.name, m.ID)
		}
		if !rs.mayWrite(c, old) {
			return fmt.Errorf("update %s %s: %w", rs.name, m.ID, apierror.ErrForbidden)
		}
		om := P(old).GetMeta()
		if m.Version != om.Version {
			return fmt.Errorf("%s %s has version %d, the update was based on %d: %w", rs.name, m.ID, om.Version, m.Version, apierror.ErrStale)
		}
		m.Created = om.Created
		if rs.validate != nil {
			if err := rs.validate(c.ctx, tx, e, old); err != nil {
				return err
			}
		}
		return rs.table(tx).Update(c.ctx, e)
	})
	return e, err
}

func (rs resource[T, P]) del(c *call, _ *none) (*T, error) {
	var e *T
	err := c.s.cfg.Store.Write(c.ctx, func(tx store.Tx) error {
		var err error
		if e, err = rs.table(tx).Get(c.ctx, c.path("id")); err != nil {
			return err
		}
		if !rs.visible(c, e) {
			return notFound(rs.name, c.path("id"))
		}
		if !rs.mayWrite(c, e) {
			return fmt.Errorf("delete %s: %w", rs.name, apierror.ErrForbidden)
		}
		if rs.inUse != nil {
			if err := rs.inUse(c.ctx, tx, e); err != nil {
				return err
			}
		}
		return rs.table(tx).Delete(c.ctx, P(e).GetMeta().ID)
	})
	return e, err
}
