package worker

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/gardener/gardener/extensions/pkg/controller/worker"
	"github.com/gardener/gardener/extensions/pkg/controller/worker/genericactuator"
	extensionsv1alpha1helper "github.com/gardener/gardener/pkg/api/extensions/v1alpha1/helper"
	v1beta1constants "github.com/gardener/gardener/pkg/apis/core/v1beta1/constants"
	extensionsv1alpha1 "github.com/gardener/gardener/pkg/apis/extensions/v1alpha1"
	machinev1alpha1 "github.com/gardener/machine-controller-manager/pkg/apis/machine/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/metalforge/metalforge/controllers/infrastructure"
	"github.com/metalforge/metalforge/pkg/apis/metal"
	"github.com/metalforge/metalforge/pkg/autoscaler"
	partitionops "github.com/metalforge/metalforge/pkg/client/metalapi/partition"
	sizeops "github.com/metalforge/metalforge/pkg/client/metalapi/size"
	"github.com/metalforge/metalforge/pkg/mcm"
)

// TagPool is the machine tag naming the worker pool: worker.metalforge.io/pool=<pool>.
const TagPool = "worker.metalforge.io/pool="

// machineClass is one MachineClass with its secret.
type machineClass struct {
	name         string
	spec         mcm.ProviderSpec
	nodeTemplate *machinev1alpha1.NodeTemplate
	userData     []byte
}

// ImageID is the metal-api image of a machine image: <name>-<version>, e.g. debian-12.
func ImageID(name, version string) string { return name + "-" + version }

// generate computes the machine classes, deployments and images once per delegate.
func (d *delegate) generate(ctx context.Context) error {
	if d.deployments != nil {
		return nil
	}
	networks := map[string]string{}            // partition → private network
	templates := map[string]*corev1.Node{}     // partition/size → template node
	deployments := worker.MachineDeployments{} // non-nil: generated
	var classes []machineClass
	var images []metal.MachineImage
	for _, pool := range d.worker.Spec.Pools {
		wc := &metal.WorkerConfig{}
		if pool.ProviderConfig != nil && len(pool.ProviderConfig.Raw) > 0 {
			if err := d.codec.Decode(pool.ProviderConfig.Raw, wc); err != nil {
				return fmt.Errorf("worker pool %s: %w", pool.Name, err)
			}
		}
		userData, err := worker.FetchUserData(ctx, d.client, d.worker.Namespace, pool)
		if err != nil {
			return err
		}
		image := ImageID(pool.MachineImage.Name, pool.MachineImage.Version)
		images = appendImage(images, metal.MachineImage{Name: pool.MachineImage.Name, Version: pool.MachineImage.Version, Image: image})
		// A new hash (so a new class and a rolling update) when the image, size, project or networks change.
		hashData := append([]string{image, pool.MachineType, d.infra.ProjectID}, wc.AdditionalNetworks...)
		hash, err := worker.WorkerPoolHash(pool, d.cluster, hashData, hashData)
		if err != nil {
			return fmt.Errorf("worker pool %s: %w", pool.Name, err)
		}
		zones := pool.Zones
		if len(zones) == 0 {
			zones = []string{d.infra.PartitionID}
		}
		n := int32(len(zones))
		for i, zone := range zones {
			zi := int32(i)
			nw, ok := networks[zone]
			if !ok && zone == d.infra.PartitionID && d.status.NetworkID != "" {
				nw, ok, networks[zone] = d.status.NetworkID, true, d.status.NetworkID
			}
			if !ok {
				nets, err := infrastructure.ClusterNetworks(ctx, d.api, d.infra.ProjectID, zone, d.clusterID)
				if err != nil {
					return err
				}
				if len(nets) == 0 {
					return fmt.Errorf("worker pool %s: no private network of cluster %s in partition %s (infrastructure not reconciled yet?)", pool.Name, d.clusterID, zone)
				}
				nw, networks[zone] = nets[0].ID, nets[0].ID
			}
			node, ok := templates[zone+"/"+pool.MachineType]
			if !ok {
				if node, err = d.templateNode(ctx, zone, pool.MachineType); err != nil {
					return fmt.Errorf("worker pool %s: %w", pool.Name, err)
				}
				templates[zone+"/"+pool.MachineType] = node
			}
			name := fmt.Sprintf("%s-%s-z%d", d.worker.Namespace, pool.Name, i+1)
			className := name + "-" + hash
			spec := mcm.ProviderSpec{
				Partition: zone,
				Size:      pool.MachineType,
				Image:     image,
				Project:   d.infra.ProjectID,
				Networks:  append([]string{nw}, wc.AdditionalNetworks...),
				ClusterID: d.clusterID,
				Tags:      []string{TagPool + pool.Name},
			}
			if k := string(d.worker.Spec.SSHPublicKey); k != "" {
				spec.SSHKeys = []string{k}
			}
			classes = append(classes, machineClass{name: className, spec: spec, nodeTemplate: nodeTemplate(pool, node, d.worker.Spec.Region, zone), userData: userData})
			maxSurge := worker.DistributePositiveIntOrPercent(zi, pool.MaxSurge, n, pool.Maximum)
			maxUnavailable := worker.DistributePositiveIntOrPercent(zi, pool.MaxUnavailable, n, pool.Minimum)
			deployments = append(deployments, worker.MachineDeployment{
				Name:       name,
				PoolName:   pool.Name,
				ClassName:  className,
				SecretName: className,
				Minimum:    worker.DistributeOverZones(zi, pool.Minimum, n),
				Maximum:    worker.DistributeOverZones(zi, pool.Maximum, n),
				Priority:   pool.Priority,
				Strategy: machinev1alpha1.MachineDeploymentStrategy{
					Type: machinev1alpha1.RollingUpdateMachineDeploymentStrategyType,
					RollingUpdate: &machinev1alpha1.RollingUpdateMachineDeployment{UpdateConfiguration: machinev1alpha1.UpdateConfiguration{
						MaxSurge: &maxSurge, MaxUnavailable: &maxUnavailable}},
				},
				Labels:                       pool.Labels,
				Annotations:                  pool.Annotations,
				Taints:                       pool.Taints,
				MachineConfiguration:         genericactuator.ReadMachineConfiguration(pool),
				ClusterAutoscalerAnnotations: extensionsv1alpha1helper.GetMachineDeploymentClusterAutoscalerAnnotations(pool.ClusterAutoscaler),
			})
		}
	}
	d.classes, d.deployments, d.images = classes, deployments, images
	return nil
}

