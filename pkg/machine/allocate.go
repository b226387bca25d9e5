package machine

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/apierror"
	"github.com/metalforge/metalforge/pkg/id"
	"github.com/metalforge/metalforge/pkg/network"
	"github.com/metalforge/metalforge/pkg/store"
)

var hostnameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// Allocate gives a machine to a project: the one named by req.MachineID, or a waiting, alive,
// untainted machine of the size in the partition, honouring size reservations of other projects
// and spreading the project's machines over racks. Network, addresses, ASN and VRF are taken in the
// same transaction as the machine, so a failure at any step leaves nothing behind, and concurrent
// allocations never hand out anything twice (a lost race is retried by the store).
func (s *Service) Allocate(ctx context.Context, req api.MachineAllocateRequest, creator string) (*api.Machine, error) {
	if err := validateAllocate(&req); err != nil {
		return nil, err
	}
	var out *api.Machine
	err := s.store.Write(ctx, func(tx store.Tx) error {
		m, err := s.pick(ctx, tx, &req)
		if err != nil {
			return err
		}
		if err := s.checkRefs(ctx, tx, &req, m); err != nil {
			return err
		}
		alloc := &api.MachineAllocation{
			Created:            s.now().UTC(),
			Creator:            creator,
			ProjectID:          req.ProjectID,
			Name:               req.Name,
			Hostname:           req.Hostname,
			Description:        req.Description,
			ImageID:            req.ImageID,
			FilesystemLayoutID: req.FilesystemLayoutID,
			SSHPubKeys:         req.SSHPubKeys,
			UserData:           req.UserData,
			Role:               req.Role,
		}
		if alloc.Name == "" {
			alloc.Name = m.ID
		}
		if alloc.Hostname == "" {
			alloc.Hostname = alloc.Name
		}
		asn, err := tx.Acquire(ctx, PoolASN, ASNMin, ASNMax, 0, m.ID)
		if err != nil {
			return fmt.Errorf("asn: %w", err)
		}
		if alloc.Networks, err = s.attachNetworks(ctx, tx, &req, m, uint32(asn)); err != nil {
			return err
		}
		m.Allocation = alloc
		m.Waiting, m.PreAllocated = false, true
		m.Tags = mergeTags(m.Tags, req.Tags)
		if err := tx.Machines().Update(ctx, m); err != nil {
			return err
		}
		out = m
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("allocate machine: %w", err)
	}
	return out, nil
}

func validateAllocate(req *api.MachineAllocateRequest) error {
	if req.Role == "" {
		req.Role = api.RoleMachine
	}
	switch {
	case req.Role != api.RoleMachine && req.Role != api.RoleFirewall:
		return apierror.Invalid("role %q is not machine or firewall", req.Role)
	case req.ProjectID == "":
		return apierror.Invalid("allocation needs a project")
	case req.ImageID == "":
		return apierror.Invalid("allocation needs an image")
	case req.MachineID == "" && (req.PartitionID == "" || req.SizeID == ""):
		return apierror.Invalid("allocation needs a machine id, or a partition and a size")
	case req.Hostname != "" && !hostnameRE.MatchString(req.Hostname):
		return apierror.Invalid("hostname %q is not a valid DNS label", req.Hostname)
	case len(req.UserData) > 64<<10:
		return apierror.Invalid("user data is larger than 64 KiB")
	}
	for _, n := range req.Networks {
		if n.NetworkID == "" {
			return apierror.Invalid("a network of the allocation has no id")
		}
	}
	return nil
}

// pick chooses the machine inside the transaction.
func (s *Service) pick(ctx context.Context, tx store.Tx, req *api.MachineAllocateRequest) (*api.Machine, error) {
	if req.MachineID != "" {
		m, err := tx.Machines().Get(ctx, req.MachineID)
		if err != nil {
			return nil, err
		}
		if err := s.allocatable(ctx, tx, m); err != nil {
			return nil, err
		}
		if req.PartitionID != "" && req.PartitionID != m.PartitionID || req.SizeID != "" && req.SizeID != m.SizeID {
			return nil, apierror.Invalid("machine %s is in partition %s with size %s", m.ID, m.PartitionID, m.SizeID)
		}
		req.PartitionID, req.SizeID = m.PartitionID, m.SizeID
		if err := s.checkReservations(ctx, tx, req); err != nil {
			return nil, err
		}
		return m, s.checkQuota(ctx, tx, req)
	}
	if _, err := tx.Partitions().Get(ctx, req.PartitionID); err != nil {
		return nil, refInvalid(err)
	}
	if _, err := tx.Sizes().Get(ctx, req.SizeID); err != nil {
		return nil, refInvalid(err)
	}
	if err := s.checkQuota(ctx, tx, req); err != nil {
		return nil, err
	}
	candidates := store.Query{Partition: req.PartitionID, Key1: req.SizeID, Key2: store.MachineStatusWaiting}
	racks, err := tx.Machines().CountBy(ctx, candidates, "key3")
	if err != nil {
		return nil, err
	}
	waiting := 0
	for _, n := range racks {
		waiting += n
	}
	reserved, err := s.reservedForOthers(ctx, tx, req)
	if err != nil {
		return nil, err
	}
	if reserved > 0 && waiting > reserved {
		// The index counts every waiting machine, tainted, locked and dead ones too; only allocatable
		// ones are free for the reservations, or this project takes what another was promised.
		if waiting, err = s.countAllocatable(ctx, tx, candidates); err != nil {
			return nil, err
		}
	}
	if waiting <= reserved {
		return nil, fmt.Errorf("no machine of size %s waiting in partition %s (%d waiting, %d reserved for other projects): %w",
			req.SizeID, req.PartitionID, waiting, reserved, apierror.ErrUnavailable)
	}
	order, err := s.spread(ctx, tx, req, racks)
	if err != nil {
		return nil, err
	}
	for _, rack := range order {
		q := candidates
		q.Key3 = rack
		if m, err := s.pickInRack(ctx, tx, q, true); m != nil || err != nil {
			return m, err
		}
	}
	// Skipping locked rows hid the candidates concurrent allocations are looking at, but each of them
	// takes one at most: look again without skipping (the update then waits for the holder, and a
	// lost race is a conflict the store retries) before saying that none is left.
	for _, rack := range order {
		q := candidates
		q.Key3 = rack
		if m, err := s.pickInRack(ctx, tx, q, false); m != nil || err != nil {
			return m, err
		}
	}
	return nil, fmt.Errorf("no alive machine of size %s waiting in partition %s: %w", req.SizeID, req.PartitionID, apierror.ErrUnavailable)
}

// pickInRack returns an allocatable machine among the candidates of one rack, nil if there is none.
// It starts at a random ID so that concurrent allocations rarely meet, and reads one candidate row at
// a time. With skipLocked each row is locked as it is read and rows other transactions hold are
// skipped (PostgreSQL FOR UPDATE SKIP LOCKED), so concurrent allocators take different machines;
// without it, every candidate is seen and a lost race ends in a version conflict the store retries.
func (s *Service) pickInRack(ctx context.Context, tx store.Tx, q store.Query, skipLocked bool) (*api.Machine, error) {
	const maxProbes = 64
	q.Limit, q.Lock = 1, skipLocked
	start := id.New()
	q.After = start
	wrapped := false
	// The fast pass (skipLocked) gives up after maxProbes; the last pass must see the whole rack before
	// pick says that none is left (it ends when it comes round to start).
	for probes := 0; !skipLocked || probes < maxProbes; probes++ {
		rows, err := tx.Machines().Rows(ctx, q)
		if err != nil {
			return nil, err
		}
		if len(rows) == 0 || (wrapped && rows[0].ID > start) {
			if wrapped {
				return nil, nil
			}
			wrapped, q.After = true, "" // go round to the start of the rack
			continue
		}
		q.After = rows[0].ID
		m, err := tx.Machines().Get(ctx, rows[0].ID)
		if err != nil {
			return nil, err
		}
		if ok, err := s.candidate(ctx, tx, m); err != nil || ok {
			return m, err
		}
	}
	return nil, nil
}

// candidate reports whether a machine the index lists as waiting can be allocated now.
func (s *Service) candidate(ctx context.Context, tx store.Tx, m *api.Machine) (bool, error) {
	if m.State.Value != api.StateAvailable || !m.Waiting || m.Allocation != nil {
		return false, nil
	}
	return s.alive(ctx, tx, m.ID)
}

// countAllocatable counts the machines of q that can be allocated now (alive ones).
func (s *Service) countAllocatable(ctx context.Context, tx store.Tx, q store.Query) (int, error) {
	rows, err := tx.Machines().Rows(ctx, q)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range rows {
		m, err := tx.Machines().Get(ctx, r.ID)
		if err != nil {
			return 0, err
		}
		if ok, err := s.candidate(ctx, tx, m); err != nil {
			return 0, err
		} else if ok {
			n++
		}
	}
	return n, nil
}

func (s *Service) allocatable(ctx context.Context, tx store.Tx, m *api.Machine) error {
	switch {
	case m.Allocation != nil:
		return fmt.Errorf("machine %s is already allocated: %w", m.ID, apierror.ErrUnavailable)
	case m.State.Value != api.StateAvailable:
		return fmt.Errorf("machine %s is %s: %w", m.ID, m.State.Value, apierror.ErrUnavailable)
	case !m.Waiting:
		return fmt.Errorf("machine %s is not waiting: %w", m.ID, apierror.ErrUnavailable)
	}
	ok, err := s.alive(ctx, tx, m.ID)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("machine %s is not alive: %w", m.ID, apierror.ErrUnavailable)
	}
	return nil
}

