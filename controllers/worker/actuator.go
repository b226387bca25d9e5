// Package worker is the Worker actuator of gardener-extension-provider-metal: gardener's generic
// worker actuator (extensions/pkg/controller/worker/genericactuator) with a delegate that turns
// each worker pool and zone (a metal-api partition) into an MCM MachineClass for pkg/mcm's driver
// and a MachineDeployment.
//
// A MachineClass's providerSpec is a pkg/mcm ProviderSpec: partition, size (the pool's machine
// type), image (machine image name "-" version, the metal-api image ID), project, networks (the
// cluster's private network that the infrastructure actuator allocated: in the infrastructure's
// partition the networkID of the Worker's infrastructureProviderStatus, else (older statuses,
// other zones) the network found by its cluster label; then WorkerConfig.additionalNetworks), cluster ID, tags and the shoot's SSH key. Its secret
// holds the user data and metal-api URL and token (pkg/mcm's keys); credentialsSecretRef is the
// cloudprovider secret, whose keys MCM merges over it. Its nodeTemplate is the size's capacity (the
// minimum of each constraint, as pkg/autoscaler's template node: cpu, memory, ephemeral-storage, and
// gpu, which MCM requires, 0 without GPUs) so cluster-autoscaler can scale a pool up from zero. MachineDeployments get gardener's naming
// (<namespace>-<pool>-z<n>), min/max and maxSurge/maxUnavailable spread over the zones, the pool's
// labels, annotations and taints and the cluster-autoscaler annotations.
package worker

import (
	"context"
	"fmt"
	"net/http"

	extensionscontroller "github.com/gardener/gardener/extensions/pkg/controller"
	"github.com/gardener/gardener/extensions/pkg/controller/worker"
	"github.com/gardener/gardener/extensions/pkg/controller/worker/genericactuator"
	extensionsv1alpha1 "github.com/gardener/gardener/pkg/apis/extensions/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/metalforge/metalforge/controllers/infrastructure"
	"github.com/metalforge/metalforge/pkg/apis/metal"
	"github.com/metalforge/metalforge/pkg/apis/metal/helper"
	"github.com/metalforge/metalforge/pkg/client/metalapi"
)

// Config configures the delegate factory.
type Config struct {
	// Client reads and writes the seed (secrets, MachineClasses, Worker status).
	Client client.Client
	// HTTPClient talks to metal-api (default http.DefaultClient).
	HTTPClient *http.Client
}

// DelegateFactory makes a delegate per Worker operation.
type DelegateFactory struct {
	client client.Client
	http   *http.Client
	codec  *helper.Codec
}

var _ genericactuator.DelegateFactory = (*DelegateFactory)(nil)

// NewDelegateFactory returns the factory.
func NewDelegateFactory(cfg Config) *DelegateFactory {
	return &DelegateFactory{client: cfg.Client, http: cfg.HTTPClient, codec: helper.NewCodec()}
}

// delegate is one Worker operation.
type delegate struct {
	client    client.Client
	codec     *helper.Codec
	worker    *extensionsv1alpha1.Worker
	cluster   *extensionscontroller.Cluster
	infra     *metal.InfrastructureConfig
	status    *metal.InfrastructureStatus // Worker.spec.infrastructureProviderStatus, empty if unset
	access    infrastructure.Access
	api       *metalapi.MetalAPI
	clusterID string

	// computed by generate, used by DeployMachineClasses and GenerateMachineDeployments
	classes     []machineClass
	deployments worker.MachineDeployments
	images      []metal.MachineImage
}

// WorkerDelegate reads the shoot's infrastructure config and metal-api access.
func (f *DelegateFactory) WorkerDelegate(ctx context.Context, w *extensionsv1alpha1.Worker, cluster *extensionscontroller.Cluster) (genericactuator.WorkerDelegate, error) {
	d := &delegate{client: f.client, codec: f.codec, worker: w, cluster: cluster, clusterID: infrastructure.ClusterID(cluster)}
	if cluster == nil || cluster.Shoot == nil || cluster.Shoot.Spec.Provider.InfrastructureConfig == nil {
		return nil, fmt.Errorf("worker %s/%s: the shoot has no infrastructure config", w.Namespace, w.Name)
	}
	d.infra = &metal.InfrastructureConfig{}
	if err := f.codec.Decode(cluster.Shoot.Spec.Provider.InfrastructureConfig.Raw, d.infra); err != nil {
		return nil, fmt.Errorf("worker %s/%s: %w", w.Namespace, w.Name, err)
	}
	d.status = &metal.InfrastructureStatus{}
	if ps := w.Spec.InfrastructureProviderStatus; ps != nil && len(ps.Raw) > 0 {
		if err := f.codec.Decode(ps.Raw, d.status); err != nil {
			return nil, fmt.Errorf("worker %s/%s: infrastructure provider status: %w", w.Namespace, w.Name, err)
		}
	}
	profile, err := infrastructure.CloudProfileConfig(f.codec, cluster)
	if err != nil {
		return nil, err
	}
	if d.access, err = infrastructure.ReadAccess(ctx, f.client, w.Spec.SecretRef, profile, d.infra.PartitionID); err != nil {
		return nil, err
	}
	if d.api, err = d.access.Client(f.http); err != nil {
		return nil, err
	}
	return d, nil
}

// PreReconcileHook does nothing.
func (d *delegate) PreReconcileHook(context.Context) error { return nil }

// PostReconcileHook does nothing.
func (d *delegate) PostReconcileHook(context.Context) error { return nil }

// PreDeleteHook does nothing.
func (d *delegate) PreDeleteHook(context.Context) error { return nil }

// PostDeleteHook does nothing: MCM's driver frees the machines.
func (d *delegate) PostDeleteHook(context.Context) error { return nil }
