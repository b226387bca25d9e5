package autoscaler

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metalforge/metalforge/pkg/client"
	"github.com/metalforge/metalforge/pkg/client/metalapi"
	machineops "github.com/metalforge/metalforge/pkg/client/metalapi/machine"
	"github.com/metalforge/metalforge/pkg/client/metalapi/partition"
	"github.com/metalforge/metalforge/pkg/client/metalapi/size"
	"github.com/metalforge/metalforge/pkg/client/wire"
)

// pageLimit is the page size of machine finds (metal-api's maximum).
const pageLimit = 100

// maxPages bounds a paged find.
const maxPages = 10000

// livelinessAlive is metal-api's liveliness of a machine that reports in.
const livelinessAlive = "Alive"

// find returns every machine of req, over all pages.
func (s *Server) find(ctx context.Context, c *metalapi.MetalAPI, req wire.MachineFindRequest) ([]*wire.Machine, error) {
	req.Limit = pageLimit
	var out []*wire.Machine
	for range maxPages {
		body := req
		r, err := c.Machine.FindMachinesContext(ctx, machineops.NewFindMachinesParams().WithTimeout(s.cfg.APITimeout).WithBody(&body), nil)
		if err != nil {
			return nil, err
		}
		out = append(out, r.Payload.Items...)
		if r.Payload.Next == "" {
			return out, nil
		}
		req.Cursor = r.Payload.Next
	}
	return nil, fmt.Errorf("more than %d pages of machines", maxPages)
}

// members reads the node group's allocated machines from metal-api.
func (s *Server) members(ctx context.Context, g *NodeGroup) ([]*wire.Machine, error) {
	allocated := true
	ms, err := s.find(ctx, s.api, wire.MachineFindRequest{ProjectID: g.Project, PartitionID: g.Partition, SizeID: g.Size,
		Allocated: &allocated, Tags: []string{g.clusterTag(), g.groupTag()}})
	if err != nil {
		return nil, apiError(err, "read members of node group %s", g.ID)
	}
	// Belt and braces: the find filters all of this already.
	ms = slices.DeleteFunc(ms, func(m *wire.Machine) bool { return !g.member(m) })
	slices.SortFunc(ms, func(a, b *wire.Machine) int { return cmp.Compare(a.ID, b.ID) })
	return ms, nil
}

// member reports whether m is one of the node group's machines.
func (g *NodeGroup) member(m *wire.Machine) bool {
	return m.Allocation != nil && m.Allocation.ProjectID == g.Project && m.PartitionID == g.Partition && m.SizeID == g.Size &&
		slices.Contains(m.Tags, g.clusterTag()) && slices.Contains(m.Tags, g.groupTag())
}

// waiting counts the machines a scale-up of the node group can get: waiting, alive, available and
// unallocated machines of its partition and size.
func (s *Server) waiting(ctx context.Context, g *NodeGroup) (int, error) {
	yes, no := true, false
	ms, err := s.find(ctx, s.capacity, wire.MachineFindRequest{PartitionID: g.Partition, SizeID: g.Size, Waiting: &yes, Allocated: &no,
		Liveliness: livelinessAlive})
	if err != nil {
		return 0, apiError(err, "count waiting machines of size %s in partition %s", g.Size, g.Partition)
	}
	n := 0
	for _, m := range ms {
		if m.Waiting && m.Allocation == nil && m.Liveliness == livelinessAlive && (m.State == nil || m.State.Value == "") {
			n++
		}
	}
	return n, nil
}

// allocate allocates one machine to the node group.
func (s *Server) allocate(ctx context.Context, g *NodeGroup) (*wire.Machine, error) {
	req := &wire.MachineAllocateRequest{ProjectID: g.Project, PartitionID: g.Partition, SizeID: g.Size, ImageID: g.Image,
		FilesystemLayoutID: g.FilesystemLayout, Role: "machine", SSHPubKeys: g.SSHPubKeys, UserData: g.UserData,
		Tags: append([]string{g.clusterTag(), g.groupTag()}, g.Tags...), SpreadTag: g.clusterTag()}
	if len(g.Networks) == 0 {
		req.AutoNetwork = true
	}
	for _, n := range g.Networks {
		req.Networks = append(req.Networks, &wire.AllocationNetwork{NetworkID: n})
	}
	r, err := s.api.Machine.AllocateMachineContext(ctx, machineops.NewAllocateMachineParams().WithTimeout(s.cfg.APITimeout).WithBody(req), nil)
	if err != nil {
		return nil, apiError(err, "allocate machine of size %s in partition %s", g.Size, g.Partition)
	}
	return r.Payload, nil
}

