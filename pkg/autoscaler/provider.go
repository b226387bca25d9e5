package autoscaler

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/types/known/anypb"

	"github.com/metalforge/metalforge/pkg/autoscaler/externalgrpc"
	"github.com/metalforge/metalforge/pkg/client/wire"
	"github.com/metalforge/metalforge/pkg/providerid"
)

// NodeGroups lists the configured node groups.
func (s *Server) NodeGroups(context.Context, *externalgrpc.NodeGroupsRequest) (*externalgrpc.NodeGroupsResponse, error) {
	out := &externalgrpc.NodeGroupsResponse{}
	for i := range s.cfg.NodeGroups {
		out.NodeGroups = append(out.NodeGroups, s.cfg.NodeGroups[i].proto())
	}
	return out, nil
}

// proto is the node group as cluster-autoscaler sees it.
func (g *NodeGroup) proto() *externalgrpc.NodeGroup {
	return &externalgrpc.NodeGroup{Id: g.ID, MinSize: int32(g.Min), MaxSize: int32(g.Max),
		Debug: fmt.Sprintf("%s (cluster %s, partition %s, size %s, project %s, min %d, max %d)",
			g.ID, g.Cluster, g.Partition, g.Size, g.Project, g.Min, g.Max)}
}

// NodeGroupForNode finds the node's group by its provider ID in the snapshot; a node that is not
// a member of any group gets the empty node group.
func (s *Server) NodeGroupForNode(ctx context.Context, req *externalgrpc.NodeGroupForNodeRequest) (*externalgrpc.NodeGroupForNodeResponse, error) {
	none := &externalgrpc.NodeGroupForNodeResponse{NodeGroup: &externalgrpc.NodeGroup{}}
	id, ok := machineID(req.GetNode().GetProviderID())
	if !ok {
		return none, nil
	}
	snap, err := s.current(ctx)
	if err != nil {
		return nil, err
	}
	gid, ok := snap.groupOf[id]
	if !ok {
		return none, nil
	}
	return &externalgrpc.NodeGroupForNodeResponse{NodeGroup: s.groups[gid].proto()}, nil
}

// machineID is the machine ID of a provider ID metal://<partition>/<id> (or metal://<id>, which
// metal-ccm also accepts).
func machineID(providerID string) (string, bool) {
	id, err := providerid.Parse(providerID)
	return id, err == nil
}

// GPULabel is the label of template nodes with GPUs.
func (s *Server) GPULabel(context.Context, *externalgrpc.GPULabelRequest) (*externalgrpc.GPULabelResponse, error) {
	return &externalgrpc.GPULabelResponse{Label: LabelGPU}, nil
}

// GetAvailableGPUTypes lists the GPU types (LabelGPU values) of the node groups' sizes.
func (s *Server) GetAvailableGPUTypes(ctx context.Context, _ *externalgrpc.GetAvailableGPUTypesRequest) (*externalgrpc.GetAvailableGPUTypesResponse, error) {
	snap, err := s.current(ctx)
	if err != nil {
		return nil, err
	}
	out := &externalgrpc.GetAvailableGPUTypesResponse{GpuTypes: map[string]*anypb.Any{}}
	for _, sz := range snap.sizes {
		if gpu := gpuOf(sz); gpu != nil && gpu.Min > 0 {
			out.GpuTypes[gpuType(gpu)] = &anypb.Any{}
		}
	}
	return out, nil
}

// gpuOf is the size's GPU constraint, if any.
func gpuOf(sz *wire.Size) *wire.Constraint {
	for _, c := range sz.Constraints {
		if c != nil && c.Type == "gpu" {
			return c
		}
	}
	return nil
}

// gpuType is the LabelGPU value of a GPU constraint.
func gpuType(c *wire.Constraint) string {
	if v := labelSafe(c.Identifier); v != "" {
		return v
	}
	return "true"
}

// Cleanup has nothing to release.
func (s *Server) Cleanup(context.Context, *externalgrpc.CleanupRequest) (*externalgrpc.CleanupResponse, error) {
	return &externalgrpc.CleanupResponse{}, nil
}

// Refresh re-reads the node groups' members, sizes and partitions from metal-api. It waits for a
// change in flight, so its snapshot never predates the change.
func (s *Server) Refresh(ctx context.Context, _ *externalgrpc.RefreshRequest) (*externalgrpc.RefreshResponse, error) {
	s.change.Lock()
	defer s.change.Unlock()
	if _, err := s.refresh(ctx); err != nil {
		s.log.Warn("refresh failed", "err", err)
		return nil, err
	}
	return &externalgrpc.RefreshResponse{}, nil
}
