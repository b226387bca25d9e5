// Package bootrpc is metal-api's gRPC boot service (bootpb.Boot): the calls the partition
// components make while a machine boots, registers, waits for an allocation, installs and is
// wiped. Partition components always dial out to metal-api; Dial is their client helper.
//
// The server authenticates the "authorization: Bearer <token>" metadata in its interceptors and
// lets admin, service and boot tokens in; a non-admin token scoped to a partition may only act on
// machines and MACs of that partition. The domain work is done by a Machines implementation that
// metal-api passes in.
package bootrpc

import (
	"context"
	"log/slog"
	"net/netip"
	"time"

	"google.golang.org/grpc"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/apierror"
	"github.com/metalforge/metalforge/pkg/auth"
	"github.com/metalforge/metalforge/pkg/bootrpc/bootpb"
)

// DefaultKeepaliveInterval is how often Wait sends a keepalive message unless Config says otherwise.
const DefaultKeepaliveInterval = 10 * time.Second

// ErrInvalid marks an error of a Machines implementation caused by bad input (an unknown event
// name, an inconsistent inventory); wrap it and the caller gets codes.InvalidArgument.
var ErrInvalid = apierror.ErrInvalid

// Machines is the machine service the boot service needs. Errors wrapping store.ErrNotFound,
// store.ErrConflict, store.ErrDuplicate, store.ErrExhausted or ErrInvalid reach the caller with the
// matching gRPC code; any other error is logged and returned as codes.Internal.
//
// MACs are passed normalized (lower-case, colon-separated). The server has already checked that the
// caller may act on the partition or machine.
type Machines interface {
	// Dhcp records a "PXE Booting" event for the machine owning mac and returns its ID.
	Dhcp(ctx context.Context, partitionID, mac string) (machineID string, err error)
	// Lease returns the address of mac in [first, last], the same one on every call.
	Lease(ctx context.Context, partitionID, mac string, first, last netip.Addr) (netip.Addr, error)
	// BootDecision says what the machine owning mac should boot; an unknown MAC boots the hammer.
	BootDecision(ctx context.Context, partitionID, mac string) (*api.BootDecision, error)
	// Register creates or updates the machine from the hammer's inventory and returns it with its
	// size. m comes from a partition component: fields it must not set (allocation, state, ...) are
	// the implementation's to ignore.
	Register(ctx context.Context, m *api.Machine) (*api.Machine, error)
	// Event adds a provisioning event; an unknown event name is an error wrapping ErrInvalid.
	Event(ctx context.Context, machineID string, ev api.EventRequest) error
	// Wait marks the machine waiting and blocks until it is allocated or ctx ends. It returns at
	// once for a machine that is already allocated, so a hammer whose stream broke can wait again.
	Wait(ctx context.Context, machineID string) (*api.InstallSpec, error)
	// Report records the result of an install.
	Report(ctx context.Context, machineID string, r api.InstallReport) error
	// ReportWipe records how the disks of a freed machine were wiped.
	ReportWipe(ctx context.Context, machineID string, w api.WipeRecord) error
	// AbortReinstall gives up a reinstall and returns the boot info of the OS to boot (nil if none).
	AbortReinstall(ctx context.Context, machineID string, primaryDiskWiped bool) (*api.BootInfo, error)
	// Get returns a machine.
	Get(ctx context.Context, machineID string) (*api.Machine, error)
}

// Authenticator resolves an authorization header value to a principal; *auth.Authenticator is one.
// An unknown or expired token is an error wrapping auth.ErrUnauthenticated.
type Authenticator interface {
	Authenticate(ctx context.Context, header string) (auth.Principal, error)
}

// Config configures a Server. Machines and Auth are required.
type Config struct {
	Machines Machines
	Auth     Authenticator
	// KeepaliveInterval is how often Wait sends a keepalive message; DefaultKeepaliveInterval if 0.
	KeepaliveInterval time.Duration
	// Log receives internal errors; discarded if nil.
	Log *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.KeepaliveInterval <= 0 {
		c.KeepaliveInterval = DefaultKeepaliveInterval
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// Server is the boot service. Register it on a grpc.Server created with ServerOptions (or with
// UnaryInterceptor and StreamInterceptor chained in): without them every call is Unauthenticated.
type Server struct {
	cfg Config
}

// New returns a server; it panics when cfg.Machines or cfg.Auth is nil, a wiring bug.
func New(cfg Config) *Server {
	if cfg.Machines == nil || cfg.Auth == nil {
		panic("bootrpc: Config.Machines and Config.Auth are required")
	}
	return &Server{cfg: cfg.withDefaults()}
}

// Register registers the boot service on r.
func (s *Server) Register(r grpc.ServiceRegistrar) {
	bootpb.RegisterBootServer(r, &service{Server: s})
}

// ServerOptions returns the interceptors of the boot service as server options.
func (s *Server) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(s.UnaryInterceptor()),
		grpc.ChainStreamInterceptor(s.StreamInterceptor()),
	}
}
