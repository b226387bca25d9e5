package bootrpc

import (
	"context"
	"errors"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/auth"
	"github.com/metalforge/metalforge/pkg/bootrpc/bootpb"
)

// methodPrefix selects the calls the interceptors handle; other services on the same grpc.Server
// pass through untouched.
var methodPrefix = "/" + bootpb.Boot_ServiceDesc.ServiceName + "/"

// UnaryInterceptor authenticates unary calls of the boot service and puts the principal in the
// context (auth.FromContext).
func (s *Server) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if !strings.HasPrefix(info.FullMethod, methodPrefix) {
			return handler(ctx, req)
		}
		ctx, err := s.authenticate(ctx)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamInterceptor authenticates streaming calls of the boot service and puts the principal in
// the stream's context.
func (s *Server) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if !strings.HasPrefix(info.FullMethod, methodPrefix) {
			return handler(srv, ss)
		}
		ctx, err := s.authenticate(ss.Context())
		if err != nil {
			return err
		}
		return handler(srv, &principalStream{ServerStream: ss, ctx: ctx})
	}
}

type principalStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (p *principalStream) Context() context.Context { return p.ctx }

func (s *Server) authenticate(ctx context.Context) (context.Context, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) == 0 || strings.TrimSpace(vals[0]) == "" {
		return nil, status.Error(codes.Unauthenticated, "missing authorization metadata")
	}
	p, err := s.cfg.Auth.Authenticate(ctx, vals[0])
	switch {
	case errors.Is(err, auth.ErrUnauthenticated):
		return nil, status.Error(codes.Unauthenticated, auth.ErrUnauthenticated.Error())
	case err != nil:
		return nil, s.status(ctx, err)
	}
	return auth.WithPrincipal(ctx, p), nil
}

// caller returns the principal of ctx if its role may use the boot service. It fails closed when
// the interceptors were not installed.
func caller(ctx context.Context) (auth.Principal, error) {
	p, ok := auth.FromContext(ctx)
	if !ok {
		return auth.Principal{}, status.Error(codes.Unauthenticated, "unauthenticated")
	}
	switch p.Role {
	case api.RoleAdmin, api.RoleService, auth.RoleBoot:
		return p, nil
	}
	return auth.Principal{}, status.Errorf(codes.PermissionDenied, "role %q may not use the boot service", p.Role)
}

// scoped reports whether p may only act on its own partition.
func scoped(p auth.Principal) bool {
	return p.Role != api.RoleAdmin && p.PartitionID != ""
}

// partition returns the partition a call acts on: the requested one, or the caller's when none was
// requested. A scoped caller may only name its own.
func partition(p auth.Principal, requested string) (string, error) {
	if requested == "" {
		requested = p.PartitionID
	}
	if requested == "" {
		return "", status.Error(codes.InvalidArgument, "partition_id is required")
	}
	if scoped(p) && requested != p.PartitionID {
		return "", status.Errorf(codes.PermissionDenied, "token may not act on partition %q", requested)
	}
	return requested, nil
}

// machine checks that p may act on the machine; for a scoped caller it reads the machine.
func (s *Server) machine(ctx context.Context, p auth.Principal, machineID string) error {
	if machineID == "" {
		return status.Error(codes.InvalidArgument, "machine_id is required")
	}
	if !scoped(p) {
		return nil
	}
	m, err := s.cfg.Machines.Get(ctx, machineID)
	if err != nil {
		return s.status(ctx, err)
	}
	if m.PartitionID != p.PartitionID {
		return status.Errorf(codes.PermissionDenied, "token may not act on machine %q", machineID)
	}
	return nil
}