// free frees a machine.
func (s *Server) free(ctx context.Context, id string) error {
	_, err := s.api.Machine.FreeMachineContext(ctx, machineops.NewFreeMachineParams().WithTimeout(s.cfg.APITimeout).WithID(id), nil)
	if err != nil {
		return apiError(err, "free machine %s", id)
	}
	return nil
}

// load reads every node group's members, sizes and partitions.
func (s *Server) load(ctx context.Context) (*snapshot, error) {
	snap := &snapshot{members: map[string][]*wire.Machine{}, groupOf: map[string]string{},
		sizes: map[string]*wire.Size{}, partitions: map[string]*wire.Partition{}}
	for i := range s.cfg.NodeGroups {
		g := &s.cfg.NodeGroups[i]
		ms, err := s.members(ctx, g)
		if err != nil {
			return nil, err
		}
		snap.setMembers(g.ID, ms)
		if _, ok := snap.sizes[g.Size]; !ok {
			r, err := s.api.Size.GetSizeContext(ctx, size.NewGetSizeParams().WithTimeout(s.cfg.APITimeout).WithID(g.Size), nil)
			if err != nil {
				return nil, apiError(err, "read size %s", g.Size)
			}
			snap.sizes[g.Size] = r.Payload
		}
		if _, ok := snap.partitions[g.Partition]; !ok {
			r, err := s.api.Partition.GetPartitionContext(ctx, partition.NewGetPartitionParams().WithTimeout(s.cfg.APITimeout).WithID(g.Partition), nil)
			if err != nil {
				return nil, apiError(err, "read partition %s", g.Partition)
			}
			snap.partitions[g.Partition] = r.Payload
		}
	}
	return snap, nil
}

// setMembers replaces the members of one node group.
func (sn *snapshot) setMembers(group string, ms []*wire.Machine) {
	for _, m := range sn.members[group] {
		delete(sn.groupOf, m.ID)
	}
	sn.members[group] = ms
	for _, m := range ms {
		sn.groupOf[m.ID] = group
	}
}

// current returns the snapshot, loading it on first use.
func (s *Server) current(ctx context.Context) (*snapshot, error) {
	s.mu.Lock()
	snap := s.snap
	s.mu.Unlock()
	if snap != nil {
		return snap, nil
	}
	return s.refresh(ctx)
}

// refresh re-reads the snapshot.
func (s *Server) refresh(ctx context.Context) (*snapshot, error) {
	snap, err := s.load(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.snap = snap
	s.mu.Unlock()
	return snap, nil
}

// updateMembers stores a group's members just read, in a copy of the snapshot (readers hold the
// old one).
func (s *Server) updateMembers(ctx context.Context, g *NodeGroup, ms []*wire.Machine) error {
	if _, err := s.current(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	next := &snapshot{members: map[string][]*wire.Machine{}, groupOf: map[string]string{},
		sizes: s.snap.sizes, partitions: s.snap.partitions}
	for id, old := range s.snap.members {
		next.setMembers(id, old)
	}
	next.setMembers(g.ID, ms)
	s.snap = next
	return nil
}

// apiError turns a metal-api error into a gRPC status error with a clear message.
func apiError(err error, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...) + ": " + client.Message(err)
	code := codes.Unavailable
	if st, _, ok := client.ErrorBody(err); ok {
		switch st {
		case http.StatusBadRequest, http.StatusUnprocessableEntity:
			code = codes.InvalidArgument
		case http.StatusUnauthorized:
			code = codes.Unauthenticated
		case http.StatusForbidden:
			code = codes.PermissionDenied
		case http.StatusNotFound:
			code = codes.NotFound
		case http.StatusConflict:
			code = codes.FailedPrecondition
		case http.StatusServiceUnavailable:
			code = codes.Unavailable
		default:
			code = codes.Internal
		}
	} else if errors.Is(err, context.Canceled) {
		code = codes.Canceled
	} else if errors.Is(err, context.DeadlineExceeded) {
		code = codes.DeadlineExceeded
	}
	return status.Error(code, msg)
}

func notFound(format string, args ...any) error {
	return status.Errorf(codes.NotFound, format, args...)
}
