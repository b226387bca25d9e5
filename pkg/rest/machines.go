package rest

import (
	"fmt"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/apierror"
	"github.com/metalforge/metalforge/pkg/machine"
	"github.com/metalforge/metalforge/pkg/store"
)

func (s *Server) machineRoutes() []route {
	return []route{
		op("GET", "/v1/machine", "listMachines", "List machines visible to the caller", user, s.listMachines).withQuery("limit", "cursor"),
		op("POST", "/v1/machine/find", "findMachines", "Find machines by filters", user, s.findMachines),
		op("GET", "/v1/machine/{id}", "getMachine", "Get a machine", user, s.getMachine),
		op("DELETE", "/v1/machine/{id}", "deleteMachine", "Delete an unallocated machine", admin, s.deleteMachine),
		op("POST", "/v1/machine/allocate", "allocateMachine", "Allocate a machine to a project", user, s.allocateMachine).created(),
		op("POST", "/v1/machine/{id}/free", "freeMachine", "Free a machine: release its addresses, wipe and reuse it", user, s.freeMachine),
		op("POST", "/v1/machine/{id}/reinstall", "reinstallMachine", "Reinstall a machine with another image, keeping data disks", user, s.reinstallMachine),
		op("PUT", "/v1/machine/{id}/tags", "setMachineTags", "Replace the tags of an allocated machine", user, s.setMachineTags),
		op("POST", "/v1/machine/{id}/state", "setMachineState", "Lock, taint or clear a machine", admin, s.setMachineState),
		op("POST", "/v1/machine/{id}/power/{command}", "powerMachine", "Queue a BMC command (on, off, cycle, reset, pxe, disk, led-on, led-off)", user, s.powerMachine),
		op("GET", "/v1/machine/{id}/events", "getMachineEvents", "Provisioning event log of a machine", user, s.machineEvents),
		op("POST", "/v1/machine/{id}/event", "addMachineEvent", "Add a provisioning event (partition components)", service, s.addMachineEvent),
	}
}

// canSee: admins and services see every machine, project members only their project's.
func canSee(c *call, m *api.Machine) bool {
	if c.p.IsAdmin() || c.p.Role == api.RoleService {
		return true
	}
	return m.Allocation != nil && c.p.CanRead(m.Allocation.ProjectID)
}

func projectOf(m *api.Machine) string {
	if m.Allocation == nil {
		return ""
	}
	return m.Allocation.ProjectID
}

func redactAll(p *api.Page[*api.Machine]) *api.Page[*api.Machine] {
	for _, m := range p.Items {
		machine.Redact(m)
	}
	return p
}

func (s *Server) listMachines(c *call, _ *none) (*api.Page[*api.Machine], error) {
	q := store.Query{}
	if !c.p.IsAdmin() && c.p.Role != api.RoleService {
		q.Project = c.p.ProjectID
	}
	p, err := listPage(c, store.Tx.Machines, q, func(m *api.Machine) bool { return canSee(c, m) })
	if err != nil {
		return nil, err
	}
	return redactAll(p), nil
}

func (s *Server) findMachines(c *call, req *api.MachineFindRequest) (*api.Page[*api.Machine], error) {
	if req.Limit < 0 || req.Limit > maxLimit {
		return nil, apierror.Invalid("limit must be 0-%d", maxLimit)
	}
	if req.Limit == 0 {
		req.Limit = maxLimit
	}
	if !c.p.IsAdmin() && c.p.Role != api.RoleService {
		if req.ProjectID != "" && req.ProjectID != c.p.ProjectID {
			return nil, fmt.Errorf("find machines of project %s: %w", req.ProjectID, apierror.ErrForbidden)
		}
		req.ProjectID = c.p.ProjectID
	}
	p, err := s.cfg.Machines.Find(c.ctx, *req, func(m *api.Machine) bool { return canSee(c, m) })
	if err != nil {
		return nil, err
	}
	return redactAll(p), nil
}

// visibleMachine loads a machine and hides it from callers of other projects.
func (s *Server) visibleMachine(c *call) (*api.Machine, error) {
	m, err := s.cfg.Machines.Get(c.ctx, c.path("id"))
	if err != nil {
		return nil, err
	}
	if !canSee(c, m) {
		return nil, notFound("machine", c.path("id"))
	}
	return m, nil
}