// checkReservations refuses to allocate a named machine when the allocatable machines of its size
// are all promised to other projects' size reservations.
func (s *Service) checkReservations(ctx context.Context, tx store.Tx, req *api.MachineAllocateRequest) error {
	reserved, err := s.reservedForOthers(ctx, tx, req)
	if err != nil || reserved == 0 {
		return err
	}
	n, err := s.countAllocatable(ctx, tx, store.Query{Partition: req.PartitionID, Key1: req.SizeID, Key2: store.MachineStatusWaiting})
	if err != nil {
		return err
	}
	if n <= reserved {
		return fmt.Errorf("the %d allocatable machines of size %s in partition %s are reserved for other projects: %w",
			n, req.SizeID, req.PartitionID, apierror.ErrUnavailable)
	}
	return nil
}

func (s *Service) checkQuota(ctx context.Context, tx store.Tx, req *api.MachineAllocateRequest) error {
	p, err := tx.Projects().Get(ctx, req.ProjectID)
	if err != nil {
		return refInvalid(err)
	}
	if q := p.Quotas.Machines; q != nil {
		n, err := tx.Machines().Count(ctx, store.Query{Project: p.ID})
		if err != nil {
			return err
		}
		if n >= *q {
			return fmt.Errorf("project %s has reached its quota of %d machines: %w", p.ID, *q, apierror.ErrUnavailable)
		}
		// Serialise allocations of a project with a quota, across replicas.
		if err := tx.Projects().Update(ctx, p); err != nil {
			return err
		}
	}
	return nil
}

