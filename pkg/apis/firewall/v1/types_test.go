package v1

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

// A policy the way metal-stack.io/v1 users write it, with every field: it must decode without
// loss (same JSON field names) and deep-copy to an equal, independent object.
const manifest = `
apiVersion: metal-stack.io/v1
kind: ClusterwideNetworkPolicy
metadata:
  name: allow-all
  namespace: firewall
spec:
  description: every field
  ingress:
  - from:
    - cidr: 198.51.100.0/24
      except:
      - 198.51.100.128/25
    ports:
    - protocol: TCP
      port: 8000
      endPort: 8080
  egress:
  - to:
    - cidr: 0.0.0.0/0
    ports:
    - protocol: UDP
      port: 53
  - toFQDNs:
    - matchName: example.com
    - matchPattern: "*.example.org"
    ports:
    - port: 443
status:
  state: Applied
  message: ""
  observedGeneration: 3
`

func TestManifestRoundTrip(t *testing.T) {
	var pol ClusterwideNetworkPolicy
	if err := yaml.UnmarshalStrict([]byte(manifest), &pol); err != nil {
		t.Fatalf("strict decode: %v", err)
	}
	out, err := json.Marshal(&pol)
	if err != nil {
		t.Fatal(err)
	}
	var want, got map[string]any
	if err := yaml.Unmarshal([]byte(manifest), &want); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	// Empty strings are omitted on the way out; creationTimestamp is metav1's.
	delete(want["status"].(map[string]any), "message")
	delete(got["metadata"].(map[string]any), "creationTimestamp")
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("round trip changes the manifest (-want +got):\n%s", d)
	}

	cp := pol.DeepCopy()
	if d := cmp.Diff(&pol, cp); d != "" {
		t.Errorf("deep copy differs:\n%s", d)
	}
	cp.Spec.Ingress[0].From[0].Except[0] = "changed"
	*cp.Spec.Ingress[0].Ports[0].EndPort = 1
	if pol.Spec.Ingress[0].From[0].Except[0] == "changed" || *pol.Spec.Ingress[0].Ports[0].EndPort == 1 {
		t.Error("deep copy shares memory with the original")
	}
}

func TestScheme(t *testing.T) {
	s := runtime.NewScheme()
	if err := AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"ClusterwideNetworkPolicy", "ClusterwideNetworkPolicyList"} {
		if !s.Recognizes(GroupVersion().WithKind(kind)) {
			t.Errorf("scheme does not know %s", kind)
		}
	}
	if got := GroupVersion().String(); got != "metal-stack.io/v1" {
		t.Errorf("group version %s", got)
	}
}
