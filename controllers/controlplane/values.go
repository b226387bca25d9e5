package controlplane

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	extensionscontroller "github.com/gardener/gardener/extensions/pkg/controller"
	"github.com/gardener/gardener/extensions/pkg/controller/controlplane/genericactuator"
	v1beta1constants "github.com/gardener/gardener/pkg/apis/core/v1beta1/constants"
	extensionsv1alpha1 "github.com/gardener/gardener/pkg/apis/extensions/v1alpha1"
	secretsmanager "github.com/gardener/gardener/pkg/utils/secrets/manager"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/metalforge/metalforge/charts"
	"github.com/metalforge/metalforge/controllers/infrastructure"
	"github.com/metalforge/metalforge/pkg/apis/metal"
	"github.com/metalforge/metalforge/pkg/apis/metal/helper"
)

// FirewallNamespace is the shoot namespace whose ClusterwideNetworkPolicies the firewall enforces.
const FirewallNamespace = "firewall"

// valuesProvider computes the chart values; it is genericactuator.ValuesProvider.
type valuesProvider struct {
	client client.Reader
	codec  *helper.Codec
}

var _ genericactuator.ValuesProvider = (*valuesProvider)(nil)

// shootConfig is what the values are made of, decoded from the ControlPlane and the Cluster.
type shootConfig struct {
	cp      *metal.ControlPlaneConfig
	infra   *metal.InfrastructureConfig
	status  *metal.InfrastructureStatus // nil before the first Infrastructure reconcile
	profile *metal.CloudProfileConfig
	iso     *metal.NetworkIsolation // the partition's, nil when none
}

func (vp *valuesProvider) decode(cp *extensionsv1alpha1.ControlPlane, cluster *extensionscontroller.Cluster) (*shootConfig, error) {
	s := &shootConfig{cp: &metal.ControlPlaneConfig{}, infra: &metal.InfrastructureConfig{}}
	raw := []byte(`{"apiVersion":"metal.provider.extensions.gardener.cloud/v1alpha1","kind":"ControlPlaneConfig"}`)
	if cp.Spec.ProviderConfig != nil && len(cp.Spec.ProviderConfig.Raw) > 0 {
		raw = cp.Spec.ProviderConfig.Raw
	}
	if err := vp.codec.Decode(raw, s.cp); err != nil {
		return nil, fmt.Errorf("decode controlplane config: %w", err)
	}
	if cluster == nil || cluster.Shoot == nil || cluster.Shoot.Spec.Provider.InfrastructureConfig == nil {
		return nil, fmt.Errorf("decode infrastructure config: the cluster's shoot has none")
	}
	if err := vp.codec.Decode(cluster.Shoot.Spec.Provider.InfrastructureConfig.Raw, s.infra); err != nil {
		return nil, fmt.Errorf("decode infrastructure config: %w", err)
	}
	if st := cp.Spec.InfrastructureProviderStatus; st != nil && len(st.Raw) > 0 {
		s.status = &metal.InfrastructureStatus{}
		if err := vp.codec.Decode(st.Raw, s.status); err != nil {
			return nil, fmt.Errorf("decode infrastructure status: %w", err)
		}
	}
	profile, err := infrastructure.CloudProfileConfig(vp.codec, cluster)
	if err != nil {
		return nil, err
	}
	s.profile = profile
	if _, _, p, ok := helper.FindPartition(profile, s.infra.PartitionID); ok {
		s.iso = p.NetworkIsolation
	}
	return s, nil
}

// GetConfigChartValues is unused: the cloud config is part of the control plane chart.
func (vp *valuesProvider) GetConfigChartValues(context.Context, *extensionsv1alpha1.ControlPlane, *extensionscontroller.Cluster) (map[string]any, error) {
	return nil, nil
}

// GetControlPlaneChartValues returns the values of charts/internal/seed-controlplane.
func (vp *valuesProvider) GetControlPlaneChartValues(ctx context.Context, cp *extensionsv1alpha1.ControlPlane, cluster *extensionscontroller.Cluster,
	secrets secretsmanager.Reader, checksums map[string]string, scaledDown bool) (map[string]any, error) {
	s, err := vp.decode(cp, cluster)
	if err != nil {
		return nil, err
	}
	access, err := infrastructure.ReadAccess(ctx, vp.client, cp.Spec.SecretRef, s.profile, s.infra.PartitionID)
	if err != nil {
		return nil, err
	}
	server, ok := secrets.Get(ServerSecretName)
	if !ok {
		return nil, fmt.Errorf("secret %s not found", ServerSecretName)
	}
	return ControlPlaneValues(ControlPlaneInput{
		Namespace:               cp.Namespace,
		ClusterID:               infrastructure.ClusterID(cluster),
		MetalAPIURL:             access.URL,
		Config:                  s.cp,
		Infrastructure:          s.infra,
		Status:                  s.status,
		Replicas:                extensionscontroller.GetControlPlaneReplicas(cluster, scaledDown, 1),
		ServerSecretName:        server.Name,
		CredentialsSecretName:   cp.Spec.SecretRef.Name,
		GenericKubeconfigSecret: extensionscontroller.GenericTokenKubeconfigSecretNameFromCluster(cluster),
		Checksums:               checksums,
	}), nil
}

