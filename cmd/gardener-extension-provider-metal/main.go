// Command gardener-extension-provider-metal is metalforge's Gardener provider extension: a
// controller-runtime manager in the seed running the actuators for provider type metal
// (controllers/infrastructure, controllers/worker, controllers/controlplane) and the health checks
// of ControlPlane and Worker (controllers/healthcheck).
//
// Flags are the ones gardener extensions share (extensions/pkg/controller/cmd): --kubeconfig,
// --leader-election*, --metrics-bind-address, --health-bind-address, --log-level, --log-format,
// --controllers / --disable-controllers, --ignore-operation-annotation, and per controller
// --<controller>-max-concurrent-reconciles; plus --controlplane-metal-ccm-image (the metal-ccm image
// the ControlPlane actuator deploys into each shoot namespace).
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/apimachinery/pkg/runtime"

	"github.com/metalforge/metalforge/cmd/gardener-extension-provider-metal/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[0], os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}

// run is app.Run: it parses the flags, starts the manager and blocks until ctx ends.
func run(ctx context.Context, name string, args []string, stderr io.Writer) int {
	return app.Run(ctx, name, args, stderr)
}

// newScheme is app.NewScheme.
func newScheme() (*runtime.Scheme, error) { return app.NewScheme() }