// writableMachine also requires write permission on the machine's project.
func (s *Server) writableMachine(c *call) (*api.Machine, error) {
	m, err := s.visibleMachine(c)
	if err != nil {
		return nil, err
	}
	if !c.p.IsAdmin() && !c.p.CanWrite(projectOf(m)) {
		return nil, fmt.Errorf("machine %s: %w", m.ID, apierror.ErrForbidden)
	}
	return m, nil
}

func (s *Server) getMachine(c *call, _ *none) (*api.Machine, error) {
	m, err := s.visibleMachine(c)
	if err != nil {
		return nil, err
	}
	return machine.Redact(m), nil
}

func (s *Server) deleteMachine(c *call, _ *none) (*api.Machine, error) {
	m, err := s.cfg.Machines.Delete(c.ctx, c.path("id"))
	if err != nil {
		return nil, err
	}
	return machine.Redact(m), nil
}

func (s *Server) allocateMachine(c *call, req *api.MachineAllocateRequest) (*api.Machine, error) {
	if req.ProjectID == "" && c.p.ProjectID != "" {
		req.ProjectID = c.p.ProjectID
	}
	if !c.p.CanWrite(req.ProjectID) {
		return nil, fmt.Errorf("allocate in project %q: %w", req.ProjectID, apierror.ErrForbidden)
	}
	if req.MachineID != "" && !c.p.IsAdmin() {
		return nil, fmt.Errorf("allocating a named machine needs the admin role: %w", apierror.ErrForbidden)
	}
	m, err := s.cfg.Machines.Allocate(c.ctx, *req, c.p.TokenID)
	if err != nil {
		return nil, err
	}
	return machine.Redact(m), nil
}

func (s *Server) freeMachine(c *call, _ *none) (*api.Machine, error) {
	if _, err := s.writableMachine(c); err != nil {
		return nil, err
	}
	m, err := s.cfg.Machines.Free(c.ctx, c.path("id"))
	if err != nil {
		return nil, err
	}
	return machine.Redact(m), nil
}

func (s *Server) reinstallMachine(c *call, req *api.MachineReinstallRequest) (*api.Machine, error) {
	if _, err := s.writableMachine(c); err != nil {
		return nil, err
	}
	m, err := s.cfg.Machines.Reinstall(c.ctx, c.path("id"), *req)
	if err != nil {
		return nil, err
	}
	return machine.Redact(m), nil
}

func (s *Server) setMachineTags(c *call, req *api.MachineTagsRequest) (*api.Machine, error) {
	m, err := s.writableMachine(c)
	if err != nil {
		return nil, err
	}
	if m.Allocation == nil && !c.p.IsAdmin() {
		return nil, fmt.Errorf("machine %s: %w", m.ID, apierror.ErrForbidden)
	}
	m, err = s.cfg.Machines.SetTags(c.ctx, m.ID, req.Tags)
	if err != nil {
		return nil, err
	}
	return machine.Redact(m), nil
}

func (s *Server) setMachineState(c *call, req *api.MachineStateRequest) (*api.Machine, error) {
	m, err := s.cfg.Machines.SetState(c.ctx, c.path("id"), *req)
	if err != nil {
		return nil, err
	}
	return machine.Redact(m), nil
}

func (s *Server) powerMachine(c *call, _ *none) (*api.BMCCommand, error) {
	m, err := s.writableMachine(c)
	if err != nil {
		return nil, err
	}
	if m.Allocation == nil && !c.p.IsAdmin() {
		return nil, fmt.Errorf("machine %s: %w", m.ID, apierror.ErrForbidden)
	}
	return s.cfg.Machines.Power(c.ctx, m.ID, c.path("command"))
}

func (s *Server) machineEvents(c *call, _ *none) (*api.MachineEventLog, error) {
	if _, err := s.visibleMachine(c); err != nil {
		return nil, err
	}
	return s.cfg.Machines.EventLog(c.ctx, c.path("id"))
}

func (s *Server) addMachineEvent(c *call, ev *api.EventRequest) (*api.MachineEventLog, error) {
	m, err := s.cfg.Machines.Get(c.ctx, c.path("id"))
	if err != nil {
		return nil, err
	}
	if c.p.PartitionID != "" && m.PartitionID != c.p.PartitionID {
		return nil, notFound("machine", m.ID)
	}
	if err := s.cfg.Machines.Event(c.ctx, m.ID, *ev); err != nil {
		return nil, err
	}
	return s.cfg.Machines.EventLog(c.ctx, m.ID)
}
