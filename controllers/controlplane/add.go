package controlplane

import (
	"context"
	"fmt"

	"github.com/gardener/gardener/extensions/pkg/controller/controlplane"
	extensionsv1alpha1 "github.com/gardener/gardener/pkg/apis/extensions/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// AddOptions configure the controller.
type AddOptions struct {
	// Controller are controller-runtime's options (MaxConcurrentReconciles, ...).
	Controller controller.Options
	// IgnoreOperationAnnotation reconciles on every change, not only when gardenlet sets the
	// gardener.cloud/operation annotation.
	IgnoreOperationAnnotation bool
	// ExtensionClasses are the extension classes served (default: shoot).
	ExtensionClasses []extensionsv1alpha1.ExtensionClass
	// Actuator configures the charts (metal-ccm image).
	Actuator Config
}

// AddToManager adds gardener's ControlPlane controller with this actuator for type metal to mgr.
// The manager's scheme needs client-go's types, extensions.gardener.cloud/v1alpha1 and
// resources.gardener.cloud/v1alpha1 (ManagedResource).
func AddToManager(ctx context.Context, mgr manager.Manager, opts AddOptions) error {
	a, err := NewActuator(mgr, opts.Actuator)
	if err != nil {
		return err
	}
	err = controlplane.Add(mgr, controlplane.AddArgs{
		Actuator:                  a,
		ControllerOptions:         opts.Controller,
		Predicates:                controlplane.DefaultPredicates(ctx, mgr, opts.IgnoreOperationAnnotation),
		Type:                      Type,
		IgnoreOperationAnnotation: opts.IgnoreOperationAnnotation,
		ExtensionClasses:          opts.ExtensionClasses,
	})
	if err != nil {
		return fmt.Errorf("add controlplane controller: %w", err)
	}
	return nil
}
