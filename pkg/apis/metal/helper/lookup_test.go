package helper

import (
	"testing"

	"github.com/metalforge/metalforge/pkg/apis/metal"
)

func class(c metal.VersionClassification) *metal.VersionClassification { return &c }

func TestFindPartition(t *testing.T) {
	cp := &metal.CloudProfileConfig{MetalControlPlanes: map[string]metal.MetalControlPlane{
		"prod": {Endpoint: "https://prod", Partitions: map[string]metal.Partition{"a": {FirewallTypes: []string{"fw-a"}}, "b": {}}},
		"test": {Endpoint: "https://test", Partitions: map[string]metal.Partition{"lab": {FirewallTypes: []string{"fw-lab"}}}},
	}}
	tests := []struct {
		partition string
		wantName  string
		wantFW    []string
		wantOK    bool
	}{
		{"a", "prod", []string{"fw-a"}, true},
		{"b", "prod", nil, true},
		{"lab", "test", []string{"fw-lab"}, true},
		{"nope", "", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.partition, func(t *testing.T) {
			name, mcp, p, ok := FindPartition(cp, tt.partition)
			if ok != tt.wantOK || name != tt.wantName {
				t.Fatalf("got %q %v, want %q %v", name, ok, tt.wantName, tt.wantOK)
			}
			if !ok {
				if mcp != nil || p != nil {
					t.Error("not found but returned settings")
				}
				return
			}
			if mcp.Endpoint != "https://"+name {
				t.Errorf("endpoint %q of control plane %q", mcp.Endpoint, name)
			}
			if len(p.FirewallTypes) != len(tt.wantFW) || (len(tt.wantFW) > 0 && p.FirewallTypes[0] != tt.wantFW[0]) {
				t.Errorf("firewall types %v, want %v", p.FirewallTypes, tt.wantFW)
			}
		})
	}
	if _, _, _, ok := FindPartition(nil, "a"); ok {
		t.Error("found a partition in a nil cloud profile")
	}
}

func TestFirewallControllerVersion(t *testing.T) {
	cp := &metal.MetalControlPlane{FirewallControllerVersions: []metal.FirewallControllerVersion{
		{Version: "v2.3.3", URL: "u233", Classification: class(metal.ClassificationDeprecated)},
		{Version: "v2.3.4", URL: "u234", Classification: class(metal.ClassificationSupported)},
		{Version: "v2.10.0", URL: "u2100"}, // unclassified counts as supported; 10 > 4 numerically
		{Version: "v3.0.0", URL: "u300", Classification: class(metal.ClassificationPreview)},
		{Version: "7f3a2b1", URL: "upr"},
	}}
	tests := []struct {
		want    string
		wantURL string
		wantErr bool
	}{
		{"", "u2100", false},
		{"auto", "u2100", false},
		{"v3.0.0", "u300", false},
		{"7f3a2b1", "upr", false},
		{"v9.9.9", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			got, err := FirewallControllerVersion(cp, tt.want)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if got.URL != tt.wantURL {
				t.Errorf("got %+v, want URL %q", got, tt.wantURL)
			}
		})
	}
	none := &metal.MetalControlPlane{FirewallControllerVersions: []metal.FirewallControllerVersion{{Version: "abc", URL: "u"}}}
	if _, err := FirewallControllerVersion(none, ""); err == nil {
		t.Error("picked a version although none is semver")
	}
}
