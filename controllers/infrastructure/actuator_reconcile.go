package infrastructure

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"

	extensionscontroller "github.com/gardener/gardener/extensions/pkg/controller"
	v1beta1helper "github.com/gardener/gardener/pkg/api/core/v1beta1/helper"
	gardencorev1beta1 "github.com/gardener/gardener/pkg/apis/core/v1beta1"
	extensionsv1alpha1 "github.com/gardener/gardener/pkg/apis/extensions/v1alpha1"
	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/metalforge/metalforge/pkg/apis/metal"
	metalclient "github.com/metalforge/metalforge/pkg/client"
	ipops "github.com/metalforge/metalforge/pkg/client/metalapi/ip"
	machineops "github.com/metalforge/metalforge/pkg/client/metalapi/machine"
	networkops "github.com/metalforge/metalforge/pkg/client/metalapi/network"
	"github.com/metalforge/metalforge/pkg/client/wire"
)

// Reconcile allocates (or finds) the network, the egress IPs and the firewall, then writes the status.
func (a *Actuator) Reconcile(ctx context.Context, log logr.Logger, infra *extensionsv1alpha1.Infrastructure, cluster *extensionscontroller.Cluster) error {
	s, err := a.newScope(ctx, log, infra, cluster)
	if err != nil {
		return err
	}
	err = a.run(ctx, s, []step{
		{StepNetwork, a.ensureNetwork},
		{StepEgressIPs, a.ensureEgressIPs},
		{StepFirewall, a.ensureFirewall},
	})
	if err != nil {
		return err
	}
	return a.persist(ctx, s, a.status(s))
}

// ensureNetwork finds the cluster's private network by label or allocates it.
func (a *Actuator) ensureNetwork(ctx context.Context, s *scope) error {
	nets, err := s.clusterNetworks(ctx)
	if err != nil {
		return err
	}
	var n *wire.Network
	if len(nets) > 0 {
		n = nets[0]
	} else {
		req := &wire.NetworkAllocateRequest{
			Name:        networkName(s),
			Description: "private network of shoot " + shootName(s.cluster),
			ProjectID:   s.cfg.ProjectID,
			PartitionID: s.cfg.PartitionID,
			Labels:      map[string]string{ClusterLabel: s.clusterID},
		}
		if want := wantedNodes(s.cluster); want.IsValid() {
			req.PrefixLength = int64(want.Bits())
		}
		r, err := s.api.Network.AllocateNetworkContext(ctx, networkops.NewAllocateNetworkParams().WithBody(req), nil)
		if err != nil {
			return apiError("allocate network", err)
		}
		n = r.Payload
		s.log.Info("Allocated private network", "network", n.ID, "prefixes", n.Prefixes)
	}
	if len(n.Prefixes) == 0 {
		return fmt.Errorf("network %s has no prefix", n.ID)
	}
	s.state.NetworkID, s.state.NodeCIDR = n.ID, n.Prefixes[0]
	if want := wantedNodes(s.cluster); want.IsValid() && want.String() != s.state.NodeCIDR {
		// metal-api hands out the next free child prefix of the super network; it can't be asked for a
		// given one. The actual CIDR goes to status.nodesCIDR.
		s.log.Info("Private network differs from shoot's node CIDR", "network", n.ID, "prefix", s.state.NodeCIDR, "wanted", want.String())
	}
	return nil
}

