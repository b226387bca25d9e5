// Package controlplane is the ControlPlane actuator of the metal provider type: gardener's generic
// control plane actuator (extensions/pkg/controller/controlplane/genericactuator) driven by a
// ValuesProvider that turns the shoot's ControlPlaneConfig, the InfrastructureConfig/Status, the
// CloudProfileConfig and the Cluster into values for metalforge's charts (package charts):
//
//   - seed: metal-ccm (Deployment, cloud config, metrics Service) in the shoot's namespace, with a
//     server certificate from the secrets manager and the shoot kubeconfig from gardener's
//     generic token kubeconfig plus the shoot access secret shoot-access-cloud-controller-manager;
//   - shoot: metal-ccm's RBAC, the firewall namespace and the default ClusterwideNetworkPolicies
//     (DefaultPolicies) in a ManagedResource, and the ClusterwideNetworkPolicy CRD in another.
//
// Everything reaches the clusters through ManagedResources that gardener-resource-manager applies.
package controlplane

import (
	"fmt"

	extensionscontroller "github.com/gardener/gardener/extensions/pkg/controller"
	"github.com/gardener/gardener/extensions/pkg/controller/controlplane"
	"github.com/gardener/gardener/extensions/pkg/controller/controlplane/genericactuator"
	"github.com/gardener/gardener/pkg/chartrenderer"
	"github.com/gardener/gardener/pkg/utils/chart"
	"github.com/gardener/gardener/pkg/utils/imagevector"
	"k8s.io/apimachinery/pkg/version"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/metalforge/metalforge/charts"
	"github.com/metalforge/metalforge/pkg/apis/metal/helper"
)

// Type is the provider type served.
const Type = "metal"

// ImageNameMetalCCM is the image vector entry of metal-ccm (values key images.metal-ccm).
const ImageNameMetalCCM = "metal-ccm"

// DefaultMetalCCMImage is the metal-ccm image when Config.MetalCCMImage is empty.
const DefaultMetalCCMImage = "ghcr.io/metalforge/metal-ccm:v0.1.0"

// Config configures the actuator.
type Config struct {
	// MetalCCMImage is the image reference of metal-ccm (default DefaultMetalCCMImage).
	MetalCCMImage string
	// Codec decodes provider configs (default helper.NewCodec()).
	Codec *helper.Codec
}

func (c *Config) defaults() {
	if c.MetalCCMImage == "" {
		c.MetalCCMImage = DefaultMetalCCMImage
	}
	if c.Codec == nil {
		c.Codec = helper.NewCodec()
	}
}

// ImageVector is the image vector of the charts: metal-ccm only.
func (c Config) ImageVector() imagevector.ImageVector {
	c.defaults()
	ref := c.MetalCCMImage
	return imagevector.ImageVector{{Name: ImageNameMetalCCM, Ref: &ref}}
}

// SeedChart is metal-ccm in the shoot's namespace of the seed.
func SeedChart() *chart.Chart {
	return &chart.Chart{Name: "seed-controlplane", EmbeddedFS: charts.FS(), Path: charts.SeedControlPlanePath,
		Images: []string{ImageNameMetalCCM}}
}

// ShootChart is what goes into the shoot: RBAC, the firewall namespace, default policies.
func ShootChart() *chart.Chart {
	return &chart.Chart{Name: "shoot-controlplane", EmbeddedFS: charts.FS(), Path: charts.ShootControlPlanePath}
}

// ShootCRDsChart is the ClusterwideNetworkPolicy CRD for the shoot.
func ShootCRDsChart() *chart.Chart {
	return &chart.Chart{Name: "shoot-crds", EmbeddedFS: charts.FS(), Path: charts.ShootCRDsPath}
}

// ChartRendererFactory renders the charts in-process for the shoot's Kubernetes version.
func ChartRendererFactory() extensionscontroller.ChartRendererFactory {
	return extensionscontroller.ChartRendererFactoryFunc(func(v string) (chartrenderer.Interface, error) {
		major, minor, err := majorMinor(v)
		if err != nil {
			return nil, err
		}
		return chartrenderer.NewWithServerVersion(&version.Info{GitVersion: "v" + v, Major: major, Minor: minor}), nil
	})
}

func majorMinor(v string) (string, string, error) {
	var major, minor, patch int
	if _, err := fmt.Sscanf(v, "%d.%d.%d", &major, &minor, &patch); err != nil {
		if _, err2 := fmt.Sscanf(v, "%d.%d", &major, &minor); err2 != nil {
			return "", "", fmt.Errorf("parse kubernetes version %q: %w", v, err)
		}
	}
	return fmt.Sprint(major), fmt.Sprint(minor), nil
}

// NewActuator returns gardener's generic control plane actuator with metalforge's charts, secrets
// and values.
func NewActuator(mgr manager.Manager, cfg Config) (controlplane.Actuator, error) {
	cfg.defaults()
	a, err := genericactuator.NewActuator(mgr, Type,
		secretConfigs, shootAccessSecrets,
		nil, SeedChart(), ShootChart(), ShootCRDsChart(), nil,
		&valuesProvider{client: mgr.GetClient(), codec: cfg.Codec},
		ChartRendererFactory(), cfg.ImageVector(), "", nil, "")
	if err != nil {
		return nil, fmt.Errorf("create controlplane actuator: %w", err)
	}
	return a, nil
}
