// Package network is the IPAM of metal-api over the store: networks (super, underlay, external,
// private, private-shared), private network allocation from a partition's super network with a VRF
// from a pool, and IP allocation. Every function works inside a caller's store transaction, so a
// machine allocation can take its network, addresses, ASN and VRF in one transaction.
package network

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/apierror"
	"github.com/metalforge/metalforge/pkg/id"
	"github.com/metalforge/metalforge/pkg/ipam"
	"github.com/metalforge/metalforge/pkg/store"
)

// Pools of unique numbers.
const (
	PoolVRF = "vrf"
	// VRFMin..VRFMax is the VNI range of tenant networks.
	VRFMin = 10000
	VRFMax = 16777215
)

// DefaultChildPrefixLength is the length of a private network when neither the request nor the
// super network says.
const DefaultChildPrefixLength = 22

func validType(t string) bool {
	switch t {
	case api.NetworkSuper, api.NetworkUnderlay, api.NetworkExternal, api.NetworkPrivate, api.NetworkPrivateShared:
		return true
	}
	return false
}

// Validate checks a network against the others in the store: prefixes, references, overlaps.
func Validate(ctx context.Context, tx store.Tx, n *api.Network) error {
	if n.Name == "" && n.ID == "" {
		return apierror.Invalid("network needs a name or id")
	}
	if !validType(n.Type) {
		return apierror.Invalid("network type %q is not one of super, underlay, external, private, private-shared", n.Type)
	}
	prefixes, err := ipam.ParsePrefixes(n.Prefixes)
	if err != nil {
		return apierror.Invalid("prefixes: %v", err)
	}
	if len(prefixes) == 0 {
		return apierror.Invalid("network needs at least one prefix")
	}
	if _, err := ipam.ParsePrefixes(n.DestinationPrefixes); err != nil {
		return apierror.Invalid("destination prefixes: %v", err)
	}
	if n.VRF != 0 && (n.VRF > VRFMax) {
		return apierror.Invalid("vrf %d is outside 1-%d", n.VRF, VRFMax)
	}
	if n.ChildPrefixLength != 0 {
		for _, p := range prefixes {
			if n.ChildPrefixLength <= p.Bits() || n.ChildPrefixLength > p.Addr().BitLen() {
				return apierror.Invalid("child prefix length /%d does not fit prefix %s", n.ChildPrefixLength, p)
			}
		}
	}
	switch n.Type {
	case api.NetworkSuper, api.NetworkUnderlay, api.NetworkPrivate, api.NetworkPrivateShared:
		if n.PartitionID == "" {
			return apierror.Invalid("a %s network needs a partition", n.Type)
		}
	}
	if n.PartitionID != "" {
		if _, err := tx.Partitions().Get(ctx, n.PartitionID); err != nil {
			return notFoundIsInvalid(err)
		}
	}
	if n.Type == api.NetworkPrivate && n.ProjectID == "" {
		return apierror.Invalid("a private network needs a project")
	}
	if n.ProjectID != "" {
		if _, err := tx.Projects().Get(ctx, n.ProjectID); err != nil {
			return notFoundIsInvalid(err)
		}
	}
	var parent *api.Network
	if n.ParentNetworkID != "" {
		if parent, err = tx.Networks().Get(ctx, n.ParentNetworkID); err != nil {
			return notFoundIsInvalid(err)
		}
		pp, _ := ipam.ParsePrefixes(parent.Prefixes)
		for _, p := range prefixes {
			if !inside(p, pp) {
				return apierror.Invalid("prefix %s is not inside parent network %s", p, parent.ID)
			}
		}
	}
	all, _, err := tx.Networks().List(ctx, store.Query{})
	if err != nil {
		return err
	}
	for _, o := range all {
		if o.ID == n.ID || o.ID == n.ParentNetworkID || o.ParentNetworkID == n.ID && n.ID != "" {
			continue
		}
		if n.Type == api.NetworkSuper && n.PartitionID == o.PartitionID && o.Type == api.NetworkSuper {
			return apierror.Invalid("partition %s already has super network %s", n.PartitionID, o.ID)
		}
		op, _ := ipam.ParsePrefixes(o.Prefixes)
		if a, b, ok := ipam.FirstOverlap(prefixes, op); ok {
			return apierror.Invalid("prefix %s overlaps %s of network %s", a, b, o.ID)
		}
	}
	return nil
}