// ensureEgressIPs gives the firewall one egress address per external network.
func (a *Actuator) ensureEgressIPs(ctx context.Context, s *scope) error {
	owned, err := s.clusterIPs(ctx, TagEgress)
	if err != nil {
		return err
	}
	var egress []EgressIP
	wanted := map[string]bool{}
	for _, nid := range s.cfg.Firewall.Networks {
		r, err := s.api.Network.GetNetworkContext(ctx, networkops.NewGetNetworkParams().WithID(nid), nil)
		if err != nil {
			return apiError("get network "+nid, err)
		}
		if r.Payload.Type != networkExternal {
			continue
		}
		wanted[nid] = true
		if pinned := pinnedIPs(s.cfg, nid); len(pinned) > 0 {
			for _, addr := range pinned {
				egress = append(egress, EgressIP{NetworkID: nid, Address: addr})
			}
			continue
		}
		i := slices.IndexFunc(owned, func(ip *wire.IP) bool { return ip.NetworkID == nid })
		if i >= 0 {
			egress = append(egress, EgressIP{NetworkID: nid, Address: owned[i].Address, Owned: true})
			continue
		}
		ar, err := s.api.IP.AllocateIPContext(ctx, ipops.NewAllocateIPParams().WithBody(&wire.IPAllocateRequest{
			NetworkID: nid, ProjectID: s.cfg.ProjectID, Type: ipStatic,
			Name: "egress-" + shootName(s.cluster), Description: "egress address of shoot " + shootName(s.cluster),
			Tags: []string{ClusterTag(s.clusterID), TagEgress}}), nil)
		if err != nil {
			return apiError("allocate egress ip in "+nid, err)
		}
		s.log.Info("Allocated egress IP", "network", nid, "ip", ar.Payload.Address)
		egress = append(egress, EgressIP{NetworkID: nid, Address: ar.Payload.Address, Owned: true})
	}
	// Addresses of networks no longer configured (or now pinned) go back, unless a machine holds them.
	for _, ip := range owned {
		if slices.ContainsFunc(egress, func(e EgressIP) bool { return e.Address == ip.Address }) || ip.MachineID != "" {
			continue
		}
		if _, err := s.api.IP.ReleaseIPContext(ctx, ipops.NewReleaseIPParams().WithID(ip.ID), nil); err != nil && !isNotFound(err) {
			return apiError("release unused egress ip "+ip.Address, err)
		}
		s.log.Info("Released unused egress IP", "ip", ip.Address)
	}
	if len(wanted) == 0 {
		return fmt.Errorf("firewall.networks %v name no external network: the firewall needs one for egress", s.cfg.Firewall.Networks)
	}
	s.state.EgressIPs = egress
	return nil
}

// ensureFirewall finds the cluster's firewall by tag or allocates it.
func (a *Actuator) ensureFirewall(ctx context.Context, s *scope) error {
	fws, err := s.firewalls(ctx)
	if err != nil {
		return err
	}
	if len(fws) > 0 {
		slices.SortFunc(fws, func(x, y *wire.Machine) int { return strings.Compare(x.ID, y.ID) })
		s.state.FirewallID = fws[0].ID
		if len(fws) > 1 {
			s.log.Info("Cluster has more than one firewall", "firewalls", len(fws), "using", fws[0].ID)
		}
		return nil
	}
	userData, err := a.firewallUserData(ctx, s)
	if err != nil {
		return err
	}
	nets := []*wire.AllocationNetwork{{NetworkID: s.state.NetworkID}}
	for _, nid := range s.cfg.Firewall.Networks {
		an := &wire.AllocationNetwork{NetworkID: nid}
		for _, e := range s.state.EgressIPs {
			if e.NetworkID == nid {
				an.Ips = append(an.Ips, e.Address)
			}
		}
		nets = append(nets, an)
	}
	req := &wire.MachineAllocateRequest{
		Name:        shootName(s.cluster) + "-firewall",
		Hostname:    hostname(shootName(s.cluster) + "-firewall"),
		Description: "firewall of shoot " + shootName(s.cluster),
		ProjectID:   s.cfg.ProjectID,
		PartitionID: s.cfg.PartitionID,
		SizeID:      s.cfg.Firewall.Size,
		ImageID:     s.cfg.Firewall.Image,
		Role:        roleFirewall,
		Networks:    nets,
		Tags:        []string{ClusterTag(s.clusterID), TagFirewall},
		UserData:    userData,
	}
	if k := strings.TrimSpace(string(s.infra.Spec.SSHPublicKey)); k != "" {
		req.SSHPubKeys = []string{k}
	}
	r, err := s.api.Machine.AllocateMachineContext(ctx, machineops.NewAllocateMachineParams().WithBody(req), nil)
	if err != nil {
		if metalclient.IsStatus(err, http.StatusServiceUnavailable) {
			// No waiting machine of the size (or the project's quota is used up): gardener shows it
			// as depleted resources and retries.
			return v1beta1helper.NewErrorWithCodes(apiError("allocate firewall", err), gardencorev1beta1.ErrorInfraResourcesDepleted)
		}
		return apiError("allocate firewall", err)
	}
	s.state.FirewallID = r.Payload.ID
	s.log.Info("Allocated firewall", "machine", r.Payload.ID, "size", s.cfg.Firewall.Size, "image", s.cfg.Firewall.Image)
	return nil
}

