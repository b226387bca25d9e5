package ccm

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/metalforge/metalforge/pkg/client"
	"github.com/metalforge/metalforge/pkg/client/metalapi"
	ipops "github.com/metalforge/metalforge/pkg/client/metalapi/ip"
	machineops "github.com/metalforge/metalforge/pkg/client/metalapi/machine"
	partitionops "github.com/metalforge/metalforge/pkg/client/metalapi/partition"
	"github.com/metalforge/metalforge/pkg/client/wire"
)

// errNotFound: metal-api has no such object, or hides it from the cluster's project.
var errNotFound = errors.New("not found")

// metal is what metal-ccm asks metal-api, through the generated client, with the project's token.
type metal struct {
	api     *metalapi.MetalAPI
	project string
	cluster string

	mu         sync.Mutex
	partitions map[string]*wire.Partition // partitions change rarely and only by admins
}

func newMetal(cfg Config) (*metal, error) {
	api, err := client.NewWithHTTPClient(cfg.MetalAPIURL, cfg.MetalAPIToken, cfg.HTTPClient)
	if err != nil {
		return nil, fmt.Errorf("metal-api client: %w", err)
	}
	return &metal{api: api, project: cfg.ProjectID, cluster: cfg.ClusterID, partitions: map[string]*wire.Partition{}}, nil
}

// apiErr turns a 404 into errNotFound and keeps metal-api's message for others.
func apiErr(what string, err error) error {
	if client.IsStatus(err, http.StatusNotFound) {
		return fmt.Errorf("%s: %w", what, errNotFound)
	}
	if _, _, ok := client.ErrorBody(err); ok {
		return fmt.Errorf("%s: %s", what, client.Message(err))
	}
	return fmt.Errorf("%s: %w", what, err)
}

func (m *metal) clusterTag() string { return TagCluster + m.cluster }

// machine returns an allocated machine of the project; a machine that is free or belongs to another
// project is errNotFound.
func (m *metal) machine(ctx context.Context, id string) (*wire.Machine, error) {
	r, err := m.api.Machine.GetMachineContext(ctx, machineops.NewGetMachineParams().WithID(id), nil)
	if err != nil {
		return nil, apiErr("get machine "+id, err)
	}
	mc := r.Payload
	if mc.Allocation == nil || mc.Allocation.ProjectID != m.project {
		return nil, fmt.Errorf("machine %s is not allocated to project %s: %w", id, m.project, errNotFound)
	}
	return mc, nil
}

// machineByHostname finds the project's machine whose allocation has the hostname (a Node's name
// before it has a provider ID).
func (m *metal) machineByHostname(ctx context.Context, hostname string) (*wire.Machine, error) {
	r, err := m.api.Machine.FindMachinesContext(ctx, machineops.NewFindMachinesParams().
		WithBody(&wire.MachineFindRequest{ProjectID: m.project, Hostname: hostname}), nil)
	if err != nil {
		return nil, apiErr("find machine "+hostname, err)
	}
	switch len(r.Payload.Items) {
	case 0:
		return nil, fmt.Errorf("machine with hostname %s: %w", hostname, errNotFound)
	case 1:
		return r.Payload.Items[0], nil
	}
	return nil, fmt.Errorf("%d machines of project %s have hostname %s", len(r.Payload.Items), m.project, hostname)
}

func (m *metal) partition(ctx context.Context, id string) (*wire.Partition, error) {
	m.mu.Lock()
	p, ok := m.partitions[id]
	m.mu.Unlock()
	if ok {
		return p, nil
	}
	r, err := m.api.Partition.GetPartitionContext(ctx, partitionops.NewGetPartitionParams().WithID(id), nil)
	if err != nil {
		return nil, apiErr("get partition "+id, err)
	}
	m.mu.Lock()
	m.partitions[id] = r.Payload
	m.mu.Unlock()
	return r.Payload, nil
}

