package worker

import (
	"context"
	"fmt"
	"net/http"

	"github.com/gardener/gardener/extensions/pkg/controller/worker"
	"github.com/gardener/gardener/extensions/pkg/controller/worker/genericactuator"
	extensionsv1alpha1 "github.com/gardener/gardener/pkg/apis/extensions/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/metalforge/metalforge/controllers/infrastructure"
)

// AddOptions configure the controller.
type AddOptions struct {
	// Controller are controller-runtime's options.
	Controller controller.Options
	// IgnoreOperationAnnotation reconciles on every change, not only on gardenlet's annotation.
	IgnoreOperationAnnotation bool
	// ExtensionClasses are the extension classes served (default: shoot).
	ExtensionClasses []extensionsv1alpha1.ExtensionClass
	// HTTPClient talks to metal-api (default http.DefaultClient).
	HTTPClient *http.Client
}

// AddToManager adds gardener's Worker controller with the generic actuator and this delegate for
// type metal to mgr. The scheme must hold extensions.gardener.cloud/v1alpha1, core/v1, apps/v1 and
// machine.sapcloud.io/v1alpha1.
func AddToManager(ctx context.Context, mgr manager.Manager, opts AddOptions) error {
	factory := NewDelegateFactory(Config{Client: mgr.GetClient(), HTTPClient: opts.HTTPClient})
	err := worker.Add(ctx, mgr, worker.AddArgs{
		Actuator:                  genericactuator.NewActuator(mgr, nil, factory, nil),
		ControllerOptions:         opts.Controller,
		Predicates:                worker.DefaultPredicates(ctx, mgr, opts.IgnoreOperationAnnotation),
		Type:                      infrastructure.Type,
		IgnoreOperationAnnotation: opts.IgnoreOperationAnnotation,
		ExtensionClasses:          opts.ExtensionClasses,
	})
	if err != nil {
		return fmt.Errorf("add worker controller: %w", err)
	}
	return nil
}