// reservedForOthers counts the machines of the size in the partition that other projects' size
// reservations still claim. Touching the reservations serialises allocations against them.
func (s *Service) reservedForOthers(ctx context.Context, tx store.Tx, req *api.MachineAllocateRequest) (int, error) {
	rs, _, err := tx.SizeReservations().List(ctx, store.Query{Key1: req.SizeID})
	if err != nil {
		return 0, err
	}
	reserved := 0
	for _, r := range rs {
		if !slices.Contains(r.PartitionIDs, req.PartitionID) {
			continue
		}
		if err := tx.SizeReservations().Update(ctx, r); err != nil {
			return 0, err
		}
		if r.ProjectID == req.ProjectID {
			continue
		}
		used := 0
		for _, p := range r.PartitionIDs {
			n, err := tx.Machines().Count(ctx, store.Query{Project: r.ProjectID, Partition: p, Key1: r.SizeID})
			if err != nil {
				return 0, err
			}
			used += n
		}
		reserved += max(0, r.Amount-used)
	}
	return reserved, nil
}

// spread orders the racks with waiting candidates so that racks with the fewest machines of the
// project (with req.SpreadTag: of the project's machines carrying that tag) come first, random
// among equals.
func (s *Service) spread(ctx context.Context, tx store.Tx, req *api.MachineAllocateRequest, racks map[string]int) ([]string, error) {
	mine, err := s.rackCounts(ctx, tx, req)
	if err != nil {
		return nil, err
	}
	order := make([]string, 0, len(racks))
	for r := range racks {
		order = append(order, r)
	}
	rand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	slices.SortStableFunc(order, func(a, b string) int { return mine[a] - mine[b] })
	return order, nil
}

