package helper

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/metalforge/metalforge/pkg/apis/metal"
	"github.com/metalforge/metalforge/pkg/apis/metal/v1alpha1"
)

const apiVersion = "apiVersion: metal.provider.extensions.gardener.cloud/v1alpha1\n"

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		data string
		into runtime.Object
		want string // substring of the error
	}{
		{"unknown field", apiVersion + "kind: WorkerConfig\nadditionalNetwork: [a]\n", &metal.WorkerConfig{}, `unknown field "additionalNetwork"`},
		{"unknown nested field", apiVersion + "kind: CloudProfileConfig\nmetalControlPlanes:\n  a:\n    endpoint: https://x\n    partitions:\n      p:\n        firewallType: [x]\n", &metal.CloudProfileConfig{}, `unknown field "metalControlPlanes.a.partitions.p.firewallType"`},
		{"duplicate field", `{"apiVersion":"metal.provider.extensions.gardener.cloud/v1alpha1","kind":"ControlPlaneConfig","networkAccessType":"baseline","networkAccessType":"forbidden"}`, &metal.ControlPlaneConfig{}, `duplicate field "networkAccessType"`},
		{"negative rate limit", apiVersion + "kind: InfrastructureConfig\nfirewall:\n  rateLimits: [{networkID: internet, rateLimit: -5}]\n", &metal.InfrastructureConfig{}, `cannot unmarshal number -5`},
		{"wrong type", apiVersion + "kind: InfrastructureConfig\nfirewall:\n  networks: internet\n", &metal.InfrastructureConfig{}, `networks`},
		{"missing kind", apiVersion + "firewall: {}\n", &metal.InfrastructureConfig{}, `apiVersion and kind are required`},
		{"missing apiVersion", "kind: InfrastructureConfig\n", &metal.InfrastructureConfig{}, `apiVersion and kind are required`},
		{"other kind", apiVersion + "kind: ControlPlaneConfig\n", &metal.InfrastructureConfig{}, `decode InfrastructureConfig: got metal.provider.extensions.gardener.cloud/v1alpha1, ControlPlaneConfig`},
		{"other group", "apiVersion: aws.provider.extensions.gardener.cloud/v1alpha1\nkind: InfrastructureConfig\n", &metal.InfrastructureConfig{}, `got aws.provider.extensions.gardener.cloud/v1alpha1, InfrastructureConfig`},
		{"unserved version", "apiVersion: metal.provider.extensions.gardener.cloud/v1beta1\nkind: InfrastructureConfig\n", &metal.InfrastructureConfig{}, `version metal.provider.extensions.gardener.cloud/v1beta1 is not served`},
		{"not yaml", "kind: [", &metal.InfrastructureConfig{}, `decode InfrastructureConfig`},
		{"versioned target", apiVersion + "kind: InfrastructureConfig\n", &v1alpha1.InfrastructureConfig{}, `is not an internal metal type`},
	}
	c := NewCodec()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := c.Decode([]byte(tt.data), tt.into)
			if err == nil {
				t.Fatalf("decoded %q", tt.data)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestEncodeJSON(t *testing.T) {
	c := NewCodec()
	in := &metal.InfrastructureStatus{Firewall: metal.FirewallStatus{MachineID: "m-1"}, NetworkID: "n-1",
		EgressIPs: []metal.EgressIP{{NetworkID: "internet", IP: "203.0.113.10"}}}
	b, err := c.EncodeJSON(in)
	if err != nil {
		t.Fatal(err)
	}
	var generic map[string]any
	if err := json.Unmarshal(b, &generic); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"apiVersion": "metal.provider.extensions.gardener.cloud/v1alpha1",
		"kind":       "InfrastructureStatus",
		"firewall":   map[string]any{"machineID": "m-1"},
		"networkID":  "n-1",
		"egressIPs":  []any{map[string]any{"networkID": "internet", "ip": "203.0.113.10"}},
	}
	if diff := cmp.Diff(want, generic); diff != "" {
		t.Errorf("encoded JSON differs (-want +got):\n%s", diff)
	}
	back := &metal.InfrastructureStatus{}
	if err := c.Decode(b, back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in, back); diff != "" {
		t.Errorf("round trip differs (-want +got):\n%s", diff)
	}

	ws := &metal.WorkerStatus{MachineImages: []metal.MachineImage{{Name: "debian", Version: "12.0.0", Image: "debian-12"}}}
	b, err = c.EncodeJSON(ws)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), `{"kind":"WorkerStatus","apiVersion":"metal.provider.extensions.gardener.cloud/v1alpha1","machineImages":[{"name":"debian","version":"12.0.0","image":"debian-12"}]}`; strings.TrimSpace(got) != want {
		t.Errorf("got %s, want %s", got, want)
	}
}
