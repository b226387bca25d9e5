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
	"os"
	"os/signal"
	"syscall"

	"github.com/metalforge/metalforge/cmd/gardener-extension-provider-metal/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := app.Run(ctx, os.Args[0], os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}
