// Package autoscaler is metalforge's cloud provider for cluster-autoscaler: it serves the
// CloudProvider gRPC service of the externalgrpc protocol (package externalgrpc), so an unmodified
// cluster-autoscaler started with --cloud-provider=externalgrpc scales metalforge node groups.
//
// A node group is (cluster, partition, size) with min and max, allocated to one project. Its
// members are the project's machines tagged with the cluster tag metal-ccm uses
// (cluster.metalforge.io/id=<cluster>) and the node group tag
// (autoscaler.metalforge.io/node-group=<id>); instances are named by metal-ccm's provider ID
// metal://<partition>/<machine-id>. IncreaseSize allocates machines from the waiting ones of the
// partition and size, and refuses (allocating nothing) when fewer are waiting than asked or max
// would be exceeded; DeleteNodes frees members; the template node for scale-up simulation (from
// zero) is built from the size's constraints.
//
// The server keeps a snapshot of the groups' members that Refresh (called by cluster-autoscaler
// before every loop) re-reads from metal-api; changes re-read the group they change first, and are
// serialised in the process (one replica, as cluster-autoscaler runs one leader).
package autoscaler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/metalforge/metalforge/pkg/autoscaler/externalgrpc"
	"github.com/metalforge/metalforge/pkg/client"
	"github.com/metalforge/metalforge/pkg/client/metalapi"
	"github.com/metalforge/metalforge/pkg/client/wire"
	"github.com/metalforge/metalforge/pkg/providerid"
)

// Machine tags, provider IDs and node labels.
const (
	// ProviderName is the scheme of provider IDs, as metal-ccm writes them.
	ProviderName = providerid.Provider
	// TagCluster prefixes the cluster tag of machines: cluster.metalforge.io/id=<cluster> (metal-ccm's).
	TagCluster = "cluster.metalforge.io/id="
	// TagNodeGroup prefixes the node group tag of machines: autoscaler.metalforge.io/node-group=<id>.
	TagNodeGroup = "autoscaler.metalforge.io/node-group="
	// LabelSize and LabelPartition are the node labels metal-ccm keeps in step with the machine.
	LabelSize      = "machine.metalforge.io/size"
	LabelPartition = "machine.metalforge.io/partition"
	// LabelGPU marks template nodes of sizes with GPUs (the GPULabel of the provider); its value is
	// the size's GPU identifier, or "true".
	LabelGPU = "machine.metalforge.io/gpu"
	// ResourceGPU is the extended resource of a size's GPUs.
	ResourceGPU = "nvidia.com/gpu"
)

// ProviderID of a machine: metal://<partition>/<machine-id>, as metal-ccm builds it.
func ProviderID(partition, machineID string) string { return providerid.Format(partition, machineID) }

// Server implements the externalgrpc CloudProvider service.
type Server struct {
	externalgrpc.UnimplementedCloudProviderServer

	cfg      Config
	log      *slog.Logger
	api      *metalapi.MetalAPI // Token: allocate, free, read members
	capacity *metalapi.MetalAPI // CapacityToken: count waiting machines
	groups   map[string]*NodeGroup

	// change serialises the calls that change metal-api (and reads of the group before them).
	change sync.Mutex
	// mu guards snap.
	mu   sync.Mutex
	snap *snapshot
}

var _ externalgrpc.CloudProviderServer = (*Server)(nil)

// New returns the server for cfg (defaulted and validated). It does not call metal-api.
func New(cfg Config, log *slog.Logger) (*Server, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("autoscaler config: %w", err)
	}
	api, err := client.New(cfg.MetalAPIURL, cfg.Token)
	if err != nil {
		return nil, fmt.Errorf("metal-api client: %w", err)
	}
	capacity, err := client.New(cfg.MetalAPIURL, cfg.CapacityToken)
	if err != nil {
		return nil, fmt.Errorf("metal-api client: %w", err)
	}
	s := &Server{cfg: cfg, log: log, api: api, capacity: capacity, groups: map[string]*NodeGroup{}}
	for i := range s.cfg.NodeGroups {
		g := &s.cfg.NodeGroups[i]
		s.groups[g.ID] = g
	}
	return s, nil
}

// Start serves the CloudProvider service on cfg.Listen until ctx ends.
func Start(ctx context.Context, cfg Config, log *slog.Logger) error {
	s, err := New(cfg, log)
	if err != nil {
		return err
	}
	return s.Run(ctx)
}

// Run serves the CloudProvider service on the config's listen address until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	var opts []grpc.ServerOption
	if s.cfg.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(s.cfg.TLS)))
	}
	g := grpc.NewServer(opts...)
	externalgrpc.RegisterCloudProviderServer(g, s)
	s.log.Info("serving externalgrpc cloud provider", "addr", lis.Addr().String(), "tls", s.cfg.TLS != nil, "nodeGroups", len(s.cfg.NodeGroups))
	if s.cfg.Ready != nil {
		s.cfg.Ready(lis.Addr())
	}
	done := make(chan error, 1)
	go func() { done <- g.Serve(lis) }()
	select {
	case err := <-done:
		return fmt.Errorf("serve grpc: %w", err)
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() {
		g.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		g.Stop()
	}
	if err := <-done; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serve grpc: %w", err)
	}
	return nil
}

// snapshot is what the server knows of metal-api since the last Refresh.
type snapshot struct {
	members    map[string][]*wire.Machine // node group → allocated member machines
	groupOf    map[string]string          // machine ID → node group
	sizes      map[string]*wire.Size
	partitions map[string]*wire.Partition
}

func (s *Server) group(id string) (*NodeGroup, error) {
	g, ok := s.groups[id]
	if !ok {
		return nil, notFound("node group %q", id)
	}
	return g, nil
}
