package bootrpc

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/metalforge/metalforge/pkg/bootrpc/bootpb"
)

// Dial returns a boot service client for target that sends token as a bearer token on every call,
// and the connection to close when done. The transport is insecure unless opts carry transport
// credentials (grpc.WithTransportCredentials with TLS): later options win.
//
// The connection is made lazily by the first call and re-made after failures, so Dial does not
// block; ctx is only checked for being done already.
func Dial(ctx context.Context, target, token string, opts ...grpc.DialOption) (bootpb.BootClient, io.Closer, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("dial boot service: %w", err)
	}
	if token == "" {
		return nil, nil, errors.New("dial boot service: token is required")
	}
	all := append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(bearer(token)),
	}, opts...)
	conn, err := grpc.NewClient(target, all...)
	if err != nil {
		return nil, nil, fmt.Errorf("dial boot service %s: %w", target, err)
	}
	return bootpb.NewBootClient(conn), conn, nil
}

// bearer is a token sent as "authorization: Bearer <token>" metadata.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

// RequireTransportSecurity is false so that partitions without TLS can still connect; pass TLS
// transport credentials to Dial to protect the token on the wire.
func (bearer) RequireTransportSecurity() bool { return false }
