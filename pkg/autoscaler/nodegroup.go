package autoscaler

import (
	"cmp"
	"context"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metalforge/metalforge/pkg/autoscaler/externalgrpc"
	"github.com/metalforge/metalforge/pkg/client/wire"
)

// Instance error classes of cluster-autoscaler (cloudprovider.InstanceErrorClass).
const (
	errorClassOutOfResources = 1
	errorClassOther          = 99
)

// NodeGroupTargetSize is the number of members: metal-api allocates synchronously, so every
// request made is a member.
func (s *Server) NodeGroupTargetSize(ctx context.Context, req *externalgrpc.NodeGroupTargetSizeRequest) (*externalgrpc.NodeGroupTargetSizeResponse, error) {
	g, err := s.group(req.GetId())
	if err != nil {
		return nil, err
	}
	snap, err := s.current(ctx)
	if err != nil {
		return nil, err
	}
	return &externalgrpc.NodeGroupTargetSizeResponse{TargetSize: int32(len(snap.members[g.ID]))}, nil
}

// NodeGroupNodes lists the members by provider ID: running once the installed OS phoned home,
// creating before; a crash loop or failed reclaim is reported as an error of the instance.
func (s *Server) NodeGroupNodes(ctx context.Context, req *externalgrpc.NodeGroupNodesRequest) (*externalgrpc.NodeGroupNodesResponse, error) {
	g, err := s.group(req.GetId())
	if err != nil {
		return nil, err
	}
	snap, err := s.current(ctx)
	if err != nil {
		return nil, err
	}
	out := &externalgrpc.NodeGroupNodesResponse{}
	for _, m := range snap.members[g.ID] {
		st := &externalgrpc.InstanceStatus{InstanceState: externalgrpc.InstanceStatus_instanceCreating}
		switch {
		case m.Allocation.Succeeded:
			st.InstanceState = externalgrpc.InstanceStatus_instanceRunning
		case m.CrashLoop:
			st.ErrorInfo = &externalgrpc.InstanceErrorInfo{ErrorCode: "CrashLoop", ErrorMessage: "machine " + m.ID + " is in a provisioning crash loop", InstanceErrorClass: errorClassOther}
		case m.FailedMachineReclaim:
			st.ErrorInfo = &externalgrpc.InstanceErrorInfo{ErrorCode: "FailedReclaim", ErrorMessage: "machine " + m.ID + " did not come back after a reclaim", InstanceErrorClass: errorClassOther}
		}
		out.Instances = append(out.Instances, &externalgrpc.Instance{Id: ProviderID(m.PartitionID, m.ID), Status: st})
	}
	return out, nil
}

// NodeGroupIncreaseSize allocates delta machines to the group. It refuses, allocating nothing,
// when the group would exceed its max (FailedPrecondition) or fewer machines of the partition and
// size are waiting than asked (ResourceExhausted). Should an allocation still fail (a machine taken
// by someone else in between), the machines allocated so far stay members and the error says so.
func (s *Server) NodeGroupIncreaseSize(ctx context.Context, req *externalgrpc.NodeGroupIncreaseSizeRequest) (*externalgrpc.NodeGroupIncreaseSizeResponse, error) {
	g, err := s.group(req.GetId())
	if err != nil {
		return nil, err
	}
	delta := int(req.GetDelta())
	if delta <= 0 {
		return nil, status.Errorf(codes.InvalidArgument, "node group %s: size increase must be positive, got %d", g.ID, delta)
	}
	s.change.Lock()
	defer s.change.Unlock()
	ms, err := s.members(ctx, g)
	if err != nil {
		return nil, err
	}
	if len(ms)+delta > g.Max {
		return nil, status.Errorf(codes.FailedPrecondition, "node group %s: size increase too large: %d machines + %d exceeds max %d",
			g.ID, len(ms), delta, g.Max)
	}
	waiting, err := s.waiting(ctx, g)
	if err != nil {
		return nil, err
	}
	if waiting < delta {
		s.log.Info("scale-up refused, not enough waiting machines", "nodeGroup", g.ID, "delta", delta, "waiting", waiting)
		return nil, status.Errorf(codes.ResourceExhausted, "node group %s: %d machines of size %s asked in partition %s, only %d waiting; nothing allocated",
			g.ID, delta, g.Size, g.Partition, waiting)
	}
	start := time.Now()
	var errAlloc error
	for i := range delta {
		m, err := s.allocate(ctx, g)
		if err != nil {
			errAlloc = status.Errorf(status.Code(err), "node group %s: allocated %d of %d machines: %s", g.ID, i, delta, status.Convert(err).Message())
			break
		}
		ms = append(ms, m)
		s.log.Info("machine allocated", "nodeGroup", g.ID, "machine", m.ID)
	}
	slices.SortFunc(ms, func(a, b *wire.Machine) int { return cmp.Compare(a.ID, b.ID) })
	if err := s.updateMembers(ctx, g, ms); err != nil && errAlloc == nil {
		errAlloc = err
	}
	if errAlloc != nil {
		return nil, errAlloc
	}
	s.log.Info("node group increased", "nodeGroup", g.ID, "delta", delta, "size", len(ms), "duration", time.Since(start))
	return &externalgrpc.NodeGroupIncreaseSizeResponse{}, nil
}

