package validation

import (
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	_ "k8s.io/cloud-provider/app"         // registers the cloud-controller-manager's gates
	_ "k8s.io/component-base/logs/api/v1" // registers the logging gates
)

// TestCCMFeatureGatesCurrent compares the compiled-in list with the gates the
// cloud-controller-manager libraries of this module version really register (test-only
// imports, so the validation package itself stays free of k8s.io/apiserver).
func TestCCMFeatureGatesCurrent(t *testing.T) {
	var real []string
	for name := range utilfeature.DefaultFeatureGate.DeepCopy().GetAll() {
		real = append(real, string(name))
	}
	sort.Strings(real)
	var ours []string
	for name := range ccmFeatureGates() {
		ours = append(ours, name)
	}
	sort.Strings(ours)
	if diff := cmp.Diff(real, ours); diff != "" {
		t.Errorf("ccmFeatureGates is stale (-registered +listed):\n%s", diff)
	}
}
