package firewall

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	fwv1 "github.com/metalforge/metalforge/pkg/apis/firewall/v1"
)

// TestDefaultPoliciesAccepted takes the ClusterwideNetworkPolicies the Gardener control plane
// chart renders into every shoot (charts/testdata/shoot-controlplane-*.yaml, the charts package's
// golden files) and checks that the API server accepts them under this package's CRD (dry run)
// and that the firewall applies them.
func TestDefaultPoliciesAccepted(t *testing.T) {
	files, err := filepath.Glob("../../charts/testdata/shoot-controlplane-*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Skip("no rendered shoot control plane charts in charts/testdata")
	}
	f := loadFixture(t)
	c := kclient(t)
	ensureNamespaces(t, c, "firewall")
	n := 0
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var pols []fwv1.ClusterwideNetworkPolicy
		r := utilyaml.NewYAMLReader(bufioReader(raw))
		for {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(doc, []byte("kind: ClusterwideNetworkPolicy")) {
				continue
			}
			var pol fwv1.ClusterwideNetworkPolicy
			if err := yaml.UnmarshalStrict(doc, &pol); err != nil {
				t.Errorf("%s: policy does not decode strictly: %v\n%s", file, err, doc)
				continue
			}
			if err := c.Create(context.Background(), pol.DeepCopy(), client.DryRunAll); err != nil {
				t.Errorf("%s: API server rejects %s/%s: %v", filepath.Base(file), pol.Namespace, pol.Name, err)
			}
			pols = append(pols, pol)
			n++
		}
		p, err := Build(Input{Firewall: f.fw, Policies: pols})
		if err != nil {
			t.Fatal(err)
		}
		for k, o := range p.Policies {
			if o.State != fwv1.StateApplied {
				t.Errorf("%s: %s is %s: %s", filepath.Base(file), k, o.State, o.Message)
			}
		}
	}
	if n == 0 {
		t.Errorf("no ClusterwideNetworkPolicy in %v", files)
	}
	t.Logf("%d policies from %d files accepted and applied", n, len(files))
}