// serviceIPs returns the cluster's IPs tagged for a service.
func (m *metal) serviceIPs(ctx context.Context, serviceTag string) ([]*wire.IP, error) {
	ips, err := m.findIPs(ctx, serviceTag)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(ips, func(ip *wire.IP) bool { return !slices.Contains(ip.Tags, m.clusterTag()) }), nil
}

// clusterIPs returns every IP of the project tagged with the cluster and some service.
func (m *metal) clusterIPs(ctx context.Context) ([]*wire.IP, error) {
	ips, err := m.findIPs(ctx, m.clusterTag())
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(ips, func(ip *wire.IP) bool { return serviceOf(ip) == "" }), nil
}

// findIPs returns the project's IPs with a tag, over all pages of the find.
func (m *metal) findIPs(ctx context.Context, tag string) ([]*wire.IP, error) {
	var out []*wire.IP
	limit := int64(1000)
	var cursor *string
	for range 10_000 {
		r, err := m.api.IP.FindIPsContext(ctx, ipops.NewFindIPsParams().WithLimit(&limit).WithCursor(cursor).
			WithBody(&wire.IPFindRequest{ProjectID: m.project, Tag: tag}), nil)
		if err != nil {
			return nil, apiErr("find ips tagged "+tag, err)
		}
		out = append(out, r.Payload.Items...)
		if r.Payload.Next == "" {
			return out, nil
		}
		next := r.Payload.Next
		cursor = &next
	}
	return nil, fmt.Errorf("find ips tagged %s: more than 10,000 pages", tag)
}

// setMachineTags replaces the tags of one of the project's machines and returns the machine.
func (m *metal) setMachineTags(ctx context.Context, id string, tags []string) (*wire.Machine, error) {
	r, err := m.api.Machine.SetMachineTagsContext(ctx, machineops.NewSetMachineTagsParams().WithID(id).
		WithBody(&wire.MachineTagsRequest{Tags: tags}), nil)
	if err != nil {
		return nil, apiErr("set tags of machine "+id, err)
	}
	return r.Payload, nil
}

// serviceOf returns the namespace/name of the service tag of an IP, or "".
func serviceOf(ip *wire.IP) string {
	for _, t := range ip.Tags {
		if s, ok := strings.CutPrefix(t, TagService); ok {
			return s
		}
	}
	return ""
}

// ownedIP returns an address the project holds; addresses of other projects are errNotFound.
func (m *metal) ownedIP(ctx context.Context, addr string) (*wire.IP, error) {
	r, err := m.api.IP.GetIPContext(ctx, ipops.NewGetIPParams().WithID(addr), nil)
	if err != nil {
		return nil, apiErr("get ip "+addr, err)
	}
	if r.Payload.ProjectID != m.project {
		return nil, fmt.Errorf("ip %s: %w", addr, errNotFound)
	}
	return r.Payload, nil
}

func (m *metal) allocateIP(ctx context.Context, network, name string, tags []string) (*wire.IP, error) {
	r, err := m.api.IP.AllocateIPContext(ctx, ipops.NewAllocateIPParams().WithBody(&wire.IPAllocateRequest{
		NetworkID: network, ProjectID: m.project, Type: "ephemeral", Name: name, Tags: tags,
		Description: "LoadBalancer of cluster " + m.cluster,
	}), nil)
	if err != nil {
		return nil, apiErr("allocate ip in network "+network, err)
	}
	return r.Payload, nil
}

func (m *metal) updateIP(ctx context.Context, ip *wire.IP) (*wire.IP, error) {
	r, err := m.api.IP.UpdateIPContext(ctx, ipops.NewUpdateIPParams().WithID(ip.ID).WithBody(ip), nil)
	if err != nil {
		return nil, apiErr("update ip "+ip.ID, err)
	}
	return r.Payload, nil
}

// releaseIP releases an address; one that is already gone is no error.
func (m *metal) releaseIP(ctx context.Context, addr string) error {
	_, err := m.api.IP.ReleaseIPContext(ctx, ipops.NewReleaseIPParams().WithID(addr), nil)
	if err != nil && !client.IsStatus(err, http.StatusNotFound) {
		return apiErr("release ip "+addr, err)
	}
	return nil
}
