package boot

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/bootrpc"
	"github.com/metalforge/metalforge/pkg/bootrpc/bootpb"
)

// bootService is the part of metal-api's boot service the boot-server calls; bootpb.BootClient
// is one.
type bootService interface {
	Dhcp(ctx context.Context, in *bootpb.DhcpRequest, opts ...grpc.CallOption) (*bootpb.DhcpResponse, error)
	Lease(ctx context.Context, in *bootpb.LeaseRequest, opts ...grpc.CallOption) (*bootpb.LeaseResponse, error)
	Boot(ctx context.Context, in *bootpb.BootRequest, opts ...grpc.CallOption) (*bootpb.BootResponse, error)
}

// dial connects lazily to metal-api's boot service with a bearer token.
func dial(ctx context.Context, target, token string) (bootService, io.Closer, error) {
	return bootrpc.Dial(ctx, target, token)
}

// metalAPI adapts the boot service to the backends of the dhcp and ipxe packages.
type metalAPI struct {
	svc       bootService
	partition string
	timeout   time.Duration
}

// Dhcp implements dhcp.Backend; a MAC metal-api does not know is not an error.
func (m metalAPI) Dhcp(ctx context.Context, mac net.HardwareAddr) error {
	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	_, err := m.svc.Dhcp(ctx, &bootpb.DhcpRequest{PartitionId: m.partition, Mac: mac.String()})
	if err != nil && status.Code(err) != codes.NotFound {
		return fmt.Errorf("metal-api dhcp: %w", err)
	}
	return nil
}

// Lease implements dhcp.Backend.
func (m metalAPI) Lease(ctx context.Context, mac net.HardwareAddr, first, last netip.Addr) (netip.Addr, error) {
	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	resp, err := m.svc.Lease(ctx, &bootpb.LeaseRequest{PartitionId: m.partition, Mac: mac.String(),
		First: first.String(), Last: last.String()})
	if err != nil {
		return netip.Addr{}, fmt.Errorf("metal-api lease: %w", err)
	}
	ip, err := netip.ParseAddr(resp.GetIp())
	if err != nil || !ip.Is4() {
		return netip.Addr{}, fmt.Errorf("metal-api lease: bad address %q", resp.GetIp())
	}
	return ip, nil
}

// Boot implements ipxe.Backend.
func (m metalAPI) Boot(ctx context.Context, mac net.HardwareAddr) (*api.BootDecision, error) {
	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	r, err := m.svc.Boot(ctx, &bootpb.BootRequest{PartitionId: m.partition, Mac: mac.String()})
	if err != nil {
		return nil, fmt.Errorf("metal-api boot: %w", err)
	}
	return &api.BootDecision{MachineID: r.GetMachineId(), Action: r.GetAction(), Kernel: r.GetKernel(),
		Initrd: r.GetInitrd(), Cmdline: r.GetCmdline()}, nil
}
