// Package infrastructure is the Infrastructure actuator of gardener-extension-provider-metal: it
// runs under gardener's extensions/pkg/controller/infrastructure controller and gives a shoot its
// place in metal-api.
//
// Reconcile runs a named, ordered task graph whose progress is written to
// Infrastructure.status.state after every step, also when a step fails:
//
//	network     the cluster's private network in the project and partition (a child of the
//	            partition's super network; prefix length from shoot.spec.networking.nodes if set)
//	egress-ips  one static IP per external network of firewall.networks (or the addresses pinned by
//	            firewall.egressRules), the firewall's SNAT sources
//	firewall    the firewall machine: role firewall, firewall.size and firewall.image, networks
//	            private + external (metal-api adds the partition's underlay), egress IPs attached
//
// then status: providerStatus (metal InfrastructureStatus with the firewall machine ID, the private
// network ID and the egress IPs),
// nodesCIDR, networking.nodes and egressCIDRs. Every step first looks its object up in metal-api by
// the cluster tag (machines, IPs) or label (networks) and allocates only when none exists, so a
// crash between an allocation and the status write neither leaks nor allocates twice; the state
// document is a record for people and migrations, never the source of truth.
//
// Delete frees the firewall, releases the egress IPs the actuator allocated (pinned ones stay with
// the project) and deletes the network, each step tolerating an object that is already gone.
// ForceDelete does the same but never fails. Migrate keeps everything (metal-api is outside the
// seed); Restore is Reconcile.
//
// The firewall's user data carries the kubeconfig firewall-controller uses to reach the shoot
// (pkg/phonehome/osinit writes it to the firewall when it is a kubeconfig): the actuator takes it
// from the secret FirewallKubeconfigSecret in the shoot's seed namespace when that exists. At the
// first infrastructure reconcile the shoot's API server does not exist yet, so the firewall starts
// without it; the controlplane actuator is expected to create that secret, and the firewall is
// reinstalled with it (not done yet).
//
// metal-api is reached with the cloudprovider secret's token and URL (keys SecretMetalAPIToken and
// SecretMetalAPIURL, pkg/mcm's names), the URL defaulting to the endpoint of the partition's
// control plane in the CloudProfileConfig.
package infrastructure

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	extensionscontroller "github.com/gardener/gardener/extensions/pkg/controller"
	extensionsv1alpha1 "github.com/gardener/gardener/pkg/apis/extensions/v1alpha1"
	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/metalforge/metalforge/pkg/apis/metal"
	"github.com/metalforge/metalforge/pkg/apis/metal/helper"
	"github.com/metalforge/metalforge/pkg/client/metalapi"
)

// FirewallKubeconfigSecret is the secret (key "kubeconfig") in the shoot's seed namespace whose
// content becomes the firewall's user data.
const FirewallKubeconfigSecret = "firewall-controller-kubeconfig"

// Config configures the actuator.
type Config struct {
	// Client reads secrets and writes Infrastructure status in the seed.
	Client client.Client
	// HTTPClient talks to metal-api (default http.DefaultClient).
	HTTPClient *http.Client
}

// Actuator implements gardener's infrastructure.Actuator for provider type metal.
type Actuator struct {
	client client.Client
	http   *http.Client
	codec  *helper.Codec
	now    func() time.Time
}

// NewActuator returns the actuator.
func NewActuator(cfg Config) *Actuator {
	return &Actuator{client: cfg.Client, http: cfg.HTTPClient, codec: helper.NewCodec(), now: time.Now}
}

// scope is one operation's view of an Infrastructure.
type scope struct {
	infra     *extensionsv1alpha1.Infrastructure
	cluster   *extensionscontroller.Cluster
	cfg       *metal.InfrastructureConfig
	profile   *metal.CloudProfileConfig
	api       *metalapi.MetalAPI
	clusterID string
	state     *State
	log       logr.Logger
}

// step is one named task of the graph.
type step struct {
	name string
	run  func(context.Context, *scope) error
}

// newScope decodes the provider configs and connects to metal-api.
func (a *Actuator) newScope(ctx context.Context, log logr.Logger, infra *extensionsv1alpha1.Infrastructure, cluster *extensionscontroller.Cluster) (*scope, error) {
	s := &scope{infra: infra, cluster: cluster, clusterID: ClusterID(cluster), log: log}
	var raw []byte
	if infra.Status.State != nil {
		raw = infra.Status.State.Raw
	}
	s.state = decodeState(raw)
	s.state.ClusterID = s.clusterID
	if infra.Spec.ProviderConfig == nil || len(infra.Spec.ProviderConfig.Raw) == 0 {
		return nil, fmt.Errorf("infrastructure %s/%s has no providerConfig", infra.Namespace, infra.Name)
	}
	s.cfg = &metal.InfrastructureConfig{}
	if err := a.codec.Decode(infra.Spec.ProviderConfig.Raw, s.cfg); err != nil {
		return nil, fmt.Errorf("infrastructure config: %w", err)
	}
	var err error
	if s.profile, err = CloudProfileConfig(a.codec, cluster); err != nil {
		return nil, err
	}
	acc, err := ReadAccess(ctx, a.client, infra.Spec.SecretRef, s.profile, s.cfg.PartitionID)
	if err != nil {
		return nil, err
	}
	if s.api, err = acc.Client(a.http); err != nil {
		return nil, err
	}
	return s, nil
}

// run runs the steps in order, recording each outcome in status.state before the next one starts.
func (a *Actuator) run(ctx context.Context, s *scope, steps []step) error {
	for _, st := range steps {
		begin := a.now()
		err := st.run(ctx, s)
		s.state.record(st.name, err, a.now())
		if perr := a.persist(ctx, s, nil); perr != nil {
			return errors.Join(err, perr)
		}
		if err != nil {
			s.log.Info("Infrastructure step failed", "step", st.name, "error", err.Error())
			return fmt.Errorf("step %s: %w", st.name, err)
		}
		s.log.Info("Infrastructure step done", "step", st.name, "took", a.now().Sub(begin).Round(time.Millisecond).String())
	}
	return nil
}

// persist writes status.state (and, through mutate, more status fields) with a merge patch, so it
// does not race gardener's own lastOperation updates.
func (a *Actuator) persist(ctx context.Context, s *scope, mutate func(*extensionsv1alpha1.InfrastructureStatus) error) error {
	raw, err := s.state.encode()
	if err != nil {
		return err
	}
	patch := client.MergeFrom(s.infra.DeepCopy())
	s.infra.Status.State = &runtime.RawExtension{Raw: raw}
	if mutate != nil {
		if err := mutate(&s.infra.Status); err != nil {
			return err
		}
	}
	if err := a.client.Status().Patch(ctx, s.infra, patch); err != nil {
		return fmt.Errorf("patch infrastructure status: %w", err)
	}
	return nil
}
