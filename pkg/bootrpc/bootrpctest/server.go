package bootrpctest

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"

	"github.com/metalforge/metalforge/pkg/auth"
	"github.com/metalforge/metalforge/pkg/bootrpc"
)

// Tokens maps bearer secrets to principals; it implements bootrpc.Authenticator.
type Tokens map[string]auth.Principal

// Authenticate implements bootrpc.Authenticator.
func (t Tokens) Authenticate(_ context.Context, header string) (auth.Principal, error) {
	secret := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(header), "Bearer "))
	p, ok := t[secret]
	if !ok {
		return auth.Principal{}, fmt.Errorf("token: %w", auth.ErrUnauthenticated)
	}
	return p, nil
}

// Serve runs the boot service of cfg on a loopback port until the test ends and returns its
// address.
func Serve(t testing.TB, cfg bootrpc.Config) string {
	t.Helper()
	srv := bootrpc.New(cfg)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	gs := grpc.NewServer(srv.ServerOptions()...)
	srv.Register(gs)
	done := make(chan error, 1)
	go func() { done <- gs.Serve(lis) }()
	t.Cleanup(func() {
		gs.Stop()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return lis.Addr().String()
}
