// Package app is the whole of gardener-extension-provider-metal but its main: the flags, the
// scheme and the controller table (infrastructure, worker, controlplane, healthcheck) in one
// controller-runtime manager. It is a package of its own so that end-to-end tests (pkg/lab/gardener)
// run the extension exactly as the binary does.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"

	controllercmd "github.com/gardener/gardener/extensions/pkg/controller/cmd"
	extensionsv1alpha1 "github.com/gardener/gardener/pkg/apis/extensions/v1alpha1"
	resourcesv1alpha1 "github.com/gardener/gardener/pkg/apis/resources/v1alpha1"
	machinev1alpha1 "github.com/gardener/machine-controller-manager/pkg/apis/machine/v1alpha1"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/metalforge/metalforge/controllers/controlplane"
	"github.com/metalforge/metalforge/controllers/healthcheck"
	"github.com/metalforge/metalforge/controllers/infrastructure"
	"github.com/metalforge/metalforge/controllers/worker"
	"github.com/metalforge/metalforge/pkg/apis/metal/install"
)

// Controller names for --controllers / --disable-controllers.
const (
	controllerInfrastructure = "infrastructure"
	controllerWorker         = "worker"
	controllerControlPlane   = "controlplane"
	controllerHealthCheck    = "healthcheck"
)

// NewScheme holds what the controllers read and write in the seed.
func NewScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		clientgoscheme.AddToScheme, extensionsv1alpha1.AddToScheme, machinev1alpha1.AddToScheme, install.AddToScheme,
		resourcesv1alpha1.AddToScheme,
	} {
		if err := add(s); err != nil {
			return nil, fmt.Errorf("build scheme: %w", err)
		}
	}
	return s, nil
}

// Run parses the flags, starts the manager and blocks until ctx ends. It returns the exit code:
// 0 after --help or a clean stop, 2 for bad flags, 1 when the manager fails.
func Run(ctx context.Context, name string, args []string, stderr io.Writer) int {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		restOpts  = &controllercmd.RESTOptions{}
		mgrOpts   = &controllercmd.ManagerOptions{LeaderElectionID: "provider-metal-leader-election"}
		reconOpts = &controllercmd.ReconcilerOptions{}
		infraOpts = &controllercmd.ControllerOptions{MaxConcurrentReconciles: 5}
		workOpts  = &controllercmd.ControllerOptions{MaxConcurrentReconciles: 5}
		addOpts   infrastructure.AddOptions
		workAdd   worker.AddOptions
		cpOpts    = &controllercmd.ControllerOptions{MaxConcurrentReconciles: 5}
		hcOpts    = &controllercmd.ControllerOptions{MaxConcurrentReconciles: 5}
		cpAdd     controlplane.AddOptions
		hcAdd     healthcheck.AddOptions
	)
	// The controller table: controlplane and healthcheck get their entries here.
	switches := controllercmd.NewSwitchOptions(
		controllercmd.Switch(controllerInfrastructure, func(ctx context.Context, mgr manager.Manager) error {
			return infrastructure.AddToManager(ctx, mgr, addOpts)
		}),
		controllercmd.Switch(controllerWorker, func(ctx context.Context, mgr manager.Manager) error {
			return worker.AddToManager(ctx, mgr, workAdd)
		}),
		controllercmd.Switch(controllerControlPlane, func(ctx context.Context, mgr manager.Manager) error {
			return controlplane.AddToManager(ctx, mgr, cpAdd)
		}),
		controllercmd.Switch(controllerHealthCheck, func(ctx context.Context, mgr manager.Manager) error {
			return healthcheck.AddToManager(ctx, mgr, hcAdd)
		}),
	)
	agg := controllercmd.NewOptionAggregator(restOpts, mgrOpts, reconOpts, switches,
		controllercmd.PrefixOption(controllerInfrastructure+"-", infraOpts),
		controllercmd.PrefixOption(controllerWorker+"-", workOpts),
		controllercmd.PrefixOption(controllerControlPlane+"-", cpOpts),
		controllercmd.PrefixOption(controllerHealthCheck+"-", hcOpts))
	agg.AddFlags(fs)
	fs.StringVar(&cpAdd.Actuator.MetalCCMImage, controllerControlPlane+"-metal-ccm-image", controlplane.DefaultMetalCCMImage,
		"image of metal-ccm deployed into each shoot namespace")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 2
	}
	if err := agg.Complete(); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 2
	}
	addOpts = infrastructure.AddOptions{Controller: infraOpts.Completed().Options(),
		IgnoreOperationAnnotation: reconOpts.Completed().IgnoreOperationAnnotation}
	workAdd = worker.AddOptions{Controller: workOpts.Completed().Options(),
		IgnoreOperationAnnotation: reconOpts.Completed().IgnoreOperationAnnotation}
	cpAdd.Controller = cpOpts.Completed().Options()
	cpAdd.IgnoreOperationAnnotation = reconOpts.Completed().IgnoreOperationAnnotation
	hcAdd.Controller = hcOpts.Completed().Options()

	scheme, err := NewScheme()
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	opts := mgrOpts.Completed().Options()
	opts.Scheme = scheme
	mgr, err := manager.New(restOpts.Completed().Config, opts)
	if err != nil {
		fmt.Fprintf(stderr, "%s: create manager: %v\n", name, err)
		return 1
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	if err := mgr.AddReadyzCheck("informer-sync", healthz.Ping); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	if err := switches.Completed().AddToManager(ctx, mgr); err != nil {
		fmt.Fprintf(stderr, "%s: add controllers: %v\n", name, err)
		return 1
	}
	if err := mgr.Start(ctx); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	return 0
}
