package mcm

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/gardener/machine-controller-manager/pkg/apis/machine/v1alpha1"
	"github.com/gardener/machine-controller-manager/pkg/util/provider/machinecodes/codes"
	"github.com/gardener/machine-controller-manager/pkg/util/provider/machinecodes/status"

	"github.com/metalforge/metalforge/pkg/client"
	"github.com/metalforge/metalforge/pkg/client/metalapi"
	machineops "github.com/metalforge/metalforge/pkg/client/metalapi/machine"
	"github.com/metalforge/metalforge/pkg/client/wire"
)

// metal is one call's view of metal-api: the class's project and cluster, with the secret's token.
type metal struct {
	api  *metalapi.MetalAPI
	spec *ProviderSpec
}

func (d *Driver) metal(creds *credentials, spec *ProviderSpec) (*metal, error) {
	api, err := client.NewWithHTTPClient(creds.URL, creds.Token, d.cfg.HTTPClient)
	if err != nil {
		return nil, invalid("metal-api client for %s: %v", creds.URL, err)
	}
	return &metal{api: api, spec: spec}, nil
}

// statusError builds an MCM status error. MCM parses the code and message back out of the text
// between square brackets, so the message must not contain any.
func statusError(c codes.Code, msg string) error {
	return status.Error(c, strings.NewReplacer("[", "(", "]", ")").Replace(msg))
}

// apiErr maps a metal-api error to MCM's codes, keeping metal-api's message.
func apiErr(what string, err error) error {
	code, _, ok := client.ErrorBody(err)
	if !ok {
		// Transport errors: metal-api is unreachable or the call was cut; MCM retries these soon.
		if errors.Is(err, context.DeadlineExceeded) {
			return statusError(codes.DeadlineExceeded, what+": "+err.Error())
		}
		return statusError(codes.Unavailable, what+": "+err.Error())
	}
	msg := what + ": " + client.Message(err)
	switch code {
	case http.StatusBadRequest, http.StatusUnprocessableEntity:
		return statusError(codes.InvalidArgument, msg)
	case http.StatusUnauthorized:
		return statusError(codes.Unauthenticated, msg)
	case http.StatusForbidden:
		return statusError(codes.PermissionDenied, msg)
	case http.StatusNotFound:
		return statusError(codes.NotFound, msg)
	case http.StatusConflict:
		return statusError(codes.Aborted, msg)
	case http.StatusServiceUnavailable, http.StatusTooManyRequests:
		return statusError(codes.Unavailable, msg)
	}
	return statusError(codes.Internal, msg)
}

func (m *metal) clusterTag() string { return TagCluster + m.spec.ClusterID }

// allocate allocates a machine by partition and size: metal-api picks among the waiting machines
// and spreads the project's machines over the partition's racks.
func (m *metal) allocate(ctx context.Context, req *wire.MachineAllocateRequest) (*wire.Machine, error) {
	r, err := m.api.Machine.AllocateMachineContext(ctx, machineops.NewAllocateMachineParams().WithBody(req), nil)
	if err != nil {
		what := fmt.Sprintf("allocate machine %s of size %s in partition %s", req.Name, req.SizeID, req.PartitionID)
		if client.IsStatus(err, http.StatusConflict) {
			// metal-api's 409 for an allocation: no machine of the size is waiting, the rest is
			// reserved for other projects, or the project's quota or a network is used up. MCM backs
			// off for ResourceExhausted (--resource-exhausted-retry) instead of failing the machine.
			return nil, statusError(codes.ResourceExhausted, what+": "+client.Message(err))
		}
		return nil, apiErr(what, err)
	}
	return r.Payload, nil
}

// free frees a machine.
func (m *metal) free(ctx context.Context, id string) error {
	if _, err := m.api.Machine.FreeMachineContext(ctx, machineops.NewFreeMachineParams().WithID(id), nil); err != nil {
		return apiErr("free machine "+id, err)
	}
	return nil
}

// get returns one of the cluster's machines by id; a machine that is free, of another project
// or without the cluster tag is NotFound.
func (m *metal) get(ctx context.Context, id string) (*wire.Machine, error) {
	r, err := m.api.Machine.GetMachineContext(ctx, machineops.NewGetMachineParams().WithID(id), nil)
	if err != nil {
		return nil, apiErr("get machine "+id, err)
	}
	if !m.owns(r.Payload) {
		return nil, statusError(codes.NotFound, fmt.Sprintf("machine %s is not allocated to cluster %s of project %s", id, m.spec.ClusterID, m.spec.Project))
	}
	return r.Payload, nil
}

func (m *metal) owns(mc *wire.Machine) bool {
	return mc.Allocation != nil && mc.Allocation.ProjectID == m.spec.Project && slices.Contains(mc.Tags, m.clusterTag())
}

// byName returns the cluster's machine tagged with the MCM machine name.
func (m *metal) byName(ctx context.Context, name string) (*wire.Machine, error) {
	ms, err := m.findAll(ctx, []string{m.clusterTag(), TagMachine + name})
	if err != nil {
		return nil, err
	}
	switch len(ms) {
	case 0:
		return nil, statusError(codes.NotFound, fmt.Sprintf("no machine of cluster %s is tagged %s%s", m.spec.ClusterID, TagMachine, name))
	case 1:
		return ms[0], nil
	}
	ids := make([]string, 0, len(ms))
	for _, mc := range ms {
		ids = append(ids, mc.ID)
	}
	return nil, statusError(codes.Internal, fmt.Sprintf("%d machines of cluster %s are tagged %s%s: %s",
		len(ms), m.spec.ClusterID, TagMachine, name, strings.Join(ids, ", ")))
}

// find returns the MCM machine's metal-api machine: by provider ID when it has one, by its name
// tag otherwise (creation may have allocated without MCM recording the provider ID).
func (m *metal) find(ctx context.Context, mc *v1alpha1.Machine) (*wire.Machine, error) {
	name, providerID := machineRef(mc)
	if providerID == "" {
		return m.byName(ctx, name)
	}
	id, err := ParseProviderID(providerID)
	if err != nil {
		return nil, invalid("machine %s: %v", name, err)
	}
	found, err := m.get(ctx, id)
	if err != nil {
		return nil, err
	}
	// A provider ID outlives its allocation: once freed, the machine may serve another MCM machine
	// of the same cluster, which must not be reported or freed for this one.
	if other := machineName(found); other != "" && other != name {
		return nil, statusError(codes.NotFound, fmt.Sprintf("machine %s now belongs to MCM machine %s, not %s", id, other, name))
	}
	return found, nil
}

// findAll returns the project's allocated machines of role machine (not its firewalls) carrying
// all the tags, over all pages.
func (m *metal) findAll(ctx context.Context, tags []string) ([]*wire.Machine, error) {
	allocated := true
	req := &wire.MachineFindRequest{ProjectID: m.spec.Project, Role: roleMachine, Tags: tags, Allocated: &allocated, Limit: 500}
	var out []*wire.Machine
	for range 10_000 {
		r, err := m.api.Machine.FindMachinesContext(ctx, machineops.NewFindMachinesParams().WithBody(req), nil)
		if err != nil {
			return nil, apiErr("find machines tagged "+strings.Join(tags, ","), err)
		}
		for _, mc := range r.Payload.Items {
			if m.owns(mc) {
				out = append(out, mc)
			}
		}
		if r.Payload.Next == "" {
			return out, nil
		}
		req.Cursor = r.Payload.Next
	}
	return nil, statusError(codes.Internal, "find machines tagged "+strings.Join(tags, ",")+": more than 10,000 pages")
}
