package bootrpc_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/auth"
	"github.com/metalforge/metalforge/pkg/bootrpc"
	"github.com/metalforge/metalforge/pkg/bootrpc/bootpb"
	"github.com/metalforge/metalforge/pkg/bootrpc/bootrpctest"
)

// rawClient sends header verbatim as the authorization metadata (none if empty), bypassing Dial.
func rawClient(t *testing.T, target, header string) bootpb.BootClient {
	t.Helper()
	conn, err := grpc.NewClient(target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return invoker(withHeader(ctx, header), method, req, reply, cc, opts...)
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			return streamer(withHeader(ctx, header), desc, cc, method, opts...)
		}),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return bootpb.NewBootClient(conn)
}

func withHeader(ctx context.Context, header string) context.Context {
	if header == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", header)
}

func TestAuth(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name   string
		header string
		code   codes.Code
	}{
		{"no token", "", codes.Unauthenticated},
		{"blank token", "Bearer ", codes.Unauthenticated},
		{"unknown token", "Bearer nope", codes.Unauthenticated},
		{"project viewer", "Bearer viewer", codes.PermissionDenied},
		{"project owner", "Bearer owner", codes.PermissionDenied},
		{"boot token of other partition", "Bearer boot-b", codes.PermissionDenied},
		{"service token of other partition", "Bearer svc-b", codes.PermissionDenied},
		{"boot token of the partition", "Bearer boot-a", codes.OK},
		{"unscoped service token", "Bearer service", codes.OK},
		{"admin", "Bearer admin", codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := rawClient(t, e.target, tt.header)
			before := len(e.machines.Events("m-a"))
			_, err := c.Event(bounded(t), &bootpb.EventRequest{MachineId: "m-a", Event: api.EventAlive})
			wantCode(t, err, tt.code)
			want := before
			if tt.code == codes.OK {
				want++
			}
			if got := len(e.machines.Events("m-a")); got != want {
				t.Errorf("%d events, want %d", got, want)
			}
			_, err = c.Dhcp(bounded(t), &bootpb.DhcpRequest{PartitionId: "a", Mac: macA})
			wantCode(t, err, tt.code)
		})
	}
}

func TestDialRequiresToken(t *testing.T) {
	if _, _, err := bootrpc.Dial(t.Context(), "127.0.0.1:1", ""); err == nil {
		t.Fatal("Dial without token succeeded")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, _, err := bootrpc.Dial(ctx, "127.0.0.1:1", "x"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Dial with done context: %v, want context.Canceled", err)
	}
}

// failingAuth fails every authentication with err.
type failingAuth struct{ err error }

func (f failingAuth) Authenticate(context.Context, string) (auth.Principal, error) {
	return auth.Principal{}, f.err
}

func TestAuthenticatorFailure(t *testing.T) {
	tests := []struct {
		err  error
		code codes.Code
	}{
		{fmt.Errorf("token expired: %w", auth.ErrUnauthenticated), codes.Unauthenticated},
		{errors.New("store down"), codes.Internal},
	}
	for _, tt := range tests {
		t.Run(tt.code.String(), func(t *testing.T) {
			e := newEnv(t, func(c *bootrpc.Config) { c.Auth = failingAuth{tt.err} })
			_, err := e.client(t, "admin").Event(bounded(t), &bootpb.EventRequest{MachineId: "m-a", Event: api.EventAlive})
			wantCode(t, err, tt.code)
		})
	}
}

// serveRaw runs the boot service and a health service on one grpc.Server built with opts.
func serveRaw(t *testing.T, srv *bootrpc.Server, opts ...grpc.ServerOption) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(opts...)
	srv.Register(gs)
	healthpb.RegisterHealthServer(gs, health.NewServer())
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return lis.Addr().String()
}

func TestInterceptorsOnlyGuardBootService(t *testing.T) {
	srv := bootrpc.New(bootrpc.Config{Machines: bootrpctest.NewMachines(), Auth: tokens})
	target := serveRaw(t, srv, srv.ServerOptions()...)
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(bounded(t), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatalf("health check without token: %v", err)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health status %v", resp.GetStatus())
	}
	_, err = bootpb.NewBootClient(conn).Dhcp(bounded(t), &bootpb.DhcpRequest{PartitionId: "a", Mac: macA})
	wantCode(t, err, codes.Unauthenticated)
}

func TestWithoutInterceptorsFailsClosed(t *testing.T) {
	m := bootrpctest.NewMachines()
	m.Put(machine("m-a", "a", macA))
	target := serveRaw(t, bootrpc.New(bootrpc.Config{Machines: m, Auth: tokens}))
	c, closer, err := bootrpc.Dial(t.Context(), target, "admin")
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	_, err = c.Event(bounded(t), &bootpb.EventRequest{MachineId: "m-a", Event: api.EventAlive})
	wantCode(t, err, codes.Unauthenticated)
	stream, err := c.Wait(bounded(t), &bootpb.WaitRequest{MachineId: "m-a"})
	if err == nil {
		_, err = stream.Recv()
	}
	wantCode(t, err, codes.Unauthenticated)
	if got := m.Events("m-a"); len(got) != 0 {
		t.Errorf("events recorded without authentication: %v", got)
	}
}
