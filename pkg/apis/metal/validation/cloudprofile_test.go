package validation

import (
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/metalforge/metalforge/pkg/apis/metal"
)

var cpcPath = field.NewPath("spec", "providerConfig")

func TestValidateCloudProfileConfig(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *metal.CloudProfileConfig)
		want   []string
	}{
		{"valid", func(*metal.CloudProfileConfig) {}, nil},
		{"no control planes", func(c *metal.CloudProfileConfig) { c.MetalControlPlanes = nil }, []string{
			"FieldValueRequired spec.providerConfig.metalControlPlanes",
		}},
		{"endpoint and partitions", func(c *metal.CloudProfileConfig) {
			c.MetalControlPlanes["test"] = metal.MetalControlPlane{Endpoint: "metal-api:8080"}
			c.MetalControlPlanes["other"] = metal.MetalControlPlane{}
		}, []string{
			"FieldValueRequired spec.providerConfig.metalControlPlanes[other].endpoint",
			"FieldValueRequired spec.providerConfig.metalControlPlanes[other].partitions",
			"FieldValueInvalid spec.providerConfig.metalControlPlanes[test].endpoint",
			"FieldValueRequired spec.providerConfig.metalControlPlanes[test].partitions",
		}},
		{"partition served twice and malformed", func(c *metal.CloudProfileConfig) {
			c.MetalControlPlanes["test"].Partitions["fra-equ01"] = metal.Partition{}
			c.MetalControlPlanes["test"].Partitions["bad id"] = metal.Partition{FirewallTypes: []string{"c1", "c1"}}
		}, []string{
			"FieldValueInvalid spec.providerConfig.metalControlPlanes[test].partitions[bad id]",
			"FieldValueDuplicate spec.providerConfig.metalControlPlanes[test].partitions[bad id].firewallTypes[1]",
			"FieldValueDuplicate spec.providerConfig.metalControlPlanes[test].partitions[fra-equ01]",
		}},
		{"network isolation", func(c *metal.CloudProfileConfig) {
			ni := c.MetalControlPlanes["prod"].Partitions["fra-equ01"].NetworkIsolation
			ni.AllowedNetworks = metal.AllowedNetworks{Ingress: []string{"10.0.0.1/8"}, Egress: []string{"10.0.0.0"}}
			ni.DNSServers = []string{"10.0.0.53:53", "[2001:db8::53]:53", "dns.example.com", "10.0.0.300:53"}
			ni.NTPServers = []string{"ntp.example.com", "Not A Host"}
			ni.RegistryMirrors = []metal.RegistryMirror{{Endpoint: "ftp://r", IP: "r.example.com", Port: 70000}}
		}, []string{
			"FieldValueInvalid spec.providerConfig.metalControlPlanes[prod].partitions[fra-equ01].networkIsolation.allowedNetworks.ingress[0]",
			"FieldValueInvalid spec.providerConfig.metalControlPlanes[prod].partitions[fra-equ01].networkIsolation.allowedNetworks.egress[0]",
			"FieldValueInvalid spec.providerConfig.metalControlPlanes[prod].partitions[fra-equ01].networkIsolation.dnsServers[2]",
			"FieldValueInvalid spec.providerConfig.metalControlPlanes[prod].partitions[fra-equ01].networkIsolation.dnsServers[3]",
			"FieldValueInvalid spec.providerConfig.metalControlPlanes[prod].partitions[fra-equ01].networkIsolation.ntpServers[1]",
			"FieldValueRequired spec.providerConfig.metalControlPlanes[prod].partitions[fra-equ01].networkIsolation.registryMirrors[0].name",
			"FieldValueInvalid spec.providerConfig.metalControlPlanes[prod].partitions[fra-equ01].networkIsolation.registryMirrors[0].endpoint",
			"FieldValueInvalid spec.providerConfig.metalControlPlanes[prod].partitions[fra-equ01].networkIsolation.registryMirrors[0].ip",
			"FieldValueInvalid spec.providerConfig.metalControlPlanes[prod].partitions[fra-equ01].networkIsolation.registryMirrors[0].port",
			"FieldValueRequired spec.providerConfig.metalControlPlanes[prod].partitions[fra-equ01].networkIsolation.registryMirrors[0].mirrorOf",
		}},
		{"empty network isolation", func(c *metal.CloudProfileConfig) {
			c.MetalControlPlanes["prod"].Partitions["fra-equ03"] = metal.Partition{NetworkIsolation: &metal.NetworkIsolation{}}
		}, []string{
			"FieldValueRequired spec.providerConfig.metalControlPlanes[prod].partitions[fra-equ03].networkIsolation.dnsServers",
			"FieldValueRequired spec.providerConfig.metalControlPlanes[prod].partitions[fra-equ03].networkIsolation.ntpServers",
			"FieldValueRequired spec.providerConfig.metalControlPlanes[prod].partitions[fra-equ03].networkIsolation.registryMirrors",
		}},
		{"firewall images and controller versions", func(c *metal.CloudProfileConfig) {
			mcp := c.MetalControlPlanes["prod"]
			mcp.FirewallImages = []string{"firewall-ubuntu-3.0", "firewall-ubuntu-3.0", ""}
			mcp.FirewallControllerVersions = []metal.FirewallControllerVersion{
				{Version: "v2.3.4", URL: "https://images.example.com/fc"},
				{Version: "v2.3.4", URL: "https://images.example.com/fc2"},
				{URL: "not a url", Classification: ptr(metal.VersionClassification("stable"))},
				{Version: "auto", URL: "https://images.example.com/auto"},
			}
			mcp.NftablesExporter = metal.NftablesExporter{URL: "https://images.example.com/ne"}
			c.MetalControlPlanes["prod"] = mcp
		}, []string{
			"FieldValueDuplicate spec.providerConfig.metalControlPlanes[prod].firewallImages[1]",
			"FieldValueRequired spec.providerConfig.metalControlPlanes[prod].firewallImages[2]",
			"FieldValueDuplicate spec.providerConfig.metalControlPlanes[prod].firewallControllerVersions[1].version",
			"FieldValueRequired spec.providerConfig.metalControlPlanes[prod].firewallControllerVersions[2].version",
			"FieldValueInvalid spec.providerConfig.metalControlPlanes[prod].firewallControllerVersions[2].url",
			"FieldValueNotSupported spec.providerConfig.metalControlPlanes[prod].firewallControllerVersions[2].classification",
			"FieldValueInvalid spec.providerConfig.metalControlPlanes[prod].firewallControllerVersions[3].version",
			"FieldValueRequired spec.providerConfig.metalControlPlanes[prod].nftablesExporter.version",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := cloudProfile()
			tt.mutate(c)
			checkErrs(t, ValidateCloudProfileConfig(c, cpcPath), tt.want)
		})
	}
}

func TestValidateCloudProfileConfigZones(t *testing.T) {
	p := field.NewPath("spec", "regions")
	tests := []struct {
		name    string
		regions map[string][]string
		want    []string
	}{
		{"all zones served", map[string][]string{"eu-central-1": {"fra-equ01", "fra-equ02"}, "lab": {"lab"}}, nil},
		{"partitions not offered as zones are fine", map[string][]string{"lab": {"lab"}}, nil},
		{"zone without partition", map[string][]string{"eu-central-1": {"fra-equ01", "nbg-w8101"}}, []string{
			"FieldValueNotSupported spec.regions[eu-central-1].zones[1]",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErrs(t, ValidateCloudProfileConfigZones(cloudProfile(), tt.regions, p), tt.want)
		})
	}
}
