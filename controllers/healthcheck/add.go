package healthcheck

import (
	"context"
	"fmt"
	"time"

	extensionsconfigv1alpha1 "github.com/gardener/gardener/extensions/pkg/apis/config/v1alpha1"
	"github.com/gardener/gardener/extensions/pkg/controller/healthcheck"
	extensionsv1alpha1 "github.com/gardener/gardener/pkg/apis/extensions/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/metalforge/metalforge/controllers/controlplane"
)

// DefaultSyncPeriod is how often the conditions are recomputed when AddOptions leave it open.
const DefaultSyncPeriod = 30 * time.Second

// AddOptions configure the health check controllers.
type AddOptions struct {
	// Controller are controller-runtime's options (MaxConcurrentReconciles, ...).
	Controller controller.Options
	// SyncPeriod is how often the checks run (default DefaultSyncPeriod).
	SyncPeriod time.Duration
	// ShootRESTOptions tune the client for the shoot (QPS, burst) used by the Worker checks.
	ShootRESTOptions *extensionsconfigv1alpha1.RESTOptions
	// ExtensionClasses are the extension classes served (default: shoot).
	ExtensionClasses []extensionsv1alpha1.ExtensionClass
	// SkipWorker leaves the Worker checks out (they need a client for the shoot).
	SkipWorker bool
}

// AddToManager registers the ControlPlane and (unless SkipWorker) the Worker health checks.
// The manager's scheme needs extensions.gardener.cloud/v1alpha1, resources.gardener.cloud/v1alpha1
// and, for the Worker checks, machine.sapcloud.io/v1alpha1.
func AddToManager(_ context.Context, mgr manager.Manager, opts AddOptions) error {
	if opts.SyncPeriod == 0 {
		opts.SyncPeriod = DefaultSyncPeriod
	}
	args := healthcheck.DefaultAddArgs{
		Controller: opts.Controller,
		HealthCheckConfig: extensionsconfigv1alpha1.HealthCheckConfig{
			SyncPeriod:       metav1.Duration{Duration: opts.SyncPeriod},
			ShootRESTOptions: opts.ShootRESTOptions,
		},
		ExtensionClasses: opts.ExtensionClasses,
	}
	if err := healthcheck.DefaultRegistration(controlplane.Type,
		extensionsv1alpha1.SchemeGroupVersion.WithKind(extensionsv1alpha1.ControlPlaneResource),
		func() client.ObjectList { return &extensionsv1alpha1.ControlPlaneList{} },
		func() extensionsv1alpha1.Object { return &extensionsv1alpha1.ControlPlane{} },
		mgr, args, nil, ControlPlaneChecks(), nil); err != nil {
		return fmt.Errorf("add controlplane health checks: %w", err)
	}
	if opts.SkipWorker {
		return nil
	}
	if err := healthcheck.DefaultRegistration(controlplane.Type,
		extensionsv1alpha1.SchemeGroupVersion.WithKind(extensionsv1alpha1.WorkerResource),
		func() client.ObjectList { return &extensionsv1alpha1.WorkerList{} },
		func() extensionsv1alpha1.Object { return &extensionsv1alpha1.Worker{} },
		mgr, args, nil, WorkerChecks(), nil); err != nil {
		return fmt.Errorf("add worker health checks: %w", err)
	}
	return nil
}
