package install

import (
	"testing"

	"k8s.io/apimachinery/pkg/runtime"

	"github.com/metalforge/metalforge/pkg/apis/metal"
	"github.com/metalforge/metalforge/pkg/apis/metal/v1alpha1"
)

func TestInstall(t *testing.T) {
	s := runtime.NewScheme()
	Install(s)
	kinds := []string{"InfrastructureConfig", "InfrastructureStatus", "ControlPlaneConfig", "WorkerConfig", "WorkerStatus", "CloudProfileConfig"}
	for _, gv := range []struct{ group, version string }{{metal.GroupName, runtime.APIVersionInternal}, {v1alpha1.GroupName, "v1alpha1"}} {
		for _, k := range kinds {
			gvk := v1alpha1.SchemeGroupVersion.WithKind(k)
			gvk.Version = gv.version
			if !s.Recognizes(gvk) {
				t.Errorf("%s not registered", gvk)
			}
		}
	}
	if got := s.PrioritizedVersionsForGroup(metal.GroupName); len(got) != 1 || got[0] != v1alpha1.SchemeGroupVersion {
		t.Errorf("prioritized versions %v, want [%s]", got, v1alpha1.SchemeGroupVersion)
	}
	// Installing twice is harmless (a scheme shared by several registrations).
	if err := AddToScheme(s); err != nil {
		t.Errorf("second AddToScheme: %v", err)
	}
}
