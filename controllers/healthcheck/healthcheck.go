// Package healthcheck registers gardener's health check controllers
// (extensions/pkg/controller/healthcheck) for what the metal provider deploys:
//
//   - ControlPlane: ShootControlPlaneHealthy from metal-ccm's Deployment in the seed and the
//     ManagedResource that applies it;
//     ShootSystemComponentsHealthy from the ManagedResources that carry the control plane's
//     objects (RBAC, policies, CRD) into the shoot;
//   - Worker: ShootEveryNodeReady from the MachineDeployments in the seed and the shoot's Nodes.
package healthcheck

import (
	"github.com/gardener/gardener/extensions/pkg/controller/controlplane/genericactuator"
	"github.com/gardener/gardener/extensions/pkg/controller/healthcheck"
	"github.com/gardener/gardener/extensions/pkg/controller/healthcheck/general"
	"github.com/gardener/gardener/extensions/pkg/controller/healthcheck/worker"
	gardencorev1beta1 "github.com/gardener/gardener/pkg/apis/core/v1beta1"

	"github.com/metalforge/metalforge/controllers/controlplane"
)

// ControlPlaneChecks are the checks of a ControlPlane of type metal.
func ControlPlaneChecks() []healthcheck.ConditionTypeToHealthCheck {
	return []healthcheck.ConditionTypeToHealthCheck{
		{
			ConditionType: string(gardencorev1beta1.ShootControlPlaneHealthy),
			HealthCheck:   general.NewSeedDeploymentHealthChecker(controlplane.CloudControllerManagerName),
		},
		{
			ConditionType: string(gardencorev1beta1.ShootControlPlaneHealthy),
			HealthCheck:   general.CheckManagedResource(genericactuator.ControlPlaneSeedChartResourceName),
		},
		{
			ConditionType: string(gardencorev1beta1.ShootSystemComponentsHealthy),
			HealthCheck:   general.CheckManagedResource(genericactuator.ControlPlaneShootChartResourceName),
		},
		{
			ConditionType: string(gardencorev1beta1.ShootSystemComponentsHealthy),
			HealthCheck:   general.CheckManagedResource(genericactuator.ControlPlaneShootCRDsChartResourceName),
		},
	}
}

// WorkerChecks are the checks of a Worker of type metal.
func WorkerChecks() []healthcheck.ConditionTypeToHealthCheck {
	return []healthcheck.ConditionTypeToHealthCheck{
		{
			ConditionType: string(gardencorev1beta1.ShootEveryNodeReady),
			HealthCheck:   worker.NewNodesChecker(),
		},
	}
}