// NodeGroupDeleteNodes frees the nodes' machines. Every node must be a member of the group and the
// group must stay at or above min; otherwise nothing is freed.
func (s *Server) NodeGroupDeleteNodes(ctx context.Context, req *externalgrpc.NodeGroupDeleteNodesRequest) (*externalgrpc.NodeGroupDeleteNodesResponse, error) {
	g, err := s.group(req.GetId())
	if err != nil {
		return nil, err
	}
	s.change.Lock()
	defer s.change.Unlock()
	ms, err := s.members(ctx, g)
	if err != nil {
		return nil, err
	}
	byID := map[string]*wire.Machine{}
	for _, m := range ms {
		byID[m.ID] = m
	}
	var ids []string
	for _, n := range req.GetNodes() {
		id, ok := machineID(n.GetProviderID())
		if !ok {
			return nil, status.Errorf(codes.InvalidArgument, "node group %s: node %q has provider id %q, not %s://<partition>/<machine-id>; nothing freed",
				g.ID, n.GetName(), n.GetProviderID(), ProviderName)
		}
		if _, ok := byID[id]; !ok {
			return nil, status.Errorf(codes.InvalidArgument, "node group %s: node %q (machine %s) is not a member; nothing freed", g.ID, n.GetName(), id)
		}
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	if len(ms)-len(ids) < g.Min {
		return nil, status.Errorf(codes.FailedPrecondition, "node group %s: deleting %d of %d machines goes below min %d; nothing freed",
			g.ID, len(ids), len(ms), g.Min)
	}
	err = s.freeAll(ctx, g, ms, ids)
	if err != nil {
		return nil, err
	}
	return &externalgrpc.NodeGroupDeleteNodesResponse{}, nil
}

// freeAll frees the machines ids of the group's members ms and stores the members left.
func (s *Server) freeAll(ctx context.Context, g *NodeGroup, ms []*wire.Machine, ids []string) error {
	var errFree error
	for _, id := range ids {
		if err := s.free(ctx, id); err != nil {
			errFree = err
			break
		}
		ms = slices.DeleteFunc(ms, func(m *wire.Machine) bool { return m.ID == id })
		s.log.Info("machine freed", "nodeGroup", g.ID, "machine", id)
	}
	if err := s.updateMembers(ctx, g, ms); err != nil && errFree == nil {
		errFree = err
	}
	return errFree
}

// NodeGroupDecreaseTargetSize drops requests not yet fulfilled (delta < 0): members whose installed
// OS has not phoned home yet, so no node can have joined from them, newest first. It never frees a
// machine that came up; asking for more than the unfulfilled ones fails and frees nothing.
func (s *Server) NodeGroupDecreaseTargetSize(ctx context.Context, req *externalgrpc.NodeGroupDecreaseTargetSizeRequest) (*externalgrpc.NodeGroupDecreaseTargetSizeResponse, error) {
	g, err := s.group(req.GetId())
	if err != nil {
		return nil, err
	}
	delta := int(req.GetDelta())
	if delta >= 0 {
		return nil, status.Errorf(codes.InvalidArgument, "node group %s: size decrease must be negative, got %d", g.ID, delta)
	}
	s.change.Lock()
	defer s.change.Unlock()
	ms, err := s.members(ctx, g)
	if err != nil {
		return nil, err
	}
	var pending []*wire.Machine
	for _, m := range ms {
		if !m.Allocation.Succeeded {
			pending = append(pending, m)
		}
	}
	if -delta > len(pending) {
		return nil, status.Errorf(codes.FailedPrecondition, "node group %s: attempt to delete existing nodes: target size %d, delta %d, only %d machines not up yet; nothing freed",
			g.ID, len(ms), delta, len(pending))
	}
	slices.SortStableFunc(pending, func(a, b *wire.Machine) int {
		return time.Time(b.Allocation.Created).Compare(time.Time(a.Allocation.Created))
	})
	var ids []string
	for _, m := range pending[:-delta] {
		ids = append(ids, m.ID)
	}
	if err := s.freeAll(ctx, g, ms, ids); err != nil {
		return nil, err
	}
	return &externalgrpc.NodeGroupDecreaseTargetSizeResponse{}, nil
}
