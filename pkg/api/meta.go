package api

import "time"

// Meta is embedded in every entity.
type Meta struct {
	ID          string    `json:"id"`
	Name        string    `json:"name,omitempty"`
	Description string    `json:"description,omitempty"`
	Created     time.Time `json:"created"`
	Changed     time.Time `json:"changed"`
	// Version is the resource version for optimistic concurrency: an update must carry the version it
	// read, and fails with 409 Conflict when the entity changed in between.
	Version int64 `json:"version"`
}

// GetMeta gives generic code access to the common fields.
func (m *Meta) GetMeta() *Meta { return m }

// Error is the body of every non-2xx response.
type Error struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// Page is one page of a list. Next is the cursor for the following page, empty on the last one.
type Page[T any] struct {
	Items []T    `json:"items"`
	Next  string `json:"next,omitempty"`
}

// Version describes the running metal-api.
type Version struct {
	Version string `json:"version"`
	Store   string `json:"store"`
}
