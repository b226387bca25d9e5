// Package apierror is the one place where errors become HTTP statuses: domain code wraps the
// sentinels below (or the store's), and Status/Body turn any error into the status and the
// api.Error body the REST layer sends.
package apierror

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/auth"
	"github.com/metalforge/metalforge/pkg/store"
)

// Sentinels of the domain layer.
var (
	// ErrInvalid is bad input: 400.
	ErrInvalid = errors.New("invalid")
	// ErrForbidden is an authenticated caller without permission: 403.
	ErrForbidden = errors.New("forbidden")
	// ErrInUse is a delete or change refused because something depends on the object: 409.
	ErrInUse = errors.New("in use")
	// ErrStale is an update based on an old version of the object: 409. Unlike store.ErrConflict it
	// is not retried, because a retry would read the same stale version from the request.
	ErrStale = errors.New("stale version")
	// ErrUnavailable is a request that cannot be served now, e.g. no waiting machine: 409.
	ErrUnavailable = errors.New("unavailable")
)

// Invalid returns an ErrInvalid error with a message.
func Invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Status maps an error to its HTTP status.
func Status(err error) int {
	switch {
	case err == nil:
		return http.StatusOK
	case errors.Is(err, ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, auth.ErrUnauthenticated):
		return http.StatusUnauthorized
	case errors.Is(err, ErrForbidden):
		return http.StatusForbidden
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, store.ErrDuplicate), errors.Is(err, store.ErrConflict), errors.Is(err, ErrInUse), errors.Is(err, ErrStale),
		errors.Is(err, store.ErrExhausted), errors.Is(err, ErrUnavailable):
		return http.StatusConflict
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// Body is the JSON body of an error response. Internal errors don't leak their text.
func Body(err error) api.Error {
	code := Status(err)
	msg := err.Error()
	if code == http.StatusInternalServerError {
		msg = "internal error"
	}
	return api.Error{Code: code, Message: msg}
}
