package fabric

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/store"
)

// Record stores a sync report of the switch agent inside a write transaction: the last sync, per
// port the actual and BGP state next to the desired state and VRF (recomputed here, so that the
// switch shows desired and actual side by side), and the machine NICs seen by LLDP as connections.
// Ports the report does not name keep their actual state.
func Record(ctx context.Context, tx store.Tx, switchID string, r *SwitchSyncReport) (*api.Switch, error) {
	sw, err := tx.Switches().Get(ctx, switchID)
	if err != nil {
		return nil, fmt.Errorf("record sync of switch %s: %w", switchID, err)
	}
	conns, err := lldpConnections(ctx, tx, sw, r.Neighbors)
	if err != nil {
		return nil, fmt.Errorf("record sync of switch %s: %w", switchID, err)
	}
	sw.Connections = conns
	machines, err := connected(ctx, tx, sw)
	if err != nil {
		return nil, fmt.Errorf("record sync of switch %s: %w", switchID, err)
	}
	d := desiredOf(sw, machines)
	for i := range sw.Ports {
		p := &sw.Ports[i]
		if j := slices.IndexFunc(d.Ports, func(dp SwitchPortDesired) bool { return dp.Name == p.Name }); j >= 0 {
			p.DesiredState, p.VRF = d.Ports[j].State, d.Ports[j].VRF
		}
		if j := slices.IndexFunc(r.Ports, func(rp SwitchPortReport) bool { return rp.Name == p.Name }); j >= 0 {
			p.ActualState, p.BGPState = r.Ports[j].ActualState, r.Ports[j].BGPState
		}
	}
	sw.LastSync = &api.SwitchSync{Time: r.Time, Duration: r.Duration, Error: r.Error}
	if err := tx.Switches().Update(ctx, sw); err != nil {
		return nil, fmt.Errorf("record sync of switch %s: %w", switchID, err)
	}
	return sw, nil
}

// lldpConnections adds the links the switch saw by LLDP to its connections: a neighbour whose port
// ID or chassis ID is the MAC of a registered machine's NIC (in the switch's partition) connects
// that machine to the port, replacing an older link on the port. Links learnt from the machine side
// stay; a neighbour that names no known NIC changes nothing.
func lldpConnections(ctx context.Context, tx store.Tx, sw *api.Switch, nbs []SwitchNeighbor) ([]api.SwitchConnection, error) {
	conns := slices.Clone(sw.Connections)
	for _, nb := range nbs {
		if !slices.ContainsFunc(sw.Ports, func(p api.SwitchPort) bool { return p.Name == nb.Port }) {
			continue
		}
		for _, cand := range []string{nb.PortID, nb.ChassisID} {
			hw, err := net.ParseMAC(cand)
			if err != nil {
				continue
			}
			mac := hw.String()
			id, err := tx.Lookup(ctx, store.KindMachine, "mac:"+mac)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, err
			}
			m, err := tx.Machines().Get(ctx, id)
			if err != nil {
				return nil, err
			}
			if m.PartitionID != sw.PartitionID {
				continue
			}
			c := api.SwitchConnection{Port: nb.Port, MachineID: id, NICMAC: mac}
			conns = slices.DeleteFunc(conns, func(o api.SwitchConnection) bool { return o.Port == nb.Port && o != c })
			if !slices.Contains(conns, c) {
				conns = append(conns, c)
			}
			break
		}
	}
	return conns, nil
}
