package network

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/apierror"
	"github.com/metalforge/metalforge/pkg/ipam"
	"github.com/metalforge/metalforge/pkg/store"
)

// AllocateIP takes an address in a network for a project: req.Address if set (it must be free and
// usable), else the next free one. machineID marks addresses of a machine allocation.
func AllocateIP(ctx context.Context, tx store.Tx, req api.IPAllocateRequest, machineID string) (*api.IP, error) {
	if req.Type == "" {
		req.Type = api.IPEphemeral
	}
	if req.Type != api.IPEphemeral && req.Type != api.IPStatic {
		return nil, apierror.Invalid("ip type %q is not ephemeral or static", req.Type)
	}
	if req.ProjectID == "" {
		return nil, apierror.Invalid("ip allocation needs a project")
	}
	if _, err := tx.Projects().Get(ctx, req.ProjectID); err != nil {
		return nil, notFoundIsInvalid(err)
	}
	n, err := tx.Networks().Get(ctx, req.NetworkID)
	if err != nil {
		return nil, notFoundIsInvalid(err)
	}
	if n.Type == api.NetworkSuper {
		return nil, apierror.Invalid("network %s is a super network: allocate a private network from it", n.ID)
	}
	if !Shared(n) && n.ProjectID != req.ProjectID {
		return nil, fmt.Errorf("network %s belongs to another project: %w", n.ID, apierror.ErrForbidden)
	}
	prefixes, err := ipam.ParsePrefixes(n.Prefixes)
	if err != nil {
		return nil, fmt.Errorf("network %s: %w", n.ID, err)
	}
	ip := &api.IP{
		Meta:      api.Meta{Name: req.Name, Description: req.Description},
		NetworkID: n.ID,
		ProjectID: req.ProjectID,
		Type:      req.Type,
		Tags:      req.Tags,
		MachineID: machineID,
	}
	if req.Address != "" {
		addr, err := netip.ParseAddr(req.Address)
		if err != nil {
			return nil, apierror.Invalid("address %q: %v", req.Address, err)
		}
		if !ipam.Usable(prefixes, addr) {
			return nil, apierror.Invalid("address %s is not a usable address of network %s", addr, n.ID)
		}
		ip.ID, ip.Address = addr.String(), addr.String()
		if err := tx.IPs().Create(ctx, ip); err != nil {
			if errors.Is(err, store.ErrDuplicate) {
				return nil, fmt.Errorf("address %s is already allocated: %w", addr, store.ErrDuplicate)
			}
			return nil, err
		}
		return ip, nil
	}
	used, err := usedAddrs(ctx, tx, n.ID)
	if err != nil {
		return nil, err
	}
	// Concurrent transactions (other replicas) may take the address we computed; each lost race
	// reveals one taken address, so try the next instead of restarting the whole transaction.
	for range 64 {
		addr, err := ipam.NextFreeIP(prefixes, func(a netip.Addr) bool { _, ok := used[a]; return ok })
		if errors.Is(err, ipam.ErrExhausted) {
			return nil, fmt.Errorf("network %s has no free address: %w", n.ID, store.ErrExhausted)
		}
		if err != nil {
			return nil, err
		}
		if free, err := tx.TryReserve(ctx, "ip/"+addr.String()); err != nil {
			return nil, err
		} else if !free {
			used[addr] = struct{}{} // another transaction is taking it right now
			continue
		}
		ip.ID, ip.Address = addr.String(), addr.String()
		err = tx.IPs().Create(ctx, ip)
		if errors.Is(err, store.ErrDuplicate) {
			used[addr] = struct{}{}
			continue
		}
		if err != nil {
			return nil, err
		}
		return ip, nil
	}
	return nil, fmt.Errorf("network %s: lost too many races for a free address: %w", n.ID, store.ErrConflict)
}

// CheckIPQuota fails when the project would hold more than its IP quota after taking adding more
// addresses. With a quota set it also touches the project, so concurrent allocations of the
// project are serialised on every replica.
func CheckIPQuota(ctx context.Context, tx store.Tx, projectID string, adding int) error {
	p, err := tx.Projects().Get(ctx, projectID)
	if err != nil {
		return notFoundIsInvalid(err)
	}
	if p.Quotas.IPs == nil {
		return nil
	}
	n, err := tx.IPs().Count(ctx, store.Query{Project: projectID})
	if err != nil {
		return err
	}
	if n+adding > *p.Quotas.IPs {
		return fmt.Errorf("project %s has reached its quota of %d ips: %w", projectID, *p.Quotas.IPs, apierror.ErrUnavailable)
	}
	return tx.Projects().Update(ctx, p)
}

func usedAddrs(ctx context.Context, tx store.Tx, networkID string) (map[netip.Addr]struct{}, error) {
	rows, err := tx.IPs().Rows(ctx, store.Query{Key1: networkID})
	if err != nil {
		return nil, err
	}
	used := make(map[netip.Addr]struct{}, len(rows))
	for _, r := range rows {
		if a, err := netip.ParseAddr(r.ID); err == nil { // an IP's ID is its address
			used[a] = struct{}{}
		}
	}
	return used, nil
}

// ReleaseIP frees an address. Addresses of a machine allocation are released with the machine.
func ReleaseIP(ctx context.Context, tx store.Tx, address string, force bool) (*api.IP, error) {
	ip, err := tx.IPs().Get(ctx, address)
	if err != nil {
		return nil, err
	}
	if ip.MachineID != "" && !force {
		return nil, fmt.Errorf("ip %s belongs to machine %s, free the machine: %w", address, ip.MachineID, apierror.ErrInUse)
	}
	if err := tx.IPs().Delete(ctx, address); err != nil {
		return nil, err
	}
	return ip, nil
}
