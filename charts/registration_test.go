package charts_test

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	gardencorev1 "github.com/gardener/gardener/pkg/apis/core/v1"
	gardencorev1beta1 "github.com/gardener/gardener/pkg/apis/core/v1beta1"
	"github.com/gardener/gardener/pkg/utils/chart"
	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/metalforge/metalforge/charts"
	"github.com/metalforge/metalforge/controllers/controlplane"
)

// leaves lists the dotted paths of the scalar leaves of a values tree.
func leaves(prefix string, v any, out *[]string) {
	m, ok := v.(map[string]any)
	if !ok || len(m) == 0 {
		*out = append(*out, prefix)
		return
	}
	for k, sub := range m {
		leaves(strings.TrimPrefix(prefix+"."+k, "."), sub, out)
	}
}

// TestControllerRegistration decodes example/gardener/controller-registration.yaml strictly into
// gardener's types, checks it registers the kinds the extension serves, that every value it sets
// exists in the chart's values.yaml, and that the chart renders with them.
func TestControllerRegistration(t *testing.T) {
	raw, err := os.ReadFile("../example/gardener/controller-registration.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var (
		dep *gardencorev1.ControllerDeployment
		reg *gardencorev1beta1.ControllerRegistration
	)
	for _, doc := range strings.Split(string(raw), "\n---\n") {
		var tm struct{ Kind string }
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			t.Fatal(err)
		}
		switch tm.Kind {
		case "ControllerDeployment":
			dep = &gardencorev1.ControllerDeployment{}
			if err := yaml.UnmarshalStrict([]byte(doc), dep); err != nil {
				t.Fatalf("controller deployment: %v", err)
			}
		case "ControllerRegistration":
			reg = &gardencorev1beta1.ControllerRegistration{}
			if err := yaml.UnmarshalStrict([]byte(doc), reg); err != nil {
				t.Fatalf("controller registration: %v", err)
			}
		case "":
		default:
			t.Fatalf("unexpected kind %s", tm.Kind)
		}
	}
	if dep == nil || reg == nil || dep.Helm == nil || dep.Helm.OCIRepository == nil {
		t.Fatalf("want a ControllerDeployment with a helm chart and a ControllerRegistration")
	}
	var kinds []string
	for _, r := range reg.Spec.Resources {
		kinds = append(kinds, r.Kind+"/"+r.Type)
	}
	if diff := cmp.Diff([]string{"ControlPlane/metal", "Infrastructure/metal", "Worker/metal"}, kinds); diff != "" {
		t.Errorf("registered kinds (-want +got):\n%s", diff)
	}
	if reg.Spec.Deployment == nil || len(reg.Spec.Deployment.DeploymentRefs) != 1 || reg.Spec.Deployment.DeploymentRefs[0].Name != dep.Name {
		t.Errorf("registration does not reference deployment %s: %+v", dep.Name, reg.Spec.Deployment)
	}

	var values map[string]any
	if err := json.Unmarshal(dep.Helm.Values.Raw, &values); err != nil {
		t.Fatal(err)
	}
	defaultsRaw, err := charts.FS().ReadFile(charts.ExtensionPath + "/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var defaults map[string]any
	if err := yaml.Unmarshal(defaultsRaw, &defaults); err != nil {
		t.Fatal(err)
	}
	var set, known []string
	leaves("", values, &set)
	leaves("", defaults, &known)
	for _, k := range set {
		if !slices.Contains(known, k) {
			t.Errorf("value %s is not in the chart's values.yaml", k)
		}
	}

	renderer, err := controlplane.ChartRendererFactory().NewChartRendererForShoot("1.36.3")
	if err != nil {
		t.Fatal(err)
	}
	c := &chart.Chart{Name: "gardener-extension-provider-metal", EmbeddedFS: charts.FS(), Path: charts.ExtensionPath}
	_, out, err := c.Render(renderer, "extension-provider-metal-x", nil, "1.36.3", "1.36.3", values)
	if err != nil {
		t.Fatal(err)
	}
	if want := "--controlplane-metal-ccm-image=ghcr.io/metalforge/metal-ccm:v0.1.0"; !strings.Contains(string(out), want) {
		t.Errorf("rendered chart lacks %s", want)
	}
}
