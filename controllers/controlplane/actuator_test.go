package controlplane_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	gardencorev1beta1 "github.com/gardener/gardener/pkg/apis/core/v1beta1"
	extensionsv1alpha1 "github.com/gardener/gardener/pkg/apis/extensions/v1alpha1"
	resourcesv1alpha1 "github.com/gardener/gardener/pkg/apis/resources/v1alpha1"
	"github.com/gardener/gardener/pkg/utils/managedresources"
	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	yamlserializer "k8s.io/apimachinery/pkg/runtime/serializer/yaml"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/metalforge/metalforge/controllers/controlplane"
	"github.com/metalforge/metalforge/controllers/internal/extensiontest"
	"github.com/metalforge/metalforge/pkg/apis/metal/install"
	"github.com/metalforge/metalforge/pkg/client/clienttest"
	"github.com/metalforge/metalforge/pkg/kubetest"
)

// env is the package's control plane (it plays seed and, for validating the shoot objects, shoot),
// set by TestMain.
var env *kubetest.Env

func TestMain(m *testing.M) {
	crds, err := extensiontest.ModuleFiles("github.com/gardener/gardener",
		"pkg/component/extensions/crds/assets/crd-extensions.gardener.cloud_clusters.yaml",
		"pkg/component/extensions/crds/assets/crd-extensions.gardener.cloud_controlplanes.yaml",
		"pkg/component/gardener/resourcemanager/assets/crd-resources.gardener.cloud_managedresources.yaml")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(kubetest.Main(m, kubetest.Options{CRDDirs: crds}, &env))
}

func check(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func newScheme(t testing.TB) *runtime.Scheme {
	return extensiontest.Scheme(t, extensionsv1alpha1.AddToScheme, resourcesv1alpha1.AddToScheme, install.AddToScheme)
}

func kube(t testing.TB) client.Client {
	t.Helper()
	return extensiontest.Client(t, env.Config, newScheme(t))
}

func startManager(t *testing.T) {
	t.Helper()
	extensiontest.StartManager(t, env.Config, newScheme(t), func(ctx context.Context, mgr manager.Manager) error {
		return controlplane.AddToManager(ctx, mgr, controlplane.AddOptions{IgnoreOperationAnnotation: true,
			Actuator: controlplane.Config{MetalCCMImage: "registry.example/metal-ccm:v9"}})
	})
}

func mustJSON(t testing.TB, v any) []byte {
	b, err := json.Marshal(v)
	check(t, err)
	return b
}

const (
	partition = "fra-equ01"
	clusterID = "8d3c0e6a-1111-4222-8333-444455556666"
	endpoint  = "http://metal-api.example:8080"
)

// cluster is the Cluster gardenlet writes for a shoot in partition fra-equ01 with network isolation.
func cluster(t testing.TB, ns string) *extensionsv1alpha1.Cluster {
	infra := map[string]any{
		"apiVersion": "metal.provider.extensions.gardener.cloud/v1alpha1", "kind": "InfrastructureConfig",
		"partitionID": partition, "projectID": "proj-1",
		"firewall": map[string]any{"size": "v1-small-x86", "image": "firewall-debian-12", "networks": []string{"internet"}},
	}
	profileCfg := map[string]any{
		"apiVersion": "metal.provider.extensions.gardener.cloud/v1alpha1", "kind": "CloudProfileConfig",
		"metalControlPlanes": map[string]any{"prod": map[string]any{"endpoint": endpoint,
			"partitions": map[string]any{partition: map[string]any{"networkIsolation": map[string]any{
				"allowedNetworks": map[string]any{"egress": []string{"100.64.0.0/10"}, "ingress": []string{"10.0.0.0/8"}},
				"dnsServers":      []string{"100.64.0.53"},
				"ntpServers":      []string{"100.64.0.123"},
				"registryMirrors": []any{map[string]any{"name": "mirror", "endpoint": "https://r.example", "ip": "100.64.0.80",
					"port": 443, "mirrorOf": []string{"docker.io"}}},
			}}}}},
	}
	shoot := &gardencorev1beta1.Shoot{
		TypeMeta:   metav1.TypeMeta{APIVersion: "core.gardener.cloud/v1beta1", Kind: "Shoot"},
		ObjectMeta: metav1.ObjectMeta{Name: "cp", Namespace: "garden-test"},
		Spec: gardencorev1beta1.ShootSpec{
			Region:     "eu-central",
			Kubernetes: gardencorev1beta1.Kubernetes{Version: "1.36.3"},
			Provider: gardencorev1beta1.Provider{Type: controlplane.Type,
				InfrastructureConfig: &runtime.RawExtension{Raw: mustJSON(t, infra)}},
		},
		Status: gardencorev1beta1.ShootStatus{UID: types.UID(clusterID), TechnicalID: ns},
	}
	profile := &gardencorev1beta1.CloudProfile{
		TypeMeta:   metav1.TypeMeta{APIVersion: "core.gardener.cloud/v1beta1", Kind: "CloudProfile"},
		ObjectMeta: metav1.ObjectMeta{Name: "metal"},
		Spec: gardencorev1beta1.CloudProfileSpec{Type: controlplane.Type,
			ProviderConfig: &runtime.RawExtension{Raw: mustJSON(t, profileCfg)}},
	}
	seed := &gardencorev1beta1.Seed{
		TypeMeta:   metav1.TypeMeta{APIVersion: "core.gardener.cloud/v1beta1", Kind: "Seed"},
		ObjectMeta: metav1.ObjectMeta{Name: "seed"},
	}
	return &extensionsv1alpha1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: ns},
		Spec: extensionsv1alpha1.ClusterSpec{
			Shoot:        runtime.RawExtension{Raw: mustJSON(t, shoot)},
			CloudProfile: runtime.RawExtension{Raw: mustJSON(t, profile)},
			Seed:         &runtime.RawExtension{Raw: mustJSON(t, seed)},
		},
	}
}