// rackCounts counts the project's machines in the partition per rack; with req.SpreadTag only
// those carrying the tag. Tags are not indexed, so that case reads the project's machines of the
// partition (one project's share of a partition, not the whole partition).
func (s *Service) rackCounts(ctx context.Context, tx store.Tx, req *api.MachineAllocateRequest) (map[string]int, error) {
	q := store.Query{Project: req.ProjectID, Partition: req.PartitionID}
	if req.SpreadTag == "" {
		return tx.Machines().CountBy(ctx, q, "key3")
	}
	ms, _, err := tx.Machines().List(ctx, q) // no Limit: one page
	if err != nil {
		return nil, err
	}
	counts := map[string]int{}
	for _, m := range ms {
		if slices.Contains(m.Tags, req.SpreadTag) {
			counts[m.RackID]++
		}
	}
	return counts, nil
}

// checkRefs validates the image (feature for the role, not expired) and the filesystem layout.
func (s *Service) checkRefs(ctx context.Context, tx store.Tx, req *api.MachineAllocateRequest, m *api.Machine) error {
	img, err := tx.Images().Get(ctx, req.ImageID)
	if err != nil {
		return refInvalid(err)
	}
	if !slices.Contains(img.Features, req.Role) {
		// Roles and image features share their names: a firewall needs a firewall image (FRR,
		// nftables, firewall-controller), a machine a machine image.
		return apierror.Invalid("image %s has no %s feature (features %v): role %s needs an image with feature %s",
			img.ID, req.Role, img.Features, req.Role, req.Role)
	}
	if img.ExpirationDate != nil && s.now().After(*img.ExpirationDate) {
		return apierror.Invalid("image %s expired on %s", img.ID, img.ExpirationDate.Format("2006-01-02"))
	}
	if req.FilesystemLayoutID != "" {
		l, err := tx.FilesystemLayouts().Get(ctx, req.FilesystemLayoutID)
		if err != nil {
			return refInvalid(err)
		}
		if len(l.Constraints.Sizes) > 0 && !slices.Contains(l.Constraints.Sizes, m.SizeID) {
			return apierror.Invalid("filesystem layout %s is not for size %s", l.ID, m.SizeID)
		}
	}
	return nil
}

// attachNetworks resolves the allocation's networks and takes their addresses.
func (s *Service) attachNetworks(ctx context.Context, tx store.Tx, req *api.MachineAllocateRequest, m *api.Machine, asn uint32) ([]api.MachineNetwork, error) {
	wanted := slices.Clone(req.Networks)
	var nets []*api.Network
	private := 0
	for _, w := range wanted {
		n, err := tx.Networks().Get(ctx, w.NetworkID)
		if err != nil {
			return nil, refInvalid(err)
		}
		switch {
		case n.Type == api.NetworkSuper:
			return nil, apierror.Invalid("network %s is a super network and can't be attached", n.ID)
		case n.Type == api.NetworkPrivate && n.ProjectID != req.ProjectID:
			return nil, fmt.Errorf("network %s belongs to another project: %w", n.ID, apierror.ErrForbidden)
		case n.Type == api.NetworkUnderlay && req.Role != api.RoleFirewall:
			return nil, apierror.Invalid("only firewalls attach to the underlay network %s", n.ID)
		case n.PartitionID != "" && n.PartitionID != m.PartitionID:
			return nil, apierror.Invalid("network %s is in partition %s, the machine in %s", n.ID, n.PartitionID, m.PartitionID)
		}
		if n.Type == api.NetworkPrivate || n.Type == api.NetworkPrivateShared && n.ProjectID == req.ProjectID {
			private++
		}
		nets = append(nets, n)
	}
	// A firewall always stands in front of its project's private network in the partition: it
	// takes it (allocating it on first use) when the request names none.
	if private == 0 && (req.AutoNetwork || req.Role == api.RoleFirewall) {
		n, err := s.projectNetwork(ctx, tx, req.ProjectID, m.PartitionID)
		if err != nil {
			return nil, err
		}
		nets = append([]*api.Network{n}, nets...)
		wanted = append([]api.AllocationNetwork{{NetworkID: n.ID}}, wanted...)
		private++
	}
	if private != 1 {
		return nil, apierror.Invalid("an allocation needs exactly one private network of project %s, got %d", req.ProjectID, private)
	}
	if req.Role == api.RoleFirewall && !slices.ContainsFunc(nets, func(n *api.Network) bool { return n.Type == api.NetworkExternal }) {
		return nil, apierror.Invalid("a firewall needs at least one external network for its egress (SNAT) addresses")
	}
	if req.Role == api.RoleFirewall && !slices.ContainsFunc(nets, func(n *api.Network) bool { return n.Type == api.NetworkUnderlay }) {
		under, _, err := tx.Networks().List(ctx, store.Query{Partition: m.PartitionID, Key1: api.NetworkUnderlay})
		if err != nil {
			return nil, err
		}
		if len(under) == 0 {
			return nil, apierror.Invalid("partition %s has no underlay network for the firewall", m.PartitionID)
		}
		nets = append(nets, under[0])
		wanted = append(wanted, api.AllocationNetwork{NetworkID: under[0].ID})
	}
	if err := network.CheckIPQuota(ctx, tx, req.ProjectID, len(nets)); err != nil {
		return nil, err
	}
	var out []api.MachineNetwork
	var vrf uint32
	for _, n := range nets {
		if n.Type == api.NetworkPrivate || n.Type == api.NetworkPrivateShared {
			vrf = n.VRF
		}
	}
	for i, n := range nets {
		ips, err := s.takeIPs(ctx, tx, req.ProjectID, n, wanted[i].IPs, m.ID)
		if err != nil {
			return nil, err
		}
		mn := api.MachineNetwork{
			NetworkID: n.ID, NetworkType: n.Type, Prefixes: n.Prefixes, IPs: ips,
			DestinationPrefixes: n.DestinationPrefixes, VRF: n.VRF, ASN: asn, NAT: n.NAT,
			Private:  n.Type == api.NetworkPrivate || n.Type == api.NetworkPrivateShared,
			Underlay: n.Type == api.NetworkUnderlay,
		}
		if mn.VRF == 0 && mn.Private {
			mn.VRF = vrf
		}
		out = append(out, mn)
	}
	return out, nil
}