// firewallUserData is the kubeconfig for firewall-controller, when the secret exists.
func (a *Actuator) firewallUserData(ctx context.Context, s *scope) (string, error) {
	sec := &corev1.Secret{}
	err := a.client.Get(ctx, client.ObjectKey{Namespace: s.infra.Namespace, Name: FirewallKubeconfigSecret}, sec)
	switch {
	case apierrors.IsNotFound(err):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("get firewall kubeconfig secret: %w", err)
	}
	return string(sec.Data["kubeconfig"]), nil
}

// status fills the Infrastructure status from the state.
func (a *Actuator) status(s *scope) func(*extensionsv1alpha1.InfrastructureStatus) error {
	return func(st *extensionsv1alpha1.InfrastructureStatus) error {
		ps := &metal.InfrastructureStatus{Firewall: metal.FirewallStatus{MachineID: s.state.FirewallID}, NetworkID: s.state.NetworkID}
		for _, e := range s.state.EgressIPs {
			ps.EgressIPs = append(ps.EgressIPs, metal.EgressIP{NetworkID: e.NetworkID, IP: e.Address})
		}
		raw, err := a.codec.EncodeJSON(ps)
		if err != nil {
			return err
		}
		st.ProviderStatus = &runtime.RawExtension{Raw: raw}
		cidr := s.state.NodeCIDR
		st.NodesCIDR = &cidr
		if st.Networking == nil {
			st.Networking = &extensionsv1alpha1.InfrastructureStatusNetworking{}
		}
		st.Networking.Nodes = []string{cidr}
		st.EgressCIDRs = nil
		for _, e := range s.state.EgressIPs {
			if a, err := netip.ParseAddr(e.Address); err == nil {
				st.EgressCIDRs = append(st.EgressCIDRs, netip.PrefixFrom(a, a.BitLen()).String())
			}
		}
		return nil
	}
}

// pinnedIPs are the egress addresses firewall.egressRules pin for a network.
func pinnedIPs(cfg *metal.InfrastructureConfig, networkID string) []string {
	var out []string
	for _, r := range cfg.Firewall.EgressRules {
		if r.NetworkID == networkID {
			out = append(out, r.IPs...)
		}
	}
	return out
}

// wantedNodes is shoot.spec.networking.nodes, or an invalid prefix.
func wantedNodes(c *extensionscontroller.Cluster) netip.Prefix {
	if c == nil || c.Shoot == nil || c.Shoot.Spec.Networking == nil || c.Shoot.Spec.Networking.Nodes == nil {
		return netip.Prefix{}
	}
	p, err := netip.ParsePrefix(*c.Shoot.Spec.Networking.Nodes)
	if err != nil {
		return netip.Prefix{}
	}
	return p.Masked()
}

func shootName(c *extensionscontroller.Cluster) string {
	if c != nil && c.Shoot != nil && c.Shoot.Name != "" {
		return c.Shoot.Name
	}
	if c != nil {
		return c.ObjectMeta.Name
	}
	return "shoot"
}

func networkName(s *scope) string { return shootName(s.cluster) + "-" + s.cfg.PartitionID }

// hostname makes a DNS label of s (lower case, [a-z0-9-], at most 63 characters).
func hostname(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	out := strings.Trim(b.String(), "-")
	if len(out) > 63 {
		out = strings.TrimRight(out[:63], "-")
	}
	return out
}