// objects decodes the objects of a ManagedResource (as gardener-resource-manager would).
func objects(t testing.TB, c client.Client, ns, name string) []*unstructured.Unstructured {
	t.Helper()
	mr := &resourcesv1alpha1.ManagedResource{}
	check(t, c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, mr))
	dec := yamlserializer.NewDecodingSerializer(unstructured.UnstructuredJSONScheme)
	var out []*unstructured.Unstructured
	for _, ref := range mr.Spec.SecretRefs {
		s := &corev1.Secret{}
		check(t, c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: ref.Name}, s))
		objs, err := managedresources.ExtractObjectsFromSecret(dec, s)
		check(t, err)
		for _, o := range objs {
			out = append(out, o.(*unstructured.Unstructured))
		}
	}
	return out
}

func ptrString(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

// TestReconcileAndDelete drives a ControlPlane through gardener's controller with the actuator:
// the seed ManagedResource carries metal-ccm configured from the shoot, the shoot ManagedResources
// carry the CRD and the default policies (which the API server accepts against that CRD), and
// deleting the ControlPlane removes them again.
func TestReconcileAndDelete(t *testing.T) {
	ctx := context.Background()
	c := kube(t)
	ns := "shoot--test--cp"
	check(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	check(t, c.Create(ctx, cluster(t, ns)))
	check(t, c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "cloudprovider", Namespace: ns},
		Data: map[string][]byte{"metalAPIToken": []byte("editor-token")}}))
	cp := &extensionsv1alpha1.ControlPlane{
		ObjectMeta: metav1.ObjectMeta{Name: "cp", Namespace: ns},
		Spec: extensionsv1alpha1.ControlPlaneSpec{
			DefaultSpec: extensionsv1alpha1.DefaultSpec{Type: controlplane.Type,
				ProviderConfig: &runtime.RawExtension{Raw: []byte(`{"apiVersion":"metal.provider.extensions.gardener.cloud/v1alpha1",
"kind":"ControlPlaneConfig","networkAccessType":"restricted","cloudControllerManager":{"featureGates":{"Foo":true}}}`)}},
			Region:                       "eu-central",
			SecretRef:                    corev1.SecretReference{Name: "cloudprovider", Namespace: ns},
			InfrastructureProviderStatus: &runtime.RawExtension{Raw: []byte(`{"apiVersion":"metal.provider.extensions.gardener.cloud/v1alpha1","kind":"InfrastructureStatus","firewall":{"machineID":"fw-42"}}`)},
		},
	}
	check(t, c.Create(ctx, cp))
	startManager(t)

	start := time.Now()
	clienttest.WaitFor(t, 60*time.Second, "controlplane reconciled", func() (bool, error) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(cp), cp); err != nil {
			return false, err
		}
		op := cp.Status.LastOperation
		if op == nil {
			return false, fmt.Errorf("no last operation")
		}
		return op.State == gardencorev1beta1.LastOperationStateSucceeded, fmt.Errorf("%s: %s", op.State, op.Description)
	})
	t.Logf("reconciled in %v", time.Since(start).Round(time.Millisecond))

	// Seed: metal-ccm, applied by the seed's resource manager; the shoot's objects by the shoot's.
	for name, class := range map[string]string{"extension-controlplane-seed": "seed", "extension-controlplane-shoot": "", "extension-controlplane-shoot-crds": ""} {
		mr := &resourcesv1alpha1.ManagedResource{}
		check(t, c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, mr))
		if got := ptrString(mr.Spec.Class); got != class {
			t.Errorf("managed resource %s has class %q, want %q", name, got, class)
		}
	}
	seed := objects(t, c, ns, "extension-controlplane-seed")
	dep := find(seed, "Deployment", "cloud-controller-manager")
	if dep == nil {
		t.Fatalf("seed managed resource has no metal-ccm Deployment: %v", seed)
	}
	d := &appsv1.Deployment{}
	check(t, runtime.DefaultUnstructuredConverter.FromUnstructured(dep.Object, d))
	ctr := d.Spec.Template.Spec.Containers[0]
	if ctr.Image != "registry.example/metal-ccm:v9" {
		t.Errorf("image = %s", ctr.Image)
	}
	for _, arg := range []string{"--cloud-provider=metal", "--cluster-name=" + ns, "--feature-gates=Foo=true",
		"--kubeconfig=/var/run/secrets/gardener.cloud/shoot/generic-kubeconfig/kubeconfig"} {
		if !slices.Contains(ctr.Command, arg) {
			t.Errorf("metal-ccm command %v lacks %s", ctr.Command, arg)
		}
	}
	if got := d.Spec.Template.Annotations["metalforge.io/firewall-machine"]; got != "fw-42" {
		t.Errorf("firewall machine annotation = %q", got)
	}
	for _, k := range []string{"checksum/secret-cloudprovider", "checksum/secret-" + controlplane.ServerSecretName, "checksum/cloud-config"} {
		if d.Spec.Template.Annotations[k] == "" {
			t.Errorf("pod template lacks annotation %s: %v", k, d.Spec.Template.Annotations)
		}
	}
	vols := map[string]corev1.Volume{}
	for _, v := range d.Spec.Template.Spec.Volumes {
		vols[v.Name] = v
	}
	server := &corev1.Secret{}
	check(t, c.Get(ctx, client.ObjectKey{Namespace: ns, Name: vols["server"].Secret.SecretName}, server))
	if len(server.Data["tls.crt"]) == 0 || !strings.HasPrefix(server.Name, controlplane.ServerSecretName) {
		t.Errorf("server secret %s has no certificate", server.Name)
	}
	if got := vols["kubeconfig"].Projected.Sources[0].Secret.Name; got != "generic-token-kubeconfig" {
		t.Errorf("generic kubeconfig secret = %s", got)
	}
	access := &corev1.Secret{}
	check(t, c.Get(ctx, client.ObjectKey{Namespace: ns, Name: controlplane.AccessSecretName}, access))
	if access.Annotations["serviceaccount.resources.gardener.cloud/name"] != "cloud-controller-manager" {
		t.Errorf("shoot access secret annotations = %v", access.Annotations)
	}
	cm := find(seed, "ConfigMap", "cloud-controller-manager-config")
	if cm == nil {
		t.Fatal("no cloud config")
	}
	cloud, _, _ := unstructured.NestedString(cm.Object, "data", "cloud.yaml")
	wantCloud := `metalAPIURL: "` + endpoint + `"
metalAPIToken: "@/etc/metal/credentials/metalAPIToken"
projectID: "proj-1"
clusterID: "` + clusterID + `"
defaultExternalNetwork: "internet"
loadBalancer: "metallb"
`
	if diff := cmp.Diff(wantCloud, cloud); diff != "" {
		t.Errorf("cloud config (-want +got):\n%s", diff)
	}

	// Shoot: CRD and policies; the API server (as the shoot) accepts them.
	crds := objects(t, c, ns, "extension-controlplane-shoot-crds")
	if len(crds) != 1 || crds[0].GetName() != "clusterwidenetworkpolicies.metal-stack.io" {
		t.Fatalf("shoot CRDs = %v", crds)
	}
	shoot := objects(t, c, ns, "extension-controlplane-shoot")
	var policies []string
	for _, o := range shoot {
		if o.GetKind() == "ClusterwideNetworkPolicy" {
			policies = append(policies, o.GetName())
		}
	}
	wantPolicies := []string{"egress-allow-dns", "egress-allow-ntp", "egress-allow-registry-mirror-0", "egress-allow-networks", "ingress-allow-networks"}
	if diff := cmp.Diff(wantPolicies, policies); diff != "" {
		t.Errorf("policies (-want +got):\n%s", diff)
	}
	check(t, c.Create(ctx, crds[0]))
	clienttest.WaitFor(t, 30*time.Second, "CRD established", func() (bool, error) {
		u := &unstructured.UnstructuredList{}
		u.SetAPIVersion("metal-stack.io/v1")
		u.SetKind("ClusterwideNetworkPolicyList")
		err := c.List(ctx, u, client.InNamespace("default"))
		return err == nil, err
	})
	for _, o := range shoot {
		if err := c.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Errorf("shoot object %s %s refused: %v", o.GetKind(), o.GetName(), err)
		}
	}

	// Delete.
	check(t, c.Delete(ctx, cp))
	clienttest.WaitFor(t, 60*time.Second, "controlplane gone", func() (bool, error) {
		err := c.Get(ctx, client.ObjectKeyFromObject(cp), cp)
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, fmt.Errorf("still there: %v", err)
	})
	mrs := &resourcesv1alpha1.ManagedResourceList{}
	check(t, c.List(ctx, mrs, client.InNamespace(ns)))
	if len(mrs.Items) != 0 {
		t.Errorf("managed resources left: %d", len(mrs.Items))
	}
	secrets := &corev1.SecretList{}
	check(t, c.List(ctx, secrets, client.InNamespace(ns)))
	var left []string
	for _, s := range secrets.Items {
		left = append(left, s.Name)
	}
	// Only the shoot's credentials stay: CA, server certificate, shoot access secret and the
	// managed resources' secrets are gone.
	if diff := cmp.Diff([]string{"cloudprovider"}, left); diff != "" {
		t.Errorf("secrets after delete (-want +got):\n%s", diff)
	}
}
