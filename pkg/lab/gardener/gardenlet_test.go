package gardener_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/metalforge/metalforge/pkg/lab/gardener"
)

// TestLoadManifestsStrict: the example manifests decode into gardener's types, and a misspelt
// field in any of them is an error, not silently dropped.
func TestLoadManifestsStrict(t *testing.T) {
	m, err := gardener.LoadManifests(exampleGardener)
	check(t, err)
	g := &gardener.Gardenlet{Manifests: m, UID: "uid"}
	if got, want := g.Namespace(), "shoot--demo--demo"; got != want {
		t.Errorf("namespace %q, want %q", got, want)
	}
	for _, tc := range []struct{ file, old, new string }{
		{"shoot.yaml", "  purpose: evaluation", "  purpose: evaluation\n  porpose: typo"},
		{"cloudprofile.yaml", "  type: metal", "  type: metal\n  flavour: x"},
		{"seed.yaml", "    region: lab", "    region: lab\n    regio: lab"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range []string{"shoot.yaml", "cloudprofile.yaml", "seed.yaml"} {
				raw, err := os.ReadFile(filepath.Join(exampleGardener, f))
				check(t, err)
				s := string(raw)
				if f == tc.file {
					if !strings.Contains(s, tc.old) {
						t.Fatalf("%s lacks %q", f, tc.old)
					}
					s = strings.Replace(s, tc.old, tc.new, 1)
				}
				check(t, os.WriteFile(filepath.Join(dir, f), []byte(s), 0o644))
			}
			if _, err := gardener.LoadManifests(dir); err == nil || !strings.Contains(err.Error(), tc.file) {
				t.Errorf("LoadManifests with an unknown field in %s: %v, want an error naming the file", tc.file, err)
			}
		})
	}
}

// TestControlPlaneObjects: the ControlPlane carries the shoot's controlPlaneConfig, region,
// credentials and the infrastructure status; the generic token kubeconfig is a kubeconfig for the
// shoot's kube-apiserver with gardener's token file, under the name the Cluster announces.
func TestControlPlaneObjects(t *testing.T) {
	m, err := gardener.LoadManifests(exampleGardener)
	check(t, err)
	g := &gardener.Gardenlet{Manifests: m, UID: "uid"}
	status := &runtime.RawExtension{Raw: []byte(`{"apiVersion":"metal.provider.extensions.gardener.cloud/v1alpha1","kind":"InfrastructureStatus","networkID":"n"}`)}
	cp := g.ControlPlane(status)
	if cp.Name != "demo" || cp.Namespace != g.Namespace() || cp.Spec.Type != "metal" || cp.Spec.Region != "lab" ||
		cp.Spec.SecretRef.Name != gardener.CloudProviderSecretName || string(cp.Spec.InfrastructureProviderStatus.Raw) != string(status.Raw) ||
		string(cp.Spec.ProviderConfig.Raw) != string(m.Shoot.Spec.Provider.ControlPlaneConfig.Raw) ||
		cp.Annotations["gardener.cloud/operation"] != "reconcile" {
		t.Errorf("controlplane %+v", cp)
	}
	s, err := g.GenericTokenKubeconfig()
	check(t, err)
	cfg, err := clientcmd.Load(s.Data["kubeconfig"])
	check(t, err)
	ctx := cfg.Contexts[cfg.CurrentContext]
	if ctx == nil || cfg.Clusters[ctx.Cluster].Server != "https://kube-apiserver" || len(cfg.Clusters[ctx.Cluster].CertificateAuthorityData) == 0 ||
		cfg.AuthInfos[ctx.AuthInfo].TokenFile != "/var/run/secrets/gardener.cloud/shoot/generic-kubeconfig/token" {
		t.Errorf("generic token kubeconfig:\n%s", s.Data["kubeconfig"])
	}
	cluster, err := g.Cluster()
	check(t, err)
	if got := cluster.Annotations["generic-token-kubeconfig.secret.gardener.cloud/name"]; got != s.Name || s.Namespace != g.Namespace() {
		t.Errorf("cluster announces %q, secret %s/%s", got, s.Namespace, s.Name)
	}
}
