package infrastructure

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/metalforge/metalforge/pkg/client"
	"github.com/metalforge/metalforge/pkg/client/metalapi"
	ipops "github.com/metalforge/metalforge/pkg/client/metalapi/ip"
	machineops "github.com/metalforge/metalforge/pkg/client/metalapi/machine"
	networkops "github.com/metalforge/metalforge/pkg/client/metalapi/network"
	"github.com/metalforge/metalforge/pkg/client/wire"
)

// Tags the actuator owns besides the cluster tag.
const (
	// TagEgress marks the egress IPs the actuator allocated.
	TagEgress = "infrastructure.metalforge.io/role=egress"
	// TagFirewall marks the cluster's firewall machine.
	TagFirewall = "infrastructure.metalforge.io/role=firewall"
)

// Network types and roles of metal-api.
const (
	networkPrivate  = "private"
	networkExternal = "external"
	roleFirewall    = "firewall"
	ipStatic        = "static"
)

// pageLimit is the page size of find calls.
const pageLimit = int64(100)

// apiError renders a metal-api error with its message and status.
func apiError(what string, err error) error {
	return fmt.Errorf("%s: %s", what, client.Message(err))
}

func isNotFound(err error) bool { return client.IsStatus(err, http.StatusNotFound) }

// clusterNetworks are the cluster's private networks in the project and partition (normally one).
func (s *scope) clusterNetworks(ctx context.Context) ([]*wire.Network, error) {
	return ClusterNetworks(ctx, s.api, s.cfg.ProjectID, s.cfg.PartitionID, s.clusterID)
}

// ClusterNetworks finds the private networks of the project in the partition that carry the
// cluster's label, sorted by ID; the worker actuator uses it to attach machines to the network
// Reconcile allocated.
func ClusterNetworks(ctx context.Context, api *metalapi.MetalAPI, projectID, partitionID, clusterID string) ([]*wire.Network, error) {
	var out []*wire.Network
	var cursor *string
	limit := pageLimit
	for range 1000 {
		r, err := api.Network.FindNetworksContext(ctx, networkops.NewFindNetworksParams().WithBody(&wire.NetworkFindRequest{
			ProjectID: projectID, PartitionID: partitionID, Type: networkPrivate}).WithLimit(&limit).WithCursor(cursor), nil)
		if err != nil {
			return nil, apiError("find networks", err)
		}
		for _, n := range r.Payload.Items {
			if n.Labels[ClusterLabel] == clusterID {
				out = append(out, n)
			}
		}
		if r.Payload.Next == "" {
			slices.SortFunc(out, func(x, y *wire.Network) int { return strings.Compare(x.ID, y.ID) })
			return out, nil
		}
		cursor = &r.Payload.Next
	}
	return nil, fmt.Errorf("find networks: more than 1000 pages")
}

// clusterIPs are the project's IPs carrying the cluster tag and all of tags.
func (s *scope) clusterIPs(ctx context.Context, tags ...string) ([]*wire.IP, error) {
	var out []*wire.IP
	var cursor *string
	limit := pageLimit
	for range 1000 {
		r, err := s.api.IP.FindIPsContext(ctx, ipops.NewFindIPsParams().WithBody(&wire.IPFindRequest{
			ProjectID: s.cfg.ProjectID, Tag: ClusterTag(s.clusterID)}).WithLimit(&limit).WithCursor(cursor), nil)
		if err != nil {
			return nil, apiError("find ips", err)
		}
		for _, ip := range r.Payload.Items {
			if hasAll(ip.Tags, tags) {
				out = append(out, ip)
			}
		}
		if r.Payload.Next == "" {
			return out, nil
		}
		cursor = &r.Payload.Next
	}
	return nil, fmt.Errorf("find ips: more than 1000 pages")
}

// firewalls are the project's allocated firewall machines of the cluster.
func (s *scope) firewalls(ctx context.Context) ([]*wire.Machine, error) {
	var out []*wire.Machine
	req := &wire.MachineFindRequest{ProjectID: s.cfg.ProjectID, Role: roleFirewall,
		Tags: []string{ClusterTag(s.clusterID), TagFirewall}, Limit: pageLimit}
	for range 1000 {
		r, err := s.api.Machine.FindMachinesContext(ctx, machineops.NewFindMachinesParams().WithBody(req), nil)
		if err != nil {
			return nil, apiError("find firewalls", err)
		}
		// metal-api matches role and tags (a role implies an allocation).
		out = append(out, r.Payload.Items...)
		if r.Payload.Next == "" {
			return out, nil
		}
		req.Cursor = r.Payload.Next
	}
	return nil, fmt.Errorf("find firewalls: more than 1000 pages")
}

func hasAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}