// projectNetwork returns the project's private network in the partition, allocating it on first use.
func (s *Service) projectNetwork(ctx context.Context, tx store.Tx, projectID, partitionID string) (*api.Network, error) {
	nets, _, err := tx.Networks().List(ctx, store.Query{Project: projectID, Partition: partitionID, Key1: api.NetworkPrivate, Limit: 1})
	if err != nil {
		return nil, err
	}
	if len(nets) > 0 {
		return nets[0], nil
	}
	return network.AllocatePrivate(ctx, tx, api.NetworkAllocateRequest{ProjectID: projectID, PartitionID: partitionID,
		Name: projectID + "-" + partitionID})
}

// takeIPs attaches the named addresses (which the project must already own in the network and
// which must be free of machines) or allocates the next free one.
func (s *Service) takeIPs(ctx context.Context, tx store.Tx, project string, n *api.Network, named []string, machineID string) ([]string, error) {
	if len(named) == 0 {
		ip, err := network.AllocateIP(ctx, tx, api.IPAllocateRequest{NetworkID: n.ID, ProjectID: project, Type: api.IPEphemeral}, machineID)
		if err != nil {
			return nil, err
		}
		return []string{ip.Address}, nil
	}
	var out []string
	for _, addr := range named {
		ip, err := tx.IPs().Get(ctx, addr)
		if errors.Is(err, store.ErrNotFound) {
			ip, err = network.AllocateIP(ctx, tx, api.IPAllocateRequest{NetworkID: n.ID, ProjectID: project, Address: addr, Type: api.IPStatic}, machineID)
			if errors.Is(err, store.ErrDuplicate) {
				// A concurrent transaction created the address first (PostgreSQL's unique key).
				return nil, fmt.Errorf("ip %s was just taken by another request: %w", addr, apierror.ErrInUse)
			}
			if err != nil {
				return nil, err
			}
			out = append(out, ip.Address)
			continue
		}
		if err != nil {
			return nil, err
		}
		switch {
		case ip.ProjectID != project:
			return nil, fmt.Errorf("ip %s belongs to another project: %w", addr, apierror.ErrForbidden)
		case ip.NetworkID != n.ID:
			return nil, apierror.Invalid("ip %s is not in network %s", addr, n.ID)
		case ip.MachineID != "":
			return nil, fmt.Errorf("ip %s is used by machine %s: %w", addr, ip.MachineID, apierror.ErrInUse)
		}
		ip.MachineID = machineID
		if err := tx.IPs().Update(ctx, ip); err != nil {
			return nil, err
		}
		out = append(out, ip.Address)
	}
	return out, nil
}

func refInvalid(err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return apierror.Invalid("%v", err)
	}
	return err
}

func mergeTags(a, b []string) []string {
	out := slices.Clone(a)
	for _, t := range b {
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}
