package kubetest_test

import (
	"os"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/metalforge/metalforge/pkg/kubetest"
)

// env is the package's control plane, set once by TestMain and only read by the tests.
var env *kubetest.Env

func TestMain(m *testing.M) {
	os.Exit(kubetest.Main(m, kubetest.Options{CRDDirs: []string{"testdata/crds"}}, &env))
}

func TestServerVersion(t *testing.T) {
	v, err := env.Kube.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v.GitVersion != "v1.36.3" {
		t.Errorf("kube-apiserver reports %q, want v1.36.3 (ldflags of hack/kube.sh)", v.GitVersion)
	}
	t.Logf("kube-apiserver %s, started in %v from %s", v.GitVersion, env.Started, env.Assets)
}

func TestCRDInstalledAndValidated(t *testing.T) {
	ctx := t.Context()
	gvr := schema.GroupVersionResource{Group: "test.metalforge.io", Version: "v1", Resource: "widgets"}
	w := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "test.metalforge.io/v1", "kind": "Widget",
		"metadata": map[string]any{"generateName": "w-", "namespace": "default"},
		"spec":     map[string]any{"size": int64(3)},
	}}
	if _, err := env.Dynamic.Resource(gvr).Namespace("default").Create(ctx, w, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create widget: %v", err)
	}
	w.SetGenerateName("bad-")
	w.Object["spec"] = map[string]any{"size": int64(0)}
	_, err := env.Dynamic.Resource(gvr).Namespace("default").Create(ctx, w, metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) {
		t.Errorf("widget with size 0: err %v, want Invalid from the CRD schema", err)
	}
}

func TestNamespacesAndUsers(t *testing.T) {
	ctx := t.Context()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "kubetest-"}}
	if err := env.Client.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	if ns.Name == "" || ns.UID == "" {
		t.Errorf("created namespace %+v has no name or uid", ns.ObjectMeta)
	}
	cfg, err := env.UserConfig("nobody")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != env.Config.Host {
		t.Errorf("user config host %s, want %s", cfg.Host, env.Config.Host)
	}
}