// ControlPlaneInput is what ControlPlaneValues needs.
type ControlPlaneInput struct {
	Namespace, ClusterID, MetalAPIURL string
	Config                            *metal.ControlPlaneConfig
	Infrastructure                    *metal.InfrastructureConfig
	Status                            *metal.InfrastructureStatus
	Replicas                          int
	ServerSecretName                  string
	CredentialsSecretName             string
	GenericKubeconfigSecret           string
	// Checksums of secrets (by name) the pods restart on.
	Checksums map[string]string
}

// ControlPlaneValues are the values of charts/internal/seed-controlplane. The default external
// network is the ControlPlaneConfig's, else the firewall's first network.
func ControlPlaneValues(in ControlPlaneInput) map[string]any {
	ext := ""
	gates := map[string]any{}
	if c := in.Config.CloudControllerManager; c != nil {
		if c.DefaultExternalNetwork != nil {
			ext = *c.DefaultExternalNetwork
		}
		for k, v := range c.FeatureGates {
			gates[k] = v
		}
	}
	if ext == "" && len(in.Infrastructure.Firewall.Networks) > 0 {
		ext = in.Infrastructure.Firewall.Networks[0]
	}
	annotations := map[string]any{}
	for _, name := range slices.Sorted(maps.Keys(in.Checksums)) {
		// Secrets by their config names: the cloudprovider credentials and the server certificate.
		if name == in.CredentialsSecretName || name == v1beta1constants.SecretNameCloudProvider || name == ServerSecretName {
			annotations["checksum/secret-"+name] = in.Checksums[name]
		}
	}
	if in.Status != nil && in.Status.Firewall.MachineID != "" {
		annotations["metalforge.io/firewall-machine"] = in.Status.Firewall.MachineID
	}
	return map[string]any{
		"replicas":                         in.Replicas,
		"clusterName":                      in.Namespace,
		"podAnnotations":                   annotations,
		"genericTokenKubeconfigSecretName": in.GenericKubeconfigSecret,
		"metalCCM": map[string]any{
			"accessSecretName":       AccessSecretName,
			"serverSecretName":       in.ServerSecretName,
			"credentialsSecretName":  in.CredentialsSecretName,
			"metalAPIURL":            in.MetalAPIURL,
			"partitionID":            in.Infrastructure.PartitionID,
			"projectID":              in.Infrastructure.ProjectID,
			"clusterID":              in.ClusterID,
			"defaultExternalNetwork": ext,
			"loadBalancer":           "metallb",
			"featureGates":           gates,
		},
	}
}

// GetControlPlaneShootChartValues returns the values of charts/internal/shoot-controlplane.
func (vp *valuesProvider) GetControlPlaneShootChartValues(_ context.Context, cp *extensionsv1alpha1.ControlPlane, cluster *extensionscontroller.Cluster,
	_ secretsmanager.Reader, _ map[string]string) (map[string]any, error) {
	s, err := vp.decode(cp, cluster)
	if err != nil {
		return nil, err
	}
	access := metal.NetworkAccessBaseline
	if s.cp.NetworkAccessType != nil && *s.cp.NetworkAccessType != "" {
		access = *s.cp.NetworkAccessType
	}
	return ShootValues(access, s.iso)
}

// ShootValues are the values of charts/internal/shoot-controlplane for an access type and the
// partition's network isolation.
func ShootValues(access metal.NetworkAccessType, iso *metal.NetworkIsolation) (map[string]any, error) {
	policies, err := DefaultPolicies(access, iso)
	if err != nil {
		return nil, err
	}
	// Through JSON so the chart sees plain maps with the CRD's field names.
	b, err := json.Marshal(policies)
	if err != nil {
		return nil, fmt.Errorf("encode policies: %w", err)
	}
	var ps []any
	if err := json.Unmarshal(b, &ps); err != nil {
		return nil, fmt.Errorf("decode policies: %w", err)
	}
	return map[string]any{
		"metalCCM": map[string]any{"serviceAccountName": CloudControllerManagerName},
		"firewall": map[string]any{
			"namespace":         FirewallNamespace,
			"networkAccessType": string(access),
			"policies":          ps,
		},
	}, nil
}

// GetControlPlaneShootCRDsChartValues returns the values of charts/internal/shoot-crds.
func (vp *valuesProvider) GetControlPlaneShootCRDsChartValues(context.Context, *extensionsv1alpha1.ControlPlane, *extensionscontroller.Cluster) (map[string]any, error) {
	return ShootCRDsValues()
}

// ShootCRDsValues are the values of charts/internal/shoot-crds: the ClusterwideNetworkPolicy CRD
// as charts/firewall-controller ships it.
func ShootCRDsValues() (map[string]any, error) {
	crd, err := charts.ClusterwideNetworkPolicyCRD()
	if err != nil {
		return nil, err
	}
	return map[string]any{"crd": string(crd)}, nil
}

// GetStorageClassesChartValues is unused: metalforge deploys no storage classes.
func (vp *valuesProvider) GetStorageClassesChartValues(context.Context, *extensionsv1alpha1.ControlPlane, *extensionscontroller.Cluster) (map[string]any, error) {
	return nil, nil
}
