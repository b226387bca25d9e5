package charts_test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gardener/gardener/pkg/utils/chart"
	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/metalforge/metalforge/charts"
	"github.com/metalforge/metalforge/controllers/controlplane"
	"github.com/metalforge/metalforge/pkg/apis/metal"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func ptr[T any](v T) *T { return &v }

// fraIsolation is the network isolation of partition fra-equ01 in example/gardener/cloudprofile.yaml.
var fraIsolation = &metal.NetworkIsolation{
	AllowedNetworks: metal.AllowedNetworks{Ingress: []string{"10.0.0.0/8"}, Egress: []string{"100.64.0.0/10"}},
	DNSServers:      []string{"100.64.0.53"},
	NTPServers:      []string{"100.64.0.123"},
	RegistryMirrors: []metal.RegistryMirror{{Name: "fra registry mirror", Endpoint: "https://registry.fra.example.com",
		IP: "100.64.0.80", Port: 443, MirrorOf: []string{"docker.io", "ghcr.io", "registry.k8s.io"}}},
}

// TestRender renders every chart through the renderer and image vector the ControlPlane actuator
// uses and compares the manifests with testdata/<name>.yaml.
func TestRender(t *testing.T) {
	seedValues := func(cfg *metal.ControlPlaneConfig, replicas int) map[string]any {
		return controlplane.ControlPlaneValues(controlplane.ControlPlaneInput{
			Namespace: "shoot--demo--demo", ClusterID: "3f1b6c9e-0000-4000-8000-000000000001",
			MetalAPIURL: "http://10.255.0.1:8080", Config: cfg,
			Infrastructure: &metal.InfrastructureConfig{PartitionID: "lab", ProjectID: "demo",
				Firewall: metal.Firewall{Networks: []string{"internet", "mpls"}}},
			Status:                  &metal.InfrastructureStatus{Firewall: metal.FirewallStatus{MachineID: "fw-0001"}},
			Replicas:                replicas,
			ServerSecretName:        "cloud-controller-manager-server-ab12cd34",
			CredentialsSecretName:   "cloudprovider",
			GenericKubeconfigSecret: "generic-token-kubeconfig-92e9ae14",
			Checksums: map[string]string{"cloudprovider": "8f2a", "cloud-controller-manager-server": "77c1",
				"unrelated": "0000"},
		})
	}
	shootValues := func(access metal.NetworkAccessType, iso *metal.NetworkIsolation) map[string]any {
		v, err := controlplane.ShootValues(access, iso)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	extension := &chart.Chart{Name: "gardener-extension-provider-metal", EmbeddedFS: charts.FS(), Path: charts.ExtensionPath}
	for _, tc := range []struct {
		golden    string
		chart     *chart.Chart
		namespace string
		values    map[string]any
	}{
		{"seed-controlplane-default", controlplane.SeedChart(), "shoot--demo--demo", seedValues(&metal.ControlPlaneConfig{}, 1)},
		{"seed-controlplane-configured", controlplane.SeedChart(), "shoot--demo--demo", seedValues(&metal.ControlPlaneConfig{
			CloudControllerManager: &metal.CloudControllerManagerConfig{DefaultExternalNetwork: ptr("mpls"),
				FeatureGates: map[string]bool{"Zeta": false, "Alpha": true}}}, 1)},
		{"seed-controlplane-hibernated", controlplane.SeedChart(), "shoot--demo--demo", seedValues(&metal.ControlPlaneConfig{}, 0)},
		{"shoot-controlplane-baseline", controlplane.ShootChart(), "kube-system", shootValues(metal.NetworkAccessBaseline, nil)},
		{"shoot-controlplane-restricted", controlplane.ShootChart(), "kube-system", shootValues(metal.NetworkAccessRestricted, fraIsolation)},
		{"shoot-controlplane-forbidden", controlplane.ShootChart(), "kube-system", shootValues(metal.NetworkAccessForbidden, fraIsolation)},
		{"gardener-extension-provider-metal", extension, "extension-provider-metal", nil},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			renderer, err := controlplane.ChartRendererFactory().NewChartRendererForShoot("1.36.3")
			if err != nil {
				t.Fatal(err)
			}
			iv := controlplane.Config{}.ImageVector()
			_, got, err := tc.chart.Render(renderer, tc.namespace, iv, "1.36.3", "1.36.3", tc.values)
			if err != nil {
				t.Fatal(err)
			}
			// Every document must be a Kubernetes object.
			for _, doc := range strings.Split(string(got), "\n---\n") {
				if strings.TrimSpace(doc) == "" {
					continue
				}
				var obj struct {
					APIVersion string `json:"apiVersion"`
					Kind       string `json:"kind"`
					Metadata   struct {
						Name string `json:"name"`
					} `json:"metadata"`
				}
				if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
					t.Fatalf("document does not parse: %v\n%s", err, doc)
				}
				if lines := strings.TrimSpace(doc); strings.Count(lines, "\n") > 0 && (obj.APIVersion == "" || obj.Kind == "" || obj.Metadata.Name == "") {
					t.Fatalf("document is no object:\n%s", doc)
				}
			}
			path := filepath.Join("testdata", tc.golden+".yaml")
			if *update {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("rendered %s differs from %s (-want +got):\n%s", tc.golden, path, diff)
			}
		})
	}
}

// TestShootCRDsIsFirewallControllers checks that the shoot CRDs chart renders the CRD of
// charts/firewall-controller byte for byte (no golden file: that chart owns the manifest).
func TestShootCRDsIsFirewallControllers(t *testing.T) {
	onDisk, err := os.ReadFile(charts.CWNPCRDPath)
	if err != nil {
		t.Fatal(err)
	}
	v, err := controlplane.ShootCRDsValues()
	if err != nil {
		t.Fatal(err)
	}
	renderer, err := controlplane.ChartRendererFactory().NewChartRendererForShoot("1.36.3")
	if err != nil {
		t.Fatal(err)
	}
	_, got, err := controlplane.ShootCRDsChart().Render(renderer, "kube-system", nil, "1.36.3", "1.36.3", v)
	if err != nil {
		t.Fatal(err)
	}
	const header = "\n---\n# Source: shoot-crds/templates/crd-clusterwidenetworkpolicies.yaml\n"
	if !strings.HasPrefix(string(got), header) {
		t.Fatalf("rendered chart does not start with %q:\n%s", header, got)
	}
	want := strings.TrimSpace(strings.TrimPrefix(string(onDisk), "---\n"))
	if diff := cmp.Diff(want, strings.TrimSpace(strings.TrimPrefix(string(got), header))); diff != "" {
		t.Errorf("rendered crd differs from %s (-want +got):\n%s", charts.CWNPCRDPath, diff)
	}
}
