package rest

import (
	"errors"
	"time"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/apierror"
	"github.com/metalforge/metalforge/pkg/fabric"
	"github.com/metalforge/metalforge/pkg/store"
)

// maxSyncError bounds the error text a switch agent may store.
const maxSyncError = 4096

// Routes of the switch agent besides registration (bmc.go): it polls the desired state of its switch
// and reports each sync. Service tokens with a partition see only that partition's switches.
func (s *Server) fabricRoutes() []route {
	return []route{
		op("GET", "/v1/switch/{id}/desired", "getSwitchDesired", "Desired network state of a switch: PXE, tenant VRF or firewall per port (switch agent)", service, s.switchDesired),
		op("POST", "/v1/switch/{id}/sync", "reportSwitchSync", "Report a switch sync: time, duration, error, port and BGP states, LLDP neighbours (switch agent)", service, s.switchSync),
	}
}

// switchInScope fails with not found for a switch outside the caller's partition.
func switchInScope(c *call, tx store.Tx, id string) error {
	sw, err := tx.Switches().Get(c.ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return notFound("switch", id)
	}
	if err != nil {
		return err
	}
	if _, err := partitionOf(c, sw.PartitionID); err != nil {
		return notFound("switch", id)
	}
	return nil
}

func (s *Server) switchDesired(c *call, _ *none) (*fabric.SwitchDesired, error) {
	var d *fabric.SwitchDesired
	err := s.cfg.Store.Read(c.ctx, func(tx store.Tx) error {
		if err := switchInScope(c, tx, c.path("id")); err != nil {
			return err
		}
		var err error
		d, err = fabric.Desired(c.ctx, tx, c.path("id"))
		return err
	})
	return d, err
}

func (s *Server) switchSync(c *call, r *fabric.SwitchSyncReport) (*api.Switch, error) {
	if r.Duration < 0 {
		return nil, apierror.Invalid("duration %s is negative", r.Duration)
	}
	if len(r.Error) > maxSyncError {
		r.Error = r.Error[:maxSyncError]
	}
	if r.Time.IsZero() {
		r.Time = time.Now().UTC()
	}
	var sw *api.Switch
	err := s.cfg.Store.Write(c.ctx, func(tx store.Tx) error {
		if err := switchInScope(c, tx, c.path("id")); err != nil {
			return err
		}
		var err error
		sw, err = fabric.Record(c.ctx, tx, c.path("id"), r)
		return err
	})
	return sw, err
}
