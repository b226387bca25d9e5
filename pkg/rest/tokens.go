package rest

import (
	"fmt"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/apierror"
	"github.com/metalforge/metalforge/pkg/auth"
	"github.com/metalforge/metalforge/pkg/store"
)

func (s *Server) tokenRoutes() []route {
	return []route{
		op("GET", "/v1/token", "listTokens", "List tokens (admin: all, project owner: the project's)", user, s.listTokens).withQuery("limit", "cursor"),
		op("POST", "/v1/token", "createToken", "Create a token; the secret is returned once", user, s.createToken).created(),
		op("DELETE", "/v1/token/{id}", "deleteToken", "Revoke a token", user, s.deleteToken),
	}
}

func tokenVisible(c *call, t *api.Token) bool { return c.p.CanOwn(t.ProjectID) }

func (s *Server) listTokens(c *call, _ *none) (*api.Page[*api.Token], error) {
	q := store.Query{}
	if !c.p.IsAdmin() {
		q.Project = c.p.ProjectID
	}
	p, err := listPage(c, store.Tx.Tokens, q, func(t *api.Token) bool { return tokenVisible(c, t) })
	if err != nil {
		return nil, err
	}
	for _, t := range p.Items {
		t.Secret = ""
	}
	return p, nil
}

func (s *Server) createToken(c *call, t *api.Token) (*api.Token, error) {
	if !auth.ValidRole(t.Role) {
		return nil, apierror.Invalid("role %q is not admin, owner, editor, viewer, service or boot", t.Role)
	}
	if t.Secret != "" || t.Version != 0 {
		return nil, apierror.Invalid("secret and version are set by the server")
	}
	project := t.Role == api.RoleOwner || t.Role == api.RoleEditor || t.Role == api.RoleViewer
	switch {
	case project && t.ProjectID == "":
		return nil, apierror.Invalid("a %s token needs a project", t.Role)
	case !project && t.ProjectID != "":
		return nil, apierror.Invalid("a %s token has no project", t.Role)
	case t.Role == auth.RoleBoot && t.PartitionID == "":
		return nil, apierror.Invalid("a boot token needs a partition")
	}
	if !c.p.IsAdmin() && !(project && c.p.CanOwn(t.ProjectID)) {
		return nil, fmt.Errorf("create %s token: %w", t.Role, apierror.ErrForbidden)
	}
	if t.ID != "" {
		if err := validID(t.ID); err != nil {
			return nil, err
		}
	}
	var out *api.Token
	err := s.cfg.Store.Write(c.ctx, func(tx store.Tx) error {
		if t.ProjectID != "" {
			if err := exists(c.ctx, tx.Projects(), "project", t.ProjectID); err != nil {
				return err
			}
		}
		if t.PartitionID != "" {
			if err := exists(c.ctx, tx.Partitions(), "partition", t.PartitionID); err != nil {
				return err
			}
		}
		secret, tok, err := auth.Issue(c.ctx, tx, *t)
		if err != nil {
			return err
		}
		tok.Secret = secret
		out = tok
		return nil
	})
	return out, err
}

func (s *Server) deleteToken(c *call, _ *none) (*api.Token, error) {
	var out *api.Token
	err := s.cfg.Store.Write(c.ctx, func(tx store.Tx) error {
		t, err := tx.Tokens().Get(c.ctx, c.path("id"))
		if err != nil {
			return err
		}
		if !tokenVisible(c, t) {
			return notFound("token", t.ID)
		}
		t.Secret = ""
		out = t
		return tx.Tokens().Delete(c.ctx, t.ID)
	})
	if err == nil {
		s.cfg.Auth.Forget()
	}
	return out, err
}
