package bootrpc

import (
	"context"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metalforge/metalforge/pkg/apierror"
	"github.com/metalforge/metalforge/pkg/store"
)

// status maps an error of the Machines implementation or the authenticator to a gRPC status.
// Errors it does not know are logged and hidden behind codes.Internal.
func (s *Server) status(ctx context.Context, err error) error {
	var code codes.Code
	switch {
	case errors.Is(err, store.ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, store.ErrConflict):
		code = codes.Aborted
	case errors.Is(err, store.ErrDuplicate):
		code = codes.AlreadyExists
	case errors.Is(err, store.ErrExhausted):
		code = codes.ResourceExhausted
	case errors.Is(err, apierror.ErrInvalid):
		code = codes.InvalidArgument
	case errors.Is(err, apierror.ErrForbidden):
		code = codes.PermissionDenied
	case errors.Is(err, apierror.ErrUnavailable), errors.Is(err, apierror.ErrInUse), errors.Is(err, apierror.ErrStale):
		code = codes.FailedPrecondition
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	default:
		method, _ := grpc.Method(ctx)
		s.cfg.Log.ErrorContext(ctx, "boot service call failed", "method", method, "error", err)
		return status.Error(codes.Internal, "internal error")
	}
	return status.Error(code, err.Error())
}
