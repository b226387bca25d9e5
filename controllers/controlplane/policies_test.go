package controlplane_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/metalforge/metalforge/controllers/controlplane"
	"github.com/metalforge/metalforge/pkg/apis/metal"
)

func TestDefaultPolicies(t *testing.T) {
	iso := &metal.NetworkIsolation{
		AllowedNetworks: metal.AllowedNetworks{Egress: []string{"100.64.0.0/10", "100.64.1.0/10"}},
		DNSServers:      []string{"100.64.0.53", "2001:db8::53"},
		RegistryMirrors: []metal.RegistryMirror{{Name: "m", IP: "100.64.0.80"}},
	}
	names := func(ps []controlplane.Policy) []string {
		var out []string
		for _, p := range ps {
			out = append(out, p.Name)
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		access  metal.NetworkAccessType
		iso     *metal.NetworkIsolation
		want    []string
		wantErr string
	}{
		{"empty is baseline", "", nil, []string{"egress-allow-dns", "egress-allow-ntp", "egress-allow-http", "egress-allow-https"}, ""},
		{"baseline ignores isolation", metal.NetworkAccessBaseline, iso, []string{"egress-allow-dns", "egress-allow-ntp", "egress-allow-http", "egress-allow-https"}, ""},
		{"restricted", metal.NetworkAccessRestricted, iso, []string{"egress-allow-dns", "egress-allow-registry-mirror-0", "egress-allow-networks"}, ""},
		{"forbidden", metal.NetworkAccessForbidden, iso, []string{"egress-allow-dns", "egress-allow-registry-mirror-0", "egress-allow-networks"}, ""},
		{"restricted without isolation", metal.NetworkAccessRestricted, nil, nil, "network access type restricted needs networkIsolation for the partition in the cloud profile"},
		{"unknown", "open", nil, nil, `unknown network access type "open"`},
		{"bad address", metal.NetworkAccessRestricted, &metal.NetworkIsolation{DNSServers: []string{"dns.example"}}, nil,
			`policy egress-allow-dns: parse "dns.example": neither an address nor a prefix`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := controlplane.DefaultPolicies(tc.access, tc.iso)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, names(got)); diff != "" {
				t.Errorf("policies (-want +got):\n%s", diff)
			}
		})
	}
	// Addresses become host prefixes, prefixes are masked and de-duplicated.
	got, err := controlplane.DefaultPolicies(metal.NetworkAccessRestricted, iso)
	if err != nil {
		t.Fatal(err)
	}
	want := []controlplane.IPBlock{{CIDR: "100.64.0.53/32"}, {CIDR: "2001:db8::53/128"}}
	if diff := cmp.Diff(want, got[0].Egress[0].To); diff != "" {
		t.Errorf("dns targets (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]controlplane.IPBlock{{CIDR: "100.64.0.0/10"}}, got[2].Egress[0].To); diff != "" {
		t.Errorf("egress networks (-want +got):\n%s", diff)
	}
}
