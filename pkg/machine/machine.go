// Package machine is metal-api's machine service: registration by the hammer, the provisioning
// event log, waiting, allocation (machine, network, IPs, ASN and VRF in one store transaction),
// free, reinstall, operator state, BMC command queue, and the liveliness job.
package machine

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"time"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/store"
)

// Pools of unique numbers.
const (
	PoolASN = "asn"
	// ASNMin..ASNMax is the private 32-bit ASN range machines get (RFC 6996).
	ASNMin = 4200000000
	ASNMax = 4294967294
)

// Config wires a Service.
type Config struct {
	Store store.Store
	Log   *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// RecheckInterval bounds how long Wait relies on change notifications alone (default 10s).
	RecheckInterval time.Duration
}

// Service implements the machine operations.
type Service struct {
	store   store.Store
	log     *slog.Logger
	now     func() time.Time
	recheck time.Duration
}

// New returns a Service.
func New(cfg Config) *Service {
	s := &Service{store: cfg.Store, log: cfg.Log, now: cfg.Now, recheck: cfg.RecheckInterval}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.recheck == 0 {
		s.recheck = 10 * time.Second
	}
	return s
}

// Redact removes secrets from a machine before it leaves the API.
func Redact(m *api.Machine) *api.Machine {
	m.BMC.Password = ""
	return m
}

// Get returns a machine.
func (s *Service) Get(ctx context.Context, id string) (*api.Machine, error) {
	var m *api.Machine
	err := s.store.Read(ctx, func(tx store.Tx) error {
		var err error
		m, err = tx.Machines().Get(ctx, id)
		return err
	})
	return m, err
}

// Find returns the machines matching every set field of req, a page at a time. visible filters
// what the caller may see.
func (s *Service) Find(ctx context.Context, req api.MachineFindRequest, visible func(*api.Machine) bool) (*api.Page[*api.Machine], error) {
	q := store.Query{Partition: req.PartitionID, Key1: req.SizeID, Key3: req.RackID, Project: req.ProjectID}
	if req.Allocated != nil && *req.Allocated {
		q.Key2 = store.MachineStatusAllocated
	}
	limit := req.Limit
	page := &api.Page[*api.Machine]{Items: []*api.Machine{}}
	err := s.store.Read(ctx, func(tx store.Tx) error {
		if req.MAC != "" {
			mac := req.MAC
			if hw, err := net.ParseMAC(mac); err == nil {
				mac = hw.String() // stored as Register normalised it
			}
			id, err := tx.Lookup(ctx, store.KindMachine, "mac:"+mac)
			if err != nil {
				return nil // no machine has it
			}
			if req.ID != "" && req.ID != id {
				return nil
			}
			req.ID = id
		}
		if req.ID != "" {
			m, err := tx.Machines().Get(ctx, req.ID)
			if err == nil && matches(m, req) && visible(m) {
				page.Items = append(page.Items, m)
			}
			return nil
		}
		q.After = req.Cursor
		batch := 500
		if limit > 0 && limit < batch {
			batch = limit
		}
		for {
			q.Limit = batch
			ms, next, err := tx.Machines().List(ctx, q)
			if err != nil {
				return err
			}
			for i, m := range ms {
				if !matches(m, req) || !visible(m) {
					continue
				}
				page.Items = append(page.Items, m)
				if limit > 0 && len(page.Items) == limit {
					if i < len(ms)-1 || next != "" {
						page.Next = m.ID
					}
					return nil
				}
			}
			if next == "" {
				return nil
			}
			q.After = next
		}
	})
	if err != nil {
		return nil, fmt.Errorf("find machines: %w", err)
	}
	return page, nil
}

func matches(m *api.Machine, r api.MachineFindRequest) bool {
	a := m.Allocation
	switch {
	case r.Name != "" && m.Name != r.Name:
		return false
	// The store query filters these already, but a lookup by ID or MAC does not use it.
	case r.PartitionID != "" && m.PartitionID != r.PartitionID, r.SizeID != "" && m.SizeID != r.SizeID,
		r.RackID != "" && m.RackID != r.RackID, r.ProjectID != "" && (a == nil || a.ProjectID != r.ProjectID):
		return false
	case r.Allocated != nil && *r.Allocated != (a != nil):
		return false
	case r.Waiting != nil && *r.Waiting != m.Waiting:
		return false
	case r.State != nil && *r.State != m.State.Value:
		return false
	case r.Liveliness != "" && r.Liveliness != m.Liveliness:
		return false
	}
	for _, t := range r.Tags {
		if !slices.Contains(m.Tags, t) {
			return false
		}
	}
	if r.Hostname == "" && r.ImageID == "" && r.NetworkID == "" && r.IP == "" && r.Role == "" {
		return true
	}
	if a == nil {
		return false
	}
	if (r.Hostname != "" && a.Hostname != r.Hostname) || (r.ImageID != "" && a.ImageID != r.ImageID) ||
		(r.Role != "" && a.Role != r.Role) {
		return false
	}
	if r.NetworkID != "" && !slices.ContainsFunc(a.Networks, func(n api.MachineNetwork) bool { return n.NetworkID == r.NetworkID }) {
		return false
	}
	if r.IP != "" && !slices.ContainsFunc(a.Networks, func(n api.MachineNetwork) bool { return slices.Contains(n.IPs, r.IP) }) {
		return false
	}
	return true
}

// EventLog returns the provisioning history of a machine.
func (s *Service) EventLog(ctx context.Context, id string) (*api.MachineEventLog, error) {
	var log *api.MachineEventLog
	err := s.store.Read(ctx, func(tx store.Tx) error {
		if _, err := tx.Machines().Get(ctx, id); err != nil {
			return err
		}
		var err error
		log, err = tx.EventLogs().Get(ctx, id)
		if err != nil {
			log = &api.MachineEventLog{Meta: api.Meta{ID: id}, Events: []api.ProvisioningEvent{}}
			return nil
		}
		return nil
	})
	return log, err
}
