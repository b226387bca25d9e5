// Package auth authenticates bearer tokens against the store and decides what a caller may do.
// Secrets are random, shown once, and stored as SHA-256 hashes. Roles: admin; per project owner,
// editor and viewer; service (partition components) and boot (the hammer's pre-registration calls,
// scoped to one partition).
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/store"
)

// Internal roles: RoleBoot is the role of a partition boot secret; RoleMachine of the token an
// installed OS uses to phone home (issued by metal-api, one per machine).
const (
	RoleBoot    = "boot"
	RoleMachine = "machine"
)

// ErrUnauthenticated means no or an unknown/expired token.
var ErrUnauthenticated = errors.New("missing or invalid token")

// Principal is an authenticated caller.
type Principal struct {
	TokenID     string
	Name        string
	Role        string
	ProjectID   string
	PartitionID string
	MachineID   string
}

// IsAdmin reports the admin role.
func (p Principal) IsAdmin() bool { return p.Role == api.RoleAdmin }

// IsService reports a partition component (service or boot token).
func (p Principal) IsService() bool { return p.Role == api.RoleService || p.Role == RoleBoot }

// CanRead reports whether p may read objects of project ("" is a global object like a partition).
func (p Principal) CanRead(project string) bool {
	switch p.Role {
	case api.RoleAdmin, api.RoleService:
		return true
	case api.RoleOwner, api.RoleEditor, api.RoleViewer:
		return project == "" || project == p.ProjectID
	}
	return false
}

// CanWrite reports whether p may create or change objects of project.
func (p Principal) CanWrite(project string) bool {
	switch p.Role {
	case api.RoleAdmin:
		return true
	case api.RoleOwner, api.RoleEditor:
		return project != "" && project == p.ProjectID
	}
	return false
}

// CanOwn reports whether p may change the project itself and its tokens.
func (p Principal) CanOwn(project string) bool {
	return p.Role == api.RoleAdmin || (p.Role == api.RoleOwner && project != "" && project == p.ProjectID)
}

// ValidRole reports a known role.
func ValidRole(r string) bool {
	switch r {
	case api.RoleAdmin, api.RoleOwner, api.RoleEditor, api.RoleViewer, api.RoleService, RoleBoot:
		return true
	}
	return false
}

// NewSecret returns a random token secret.
func NewSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return "mf_" + base64.RawURLEncoding.EncodeToString(b)
}

// Hash is what the store keeps of a secret.
func Hash(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// Issue creates a token in tx and returns its secret; tok.ID is generated when empty.
func Issue(ctx context.Context, tx store.Tx, tok api.Token) (string, *api.Token, error) {
	if !ValidRole(tok.Role) && tok.Role != RoleMachine {
		return "", nil, fmt.Errorf("unknown role %q", tok.Role)
	}
	if tok.ID == "" {
		b := make([]byte, 8)
		_, _ = rand.Read(b)
		tok.ID = "tok-" + hex.EncodeToString(b)
	}
	secret := NewSecret()
	tok.Secret = Hash(secret)
	if err := tx.Tokens().Create(ctx, &tok); err != nil {
		return "", nil, fmt.Errorf("issue token: %w", err)
	}
	tok.Secret = ""
	return secret, &tok, nil
}

// Authenticator resolves secrets to principals, caching positive answers for a short time.
type Authenticator struct {
	store store.Store
	ttl   time.Duration
	now   func() time.Time

	mu    sync.Mutex
	cache map[string]cached
}

type cached struct {
	p       Principal
	expires time.Time
}

// NewAuthenticator returns an authenticator; ttl bounds how long a revoked token still works.
func NewAuthenticator(s store.Store, ttl time.Duration) *Authenticator {
	return &Authenticator{store: s, ttl: ttl, now: time.Now, cache: map[string]cached{}}
}

// Authenticate resolves an Authorization header value ("Bearer <secret>") or a bare secret.
func (a *Authenticator) Authenticate(ctx context.Context, header string) (Principal, error) {
	secret := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(header), "Bearer "))
	if secret == "" {
		return Principal{}, ErrUnauthenticated
	}
	h := Hash(secret)
	now := a.now()
	a.mu.Lock()
	c, ok := a.cache[h]
	a.mu.Unlock()
	if ok && now.Before(c.expires) {
		return c.p, nil
	}
	var tok *api.Token
	err := a.store.Read(ctx, func(tx store.Tx) error {
		id, err := tx.Lookup(ctx, store.KindToken, "hash:"+h)
		if err != nil {
			return err
		}
		tok, err = tx.Tokens().Get(ctx, id)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return Principal{}, ErrUnauthenticated
	}
	if err != nil {
		return Principal{}, fmt.Errorf("authenticate: %w", err)
	}
	if tok.Expires != nil && now.After(*tok.Expires) {
		return Principal{}, fmt.Errorf("token %s expired: %w", tok.ID, ErrUnauthenticated)
	}
	p := Principal{TokenID: tok.ID, Name: tok.Name, Role: tok.Role, ProjectID: tok.ProjectID, PartitionID: tok.PartitionID,
		MachineID: tok.MachineID}
	a.mu.Lock()
	if len(a.cache) > 10000 {
		clear(a.cache)
	}
	a.cache[h] = cached{p: p, expires: now.Add(a.ttl)}
	a.mu.Unlock()
	return p, nil
}

// Forget drops cached answers, e.g. after a token was deleted on this replica.
func (a *Authenticator) Forget() {
	a.mu.Lock()
	clear(a.cache)
	a.mu.Unlock()
}

type principalKey struct{}

// WithPrincipal stores p in ctx.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal of ctx.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}
