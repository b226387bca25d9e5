package rest

import (
	"fmt"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/apierror"
	"github.com/metalforge/metalforge/pkg/store"
)

// BMCCommandList is the queue a BMC agent pulls.
type BMCCommandList struct {
	Items []*api.BMCCommand `json:"items"`
}

// Routes for partition components: the BMC agent pulls commands and reports power state, the switch
// agent registers its switch. Service tokens with a partition act only on that partition.
func (s *Server) bmcRoutes() []route {
	return []route{
		op("GET", "/v1/bmc/command", "listBMCCommands", "Pending BMC commands of a partition", service, s.pendingCommands).withQuery("partition"),
		op("POST", "/v1/bmc/command/{id}/done", "doneBMCCommand", "Mark a BMC command as executed", service, s.commandDone),
		op("POST", "/v1/machine/{id}/bmc", "reportBMC", "Report the BMC power state of a machine", service, s.reportBMC),
		op("POST", "/v1/switch/register", "registerSwitch", "Register or update a switch (switch agent)", service, s.registerSwitch),
	}
}

// partitionOf returns the partition a service caller acts on: its token's, or the requested one for
// admins and unscoped service tokens.
func partitionOf(c *call, requested string) (string, error) {
	if c.p.PartitionID == "" {
		return requested, nil
	}
	if requested != "" && requested != c.p.PartitionID {
		return "", fmt.Errorf("token is scoped to partition %s: %w", c.p.PartitionID, apierror.ErrForbidden)
	}
	return c.p.PartitionID, nil
}

func (s *Server) pendingCommands(c *call, _ *none) (*BMCCommandList, error) {
	p, err := partitionOf(c, c.r.URL.Query().Get("partition"))
	if err != nil {
		return nil, err
	}
	if p == "" {
		return nil, apierror.Invalid("query parameter partition is required")
	}
	cmds, err := s.cfg.Machines.PendingCommands(c.ctx, p)
	if err != nil {
		return nil, err
	}
	return &BMCCommandList{Items: cmds}, nil
}

func (s *Server) commandDone(c *call, done *api.BMCCommandDone) (*api.BMCCommand, error) {
	return s.cfg.Machines.CommandDone(c.ctx, c.p.PartitionID, c.path("id"), *done)
}

func (s *Server) reportBMC(c *call, r *api.BMCReport) (*api.Machine, error) {
	m, err := s.cfg.Machines.Get(c.ctx, c.path("id"))
	if err != nil {
		return nil, err
	}
	if _, err := partitionOf(c, m.PartitionID); err != nil {
		return nil, notFound("machine", m.ID)
	}
	return s.cfg.Machines.ReportBMC(c.ctx, m.ID, *r)
}

func (s *Server) registerSwitch(c *call, sw *api.Switch) (*api.Switch, error) {
	p, err := partitionOf(c, sw.PartitionID)
	if err != nil {
		return nil, err
	}
	sw.PartitionID = p
	if err := validID(sw.ID); err != nil {
		return nil, err
	}
	err = s.cfg.Store.Write(c.ctx, func(tx store.Tx) error {
		if err := validateSwitch(c.ctx, tx, sw, nil); err != nil {
			return err
		}
		old, err := tx.Switches().Get(c.ctx, sw.ID)
		if err != nil {
			return tx.Switches().Create(c.ctx, sw)
		}
		if old.PartitionID != sw.PartitionID {
			return apierror.Invalid("switch %s is in partition %s", sw.ID, old.PartitionID)
		}
		// The agent owns ports, OS and sync state; metal-api owns the machine connections.
		sw.Meta.Created, sw.Meta.Version = old.Created, old.Version
		sw.Connections = old.Connections
		return tx.Switches().Update(c.ctx, sw)
	})
	return sw, err
}
