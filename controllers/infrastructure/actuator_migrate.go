package infrastructure

import (
	"context"

	extensionscontroller "github.com/gardener/gardener/extensions/pkg/controller"
	extensionsv1alpha1 "github.com/gardener/gardener/pkg/apis/extensions/v1alpha1"
	"github.com/go-logr/logr"
)

// Migrate prepares a move to another seed. The network, IPs and firewall live in metal-api, not in
// the seed, and status.state already records them, so nothing is released or written.
func (a *Actuator) Migrate(_ context.Context, log logr.Logger, infra *extensionsv1alpha1.Infrastructure, _ *extensionscontroller.Cluster) error {
	log.Info("Migrating infrastructure keeps the metal-api objects", "infrastructure", infra.Name)
	return nil
}