// templateNode is pkg/autoscaler's template node of the size in the partition, so that MCM's
// cluster-autoscaler integration and metalforge's externalgrpc provider see the same capacity.
func (d *delegate) templateNode(ctx context.Context, partition, size string) (*corev1.Node, error) {
	sz, err := d.api.Size.GetSizeContext(ctx, sizeops.NewGetSizeParams().WithID(size), nil)
	if err != nil {
		return nil, fmt.Errorf("get size %s: %w", size, err)
	}
	p, err := d.api.Partition.GetPartitionContext(ctx, partitionops.NewGetPartitionParams().WithID(partition), nil)
	if err != nil {
		return nil, fmt.Errorf("get partition %s: %w", partition, err)
	}
	return autoscaler.TemplateNode(&autoscaler.NodeGroup{ID: size, Cluster: d.clusterID, Partition: partition, Size: size}, sz.Payload, p.Payload)
}

// mcmGPU is the capacity key MCM (and cluster-autoscaler's MCM provider) read GPUs from; MCM
// refuses a node template without cpu, gpu and memory.
const mcmGPU corev1.ResourceName = "gpu"

// nodeTemplate is the MachineClass's node template: the pool's own nodeTemplate capacity if the
// shoot sets one, else the size's cpu, memory, ephemeral-storage and GPUs (0 when it has none).
func nodeTemplate(pool extensionsv1alpha1.WorkerPool, node *corev1.Node, region, zone string) *machinev1alpha1.NodeTemplate {
	capacity := corev1.ResourceList{mcmGPU: *resource.NewQuantity(0, resource.DecimalSI)}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage} {
		if q, ok := node.Status.Capacity[r]; ok {
			capacity[r] = q
		}
	}
	if q, ok := node.Status.Capacity[autoscaler.ResourceGPU]; ok {
		capacity[mcmGPU] = q
	}
	if pool.NodeTemplate != nil && len(pool.NodeTemplate.Capacity) > 0 {
		for r, q := range pool.NodeTemplate.Capacity {
			capacity[r] = q
		}
	}
	arch := node.Labels[corev1.LabelArchStable]
	if pool.Architecture != nil {
		arch = *pool.Architecture
	}
	return &machinev1alpha1.NodeTemplate{
		Capacity:     capacity,
		InstanceType: pool.MachineType,
		Region:       region,
		Zone:         zone,
		Architecture: &arch,
	}
}

// DeployMachineClasses writes a secret and a MachineClass per pool and zone.
func (d *delegate) DeployMachineClasses(ctx context.Context) error {
	if err := d.generate(ctx); err != nil {
		return err
	}
	for _, c := range d.classes {
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: c.name, Namespace: d.worker.Namespace}}
		if _, err := controllerutil.CreateOrUpdate(ctx, d.client, sec, func() error {
			metav1.SetMetaDataLabel(&sec.ObjectMeta, v1beta1constants.GardenerPurpose, v1beta1constants.GardenPurposeMachineClass)
			sec.Type = corev1.SecretTypeOpaque
			sec.Data = map[string][]byte{
				mcm.SecretUserData:      c.userData,
				mcm.SecretMetalAPIURL:   []byte(d.access.URL),
				mcm.SecretMetalAPIToken: []byte(d.access.Token),
			}
			return nil
		}); err != nil {
			return fmt.Errorf("deploy machine class secret %s: %w", c.name, err)
		}
		raw, err := json.Marshal(c.spec)
		if err != nil {
			return fmt.Errorf("encode provider spec of %s: %w", c.name, err)
		}
		mc := &machinev1alpha1.MachineClass{ObjectMeta: metav1.ObjectMeta{Name: c.name, Namespace: d.worker.Namespace}}
		if _, err := controllerutil.CreateOrUpdate(ctx, d.client, mc, func() error {
			mc.Provider = mcm.ProviderName
			mc.ProviderSpec = runtime.RawExtension{Raw: raw}
			mc.NodeTemplate = c.nodeTemplate
			mc.SecretRef = &corev1.SecretReference{Name: c.name, Namespace: d.worker.Namespace}
			ref := d.worker.Spec.SecretRef
			mc.CredentialsSecretRef = &ref
			return nil
		}); err != nil {
			return fmt.Errorf("deploy machine class %s: %w", c.name, err)
		}
	}
	return nil
}

// GenerateMachineDeployments returns the wanted MachineDeployments.
func (d *delegate) GenerateMachineDeployments(ctx context.Context) (worker.MachineDeployments, error) {
	if err := d.generate(ctx); err != nil {
		return nil, err
	}
	return d.deployments, nil
}

func appendImage(images []metal.MachineImage, img metal.MachineImage) []metal.MachineImage {
	for _, i := range images {
		if i == img {
			return images
		}
	}
	return append(images, img)
}
