package validation

import (
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/metalforge/metalforge/pkg/apis/metal"
)

// ValidateWorkerConfig checks a worker pool's WorkerConfig. fldPath is where it sits, e.g.
// spec.provider.workers[0].providerConfig.
func ValidateWorkerConfig(c *metal.WorkerConfig, fldPath *field.Path) field.ErrorList {
	return validateIDList(c.AdditionalNetworks, fldPath.Child("additionalNetworks"))
}
