package infrastructure

import (
	"context"
	"fmt"
	"net/http"

	extensionscontroller "github.com/gardener/gardener/extensions/pkg/controller"
	extensionsv1alpha1 "github.com/gardener/gardener/pkg/apis/extensions/v1alpha1"
	"github.com/go-logr/logr"

	metalclient "github.com/metalforge/metalforge/pkg/client"
	ipops "github.com/metalforge/metalforge/pkg/client/metalapi/ip"
	machineops "github.com/metalforge/metalforge/pkg/client/metalapi/machine"
	networkops "github.com/metalforge/metalforge/pkg/client/metalapi/network"
)

// Delete frees the firewall, releases the egress IPs and deletes the network. Each step finds its
// objects by the cluster tag or label, so a retry after a crash anywhere picks up what is left and
// an object that is already gone counts as done.
func (a *Actuator) Delete(ctx context.Context, log logr.Logger, infra *extensionsv1alpha1.Infrastructure, cluster *extensionscontroller.Cluster) error {
	s, err := a.newScope(ctx, log, infra, cluster)
	if err != nil {
		return err
	}
	return a.run(ctx, s, deleteSteps(a))
}

// ForceDelete is Delete that never fails: what can't be released is logged and left behind.
func (a *Actuator) ForceDelete(ctx context.Context, log logr.Logger, infra *extensionsv1alpha1.Infrastructure, cluster *extensionscontroller.Cluster) error {
	s, err := a.newScope(ctx, log, infra, cluster)
	if err != nil {
		log.Info("Force delete leaves metal-api objects behind", "error", err.Error())
		return nil
	}
	for _, st := range deleteSteps(a) {
		err := st.run(ctx, s)
		s.state.record(st.name, err, a.now())
		if err != nil {
			log.Info("Force delete step failed, continuing", "step", st.name, "error", err.Error())
		}
	}
	if err := a.persist(ctx, s, nil); err != nil {
		log.Info("Force delete could not record its state", "error", err.Error())
	}
	return nil
}

// deleteSteps are the release steps, the reconcile steps in reverse.
func deleteSteps(a *Actuator) []step {
	return []step{
		{"delete-" + StepFirewall, a.deleteFirewall},
		{"delete-" + StepEgressIPs, a.deleteEgressIPs},
		{"delete-" + StepNetwork, a.deleteNetwork},
	}
}

func (a *Actuator) deleteFirewall(ctx context.Context, s *scope) error {
	fws, err := s.firewalls(ctx)
	if err != nil {
		return err
	}
	for _, m := range fws {
		_, err := s.api.Machine.FreeMachineContext(ctx, machineops.NewFreeMachineParams().WithID(m.ID), nil)
		// 404: gone; 503 "not allocated": freed by someone else since the find.
		if err != nil && !isNotFound(err) && !metalclient.IsStatus(err, http.StatusServiceUnavailable) {
			return apiError("free firewall "+m.ID, err)
		}
		s.log.Info("Freed firewall", "machine", m.ID)
	}
	s.state.FirewallID = ""
	return nil
}

func (a *Actuator) deleteEgressIPs(ctx context.Context, s *scope) error {
	ips, err := s.clusterIPs(ctx, TagEgress)
	if err != nil {
		return err
	}
	for _, ip := range ips {
		if ip.MachineID != "" {
			return fmt.Errorf("egress ip %s is still used by machine %s", ip.Address, ip.MachineID)
		}
		if _, err := s.api.IP.ReleaseIPContext(ctx, ipops.NewReleaseIPParams().WithID(ip.ID), nil); err != nil && !isNotFound(err) {
			return apiError("release egress ip "+ip.Address, err)
		}
		s.log.Info("Released egress IP", "ip", ip.Address)
	}
	s.state.EgressIPs = nil
	return nil
}

func (a *Actuator) deleteNetwork(ctx context.Context, s *scope) error {
	nets, err := s.clusterNetworks(ctx)
	if err != nil {
		return err
	}
	for _, n := range nets {
		// 409 while machines (workers not yet freed) hold addresses in it: the step fails and is retried.
		if _, err := s.api.Network.DeleteNetworkContext(ctx, networkops.NewDeleteNetworkParams().WithID(n.ID), nil); err != nil && !isNotFound(err) {
			return apiError("delete network "+n.ID, err)
		}
		s.log.Info("Deleted private network", "network", n.ID)
	}
	s.state.NetworkID, s.state.NodeCIDR = "", ""
	return nil
}
