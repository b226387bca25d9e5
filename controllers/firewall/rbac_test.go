package firewall

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/gardener/gardener/pkg/chartrenderer"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

const chartDir = "../../charts/firewall-controller"

// renderChart renders charts/firewall-controller with the helm engine (gardener's chart
// renderer, as the control plane actuator will) and returns the decoded objects.
func renderChart(t testing.TB, values map[string]any) []client.Object {
	t.Helper()
	var archive bytes.Buffer
	gz := gzip.NewWriter(&archive)
	tw := tar.NewWriter(gz)
	err := filepath.WalkDir(chartDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(chartDir, path)
		if err := tw.WriteHeader(&tar.Header{Name: "firewall-controller/" + rel, Mode: 0o644, Size: int64(len(b))}); err != nil {
			return err
		}
		_, err = tw.Write(b)
		return err
	})
	if err == nil {
		err = errors.Join(tw.Close(), gz.Close())
	}
	if err != nil {
		t.Fatalf("pack chart: %v", err)
	}
	r := chartrenderer.NewWithServerVersion(&version.Info{GitVersion: "v1.36.3", Major: "1", Minor: "36"})
	rendered, err := r.RenderArchive(archive.Bytes(), "firewall-controller", "kube-system", values)
	if err != nil {
		t.Fatalf("render chart: %v", err)
	}
	dec := serializer.NewCodecFactory(testScheme(t)).UniversalDeserializer()
	rd := utilyaml.NewYAMLReader(bufioReader(rendered.Manifest()))
	var objs []client.Object
	for {
		doc, err := rd.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(bytes.TrimSpace(bytes.TrimPrefix(bytes.TrimSpace(doc), []byte("---")))) == 0 || !bytes.Contains(doc, []byte("kind:")) {
			continue
		}
		obj, _, err := dec.Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("decode rendered chart: %v\n%s", err, doc)
		}
		objs = append(objs, obj.(client.Object))
	}
	return objs
}

// chartUser installs the rendered chart (default values) and returns a rest.Config for the user
// its RBAC binds, so the controller runs with exactly the chart's rights.
func chartUser(t testing.TB) *rest.Config {
	t.Helper()
	c := kclient(t)
	var user string
	objs := renderChart(t, map[string]any{})
	for _, o := range objs {
		if b, ok := o.(*rbacv1.ClusterRoleBinding); ok {
			for _, s := range b.Subjects {
				if s.Kind == rbacv1.UserKind {
					user = s.Name
				}
			}
		}
		if err := c.Create(context.Background(), o); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("create %T %s: %v", o, o.GetName(), err)
		}
		t.Cleanup(func() { _ = c.Delete(context.Background(), o) })
	}
	if user == "" || len(objs) != 2 {
		t.Fatalf("chart renders %d objects and binds user %q; want a ClusterRole bound to a user", len(objs), user)
	}
	cfg, err := env.UserConfig(user)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestChartValues renders the chart with the optional parts switched on.
func TestChartValues(t *testing.T) {
	objs := renderChart(t, map[string]any{"createNamespace": true, "serviceAccount": map[string]any{"create": true}})
	kinds := map[string]int{}
	for _, o := range objs {
		kinds[filepath.Base(o.GetObjectKind().GroupVersionKind().Kind)]++
	}
	for _, k := range []string{"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding"} {
		if kinds[k] != 1 {
			t.Errorf("%d objects of kind %s, want 1 (all: %v)", kinds[k], k, kinds)
		}
	}
}