func inside(p netip.Prefix, parents []netip.Prefix) bool {
	for _, pp := range parents {
		if pp.Bits() <= p.Bits() && pp.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

// notFoundIsInvalid turns a missing reference into bad input.
func notFoundIsInvalid(err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return apierror.Invalid("%v", err)
	}
	return err
}

// Create validates and stores a network given with its prefixes; a non-zero VRF is reserved in the
// VRF pool, and private networks without one get the next free.
func Create(ctx context.Context, tx store.Tx, n *api.Network) error {
	if n.ID == "" {
		n.ID = id.New()
	}
	if err := Validate(ctx, tx, n); err != nil {
		return err
	}
	if n.VRF != 0 || n.Type == api.NetworkPrivate || n.Type == api.NetworkPrivateShared {
		// A given VRF may be anything valid; one picked for a tenant network comes from the tenant
		// range, like AllocatePrivate's, so it never takes a VRF an operator may still give out.
		lo := uint64(1)
		if n.VRF == 0 {
			lo = VRFMin
		}
		vrf, err := tx.Acquire(ctx, PoolVRF, lo, VRFMax, uint64(n.VRF), n.ID)
		if errors.Is(err, store.ErrDuplicate) {
			return apierror.Invalid("vrf %d is used by another network", n.VRF)
		}
		if err != nil {
			return fmt.Errorf("vrf: %w", err)
		}
		n.VRF = uint32(vrf)
	}
	if err := tx.Networks().Create(ctx, n); err != nil {
		return err
	}
	return nil
}

// Update changes the mutable fields of a network: name, description, labels, destination prefixes,
// NAT, and added prefixes. Prefixes holding IPs can't be removed.
func Update(ctx context.Context, tx store.Tx, n *api.Network) (*api.Network, error) {
	old, err := tx.Networks().Get(ctx, n.ID)
	if err != nil {
		return nil, err
	}
	if n.Version != old.Version {
		return nil, fmt.Errorf("network %s has version %d, not %d: %w", n.ID, old.Version, n.Version, apierror.ErrStale)
	}
	if n.Type != old.Type || n.PartitionID != old.PartitionID || n.ProjectID != old.ProjectID ||
		n.ParentNetworkID != old.ParentNetworkID || n.VRF != old.VRF {
		return nil, apierror.Invalid("type, partition, project, parent and vrf of a network can't change")
	}
	if err := Validate(ctx, tx, n); err != nil {
		return nil, err
	}
	newPrefixes, _ := ipam.ParsePrefixes(n.Prefixes)
	ips, _, err := tx.IPs().List(ctx, store.Query{Key1: n.ID})
	if err != nil {
		return nil, err
	}
	for _, ip := range ips {
		if a, err := netip.ParseAddr(ip.Address); err == nil && !ipam.ContainsIP(newPrefixes, a) {
			return nil, fmt.Errorf("ip %s is outside the new prefixes: %w", ip.Address, apierror.ErrInUse)
		}
	}
	if err := tx.Networks().Update(ctx, n); err != nil {
		return nil, err
	}
	return n, nil
}

// AllocatePrivate allocates a private network for a project: the next free child prefix of the
// partition's super network and a VRF. The super network's version is bumped so that two
// concurrent allocations can't hand out overlapping prefixes, on any replica.
func AllocatePrivate(ctx context.Context, tx store.Tx, req api.NetworkAllocateRequest) (*api.Network, error) {
	if req.ProjectID == "" || req.PartitionID == "" {
		return nil, apierror.Invalid("network allocation needs a project and a partition")
	}
	project, err := tx.Projects().Get(ctx, req.ProjectID)
	if err != nil {
		return nil, notFoundIsInvalid(err)
	}
	if q := project.Quotas.Networks; q != nil {
		n, err := tx.Networks().Count(ctx, store.Query{Project: project.ID})
		if err != nil {
			return nil, err
		}
		if n >= *q {
			return nil, fmt.Errorf("project %s has reached its quota of %d networks: %w", project.ID, *q, apierror.ErrUnavailable)
		}
	}
	supers, _, err := tx.Networks().List(ctx, store.Query{Partition: req.PartitionID, Key1: api.NetworkSuper})
	if err != nil {
		return nil, err
	}
	if len(supers) == 0 {
		return nil, apierror.Invalid("partition %q has no super network", req.PartitionID)
	}
	super := supers[0]
	bits := req.PrefixLength
	if bits == 0 {
		bits = super.ChildPrefixLength
	}
	if bits == 0 {
		bits = DefaultChildPrefixLength
	}
	parents, err := ipam.ParsePrefixes(super.Prefixes)
	if err != nil {
		return nil, fmt.Errorf("super network %s: %w", super.ID, err)
	}
	children, _, err := tx.Networks().List(ctx, store.Query{Key2: super.ID})
	if err != nil {
		return nil, err
	}
	var used []netip.Prefix
	for _, c := range children {
		cp, _ := ipam.ParsePrefixes(c.Prefixes)
		used = append(used, cp...)
	}
	prefix, err := ipam.NextFreeChildPrefix(parents, bits, used)
	if errors.Is(err, ipam.ErrExhausted) {
		return nil, fmt.Errorf("super network %s has no free /%d: %w", super.ID, bits, store.ErrExhausted)
	}
	if err != nil {
		return nil, apierror.Invalid("%v", err)
	}
	// Serialise child allocation of this super network across transactions and replicas.
	if err := tx.Networks().Update(ctx, super); err != nil {
		return nil, err
	}
	typ := api.NetworkPrivate
	if req.Shared {
		typ = api.NetworkPrivateShared
	}
	n := &api.Network{
		Meta:            api.Meta{ID: id.New(), Name: req.Name, Description: req.Description},
		Type:            typ,
		Prefixes:        []string{prefix.String()},
		PartitionID:     req.PartitionID,
		ProjectID:       req.ProjectID,
		ParentNetworkID: super.ID,
		Labels:          req.Labels,
	}
	if n.Name == "" {
		n.Name = n.ID
	}
	vrf, err := tx.Acquire(ctx, PoolVRF, VRFMin, VRFMax, 0, n.ID)
	if err != nil {
		return nil, fmt.Errorf("vrf: %w", err)
	}
	n.VRF = uint32(vrf)
	if err := tx.Networks().Create(ctx, n); err != nil {
		return nil, err
	}
	return n, nil
}

// Delete removes a network that holds no IPs and no child networks, releasing its VRF.
func Delete(ctx context.Context, tx store.Tx, networkID string) (*api.Network, error) {
	n, err := tx.Networks().Get(ctx, networkID)
	if err != nil {
		return nil, err
	}
	ips, err := tx.IPs().Count(ctx, store.Query{Key1: n.ID})
	if err != nil {
		return nil, err
	}
	if ips > 0 {
		return nil, fmt.Errorf("network %s still has %d ips: %w", n.ID, ips, apierror.ErrInUse)
	}
	children, err := tx.Networks().Count(ctx, store.Query{Key2: n.ID})
	if err != nil {
		return nil, err
	}
	if children > 0 {
		return nil, fmt.Errorf("network %s still has %d child networks: %w", n.ID, children, apierror.ErrInUse)
	}
	if _, err := tx.Release(ctx, PoolVRF, n.ID); err != nil {
		return nil, err
	}
	if err := tx.Networks().Delete(ctx, n.ID); err != nil {
		return nil, err
	}
	return n, nil
}

// Usage counts the addresses of a network and, for a super network, its child prefixes.
func Usage(ctx context.Context, tx store.Tx, n *api.Network) (*api.NetworkUsage, error) {
	prefixes, err := ipam.ParsePrefixes(n.Prefixes)
	if err != nil {
		return nil, err
	}
	used, err := tx.IPs().Count(ctx, store.Query{Key1: n.ID})
	if err != nil {
		return nil, err
	}
	children, err := tx.Networks().Count(ctx, store.Query{Key2: n.ID})
	if err != nil {
		return nil, err
	}
	c := ipam.Capacity(prefixes)
	avail := uint64(1<<63 - 1)
	if c.IsUint64() && c.Uint64() < avail {
		avail = c.Uint64()
	}
	return &api.NetworkUsage{NetworkID: n.ID, Available: avail, Used: uint64(used), UsedPrefixes: uint64(children)}, nil
}

// Shared reports whether any project may take addresses from the network.
func Shared(n *api.Network) bool {
	return slices.Contains([]string{api.NetworkExternal, api.NetworkUnderlay, api.NetworkPrivateShared}, n.Type)
}
