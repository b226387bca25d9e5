package infrastructure

import (
	"context"
	"fmt"
	"net/http"

	"github.com/gardener/gardener/extensions/pkg/controller/infrastructure"
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
	// HTTPClient talks to metal-api (default http.DefaultClient).
	HTTPClient *http.Client
}

// AddToManager adds gardener's Infrastructure controller with this actuator for type metal to mgr.
// The manager's scheme must hold extensions.gardener.cloud/v1alpha1 and core/v1.
func AddToManager(ctx context.Context, mgr manager.Manager, opts AddOptions) error {
	err := infrastructure.Add(mgr, infrastructure.AddArgs{
		Actuator:                  NewActuator(Config{Client: mgr.GetClient(), HTTPClient: opts.HTTPClient}),
		ControllerOptions:         opts.Controller,
		Predicates:                infrastructure.DefaultPredicates(ctx, mgr, opts.IgnoreOperationAnnotation),
		Type:                      Type,
		IgnoreOperationAnnotation: opts.IgnoreOperationAnnotation,
		ExtensionClasses:          opts.ExtensionClasses,
	})
	if err != nil {
		return fmt.Errorf("add infrastructure controller: %w", err)
	}
	return nil
}
