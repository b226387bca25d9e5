package validation

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/metalforge/metalforge/pkg/apis/metal"
)

func ptr[T any](v T) *T { return &v }

// summary reduces an error list to "type path" lines, the part a caller branches on.
func summary(errs field.ErrorList) []string {
	var out []string
	for _, e := range errs {
		out = append(out, fmt.Sprintf("%s %s", string(e.Type), e.Field))
	}
	return out
}

func checkErrs(t *testing.T, got field.ErrorList, want []string) {
	t.Helper()
	if diff := cmp.Diff(want, summary(got)); diff != "" {
		t.Errorf("errors differ (-want +got):\n%s\nall: %v", diff, got.ToAggregate())
	}
}

var infraPath = field.NewPath("spec", "provider", "infrastructureConfig")

func validInfra() *metal.InfrastructureConfig {
	return &metal.InfrastructureConfig{
		PartitionID: "fra-equ01",
		ProjectID:   "5a9b0c6e-1e52-4d34-9c4b-3f6f2b8a7d10",
		Firewall: metal.Firewall{
			Size:        "c1-xlarge-x86",
			Image:       "firewall-ubuntu-3.0",
			Networks:    []string{"internet", "mpls"},
			RateLimits:  []metal.RateLimit{{NetworkID: "internet", RateLimit: 100}},
			EgressRules: []metal.EgressRule{{NetworkID: "internet", IPs: []string{"203.0.113.1", "2001:db8::1"}}},
		},
	}
}

func TestValidateInfrastructureConfig(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *metal.InfrastructureConfig)
		want   []string
	}{
		{"valid", func(*metal.InfrastructureConfig) {}, nil},
		{"zero health timeout disables it", func(c *metal.InfrastructureConfig) { c.Firewall.FirewallHealthTimeout = &metav1.Duration{} }, nil},
		{"missing ids", func(c *metal.InfrastructureConfig) { c.PartitionID, c.ProjectID = "", "" }, []string{
			"FieldValueRequired spec.provider.infrastructureConfig.partitionID",
			"FieldValueRequired spec.provider.infrastructureConfig.projectID",
		}},
		{"malformed ids", func(c *metal.InfrastructureConfig) { c.PartitionID, c.ProjectID = "fra equ01", "-proj" }, []string{
			"FieldValueInvalid spec.provider.infrastructureConfig.partitionID",
			"FieldValueInvalid spec.provider.infrastructureConfig.projectID",
		}},
		{"partition id not a label value", func(c *metal.InfrastructureConfig) { c.PartitionID = "fra:equ01" }, []string{
			"FieldValueInvalid spec.provider.infrastructureConfig.partitionID",
		}},
		{"firewall size and image required", func(c *metal.InfrastructureConfig) { c.Firewall.Size, c.Firewall.Image = "", "" }, []string{
			"FieldValueRequired spec.provider.infrastructureConfig.firewall.size",
			"FieldValueRequired spec.provider.infrastructureConfig.firewall.image",
		}},
		{"no networks", func(c *metal.InfrastructureConfig) {
			c.Firewall.Networks, c.Firewall.RateLimits, c.Firewall.EgressRules = nil, nil, nil
		}, []string{"FieldValueRequired spec.provider.infrastructureConfig.firewall.networks"}},
		{"bad and duplicate networks", func(c *metal.InfrastructureConfig) { c.Firewall.Networks = []string{"internet", "", "internet"} }, []string{
			"FieldValueRequired spec.provider.infrastructureConfig.firewall.networks[1]",
			"FieldValueDuplicate spec.provider.infrastructureConfig.firewall.networks[2]",
		}},
		{"rate limits", func(c *metal.InfrastructureConfig) {
			c.Firewall.RateLimits = []metal.RateLimit{{NetworkID: "internet", RateLimit: 1}, {NetworkID: "internet", RateLimit: 2}, {NetworkID: "dmz"}, {}}
		}, []string{
			"FieldValueDuplicate spec.provider.infrastructureConfig.firewall.rateLimits[1].networkID",
			"FieldValueInvalid spec.provider.infrastructureConfig.firewall.rateLimits[2].networkID",
			"FieldValueRequired spec.provider.infrastructureConfig.firewall.rateLimits[3].networkID",
		}},
		{"egress rules", func(c *metal.InfrastructureConfig) {
			c.Firewall.EgressRules = []metal.EgressRule{
				{NetworkID: "internet", IPs: []string{"203.0.113.1", "203.0.113.300", "10.0.0.0/8", "203.0.113.1", "0.0.0.0", "fe80::1%eth0"}},
				{NetworkID: "dmz", IPs: []string{"192.0.2.1"}},
				{NetworkID: "mpls"},
			}
		}, []string{
			"FieldValueInvalid spec.provider.infrastructureConfig.firewall.egressRules[0].ips[1]",
			"FieldValueInvalid spec.provider.infrastructureConfig.firewall.egressRules[0].ips[2]",
			"FieldValueDuplicate spec.provider.infrastructureConfig.firewall.egressRules[0].ips[3]",
			"FieldValueInvalid spec.provider.infrastructureConfig.firewall.egressRules[0].ips[4]",
			"FieldValueInvalid spec.provider.infrastructureConfig.firewall.egressRules[0].ips[5]",
			"FieldValueInvalid spec.provider.infrastructureConfig.firewall.egressRules[1].networkID",
			"FieldValueRequired spec.provider.infrastructureConfig.firewall.egressRules[2].ips",
		}},
		{"timeouts", func(c *metal.InfrastructureConfig) {
			c.Firewall.FirewallHealthTimeout = &metav1.Duration{Duration: -time.Second}
			c.Firewall.FirewallCreateTimeout = &metav1.Duration{}
		}, []string{
			"FieldValueInvalid spec.provider.infrastructureConfig.firewall.firewallHealthTimeout",
			"FieldValueInvalid spec.provider.infrastructureConfig.firewall.firewallCreateTimeout",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validInfra()
			tt.mutate(c)
			checkErrs(t, ValidateInfrastructureConfig(c, infraPath), tt.want)
		})
	}
}

func TestValidateInfrastructureConfigUpdate(t *testing.T) {
	old := validInfra()
	tests := []struct {
		name   string
		mutate func(c *metal.InfrastructureConfig)
		want   []string
	}{
		{"firewall change is fine", func(c *metal.InfrastructureConfig) { c.Firewall.Size = "c2" }, nil},
		{"project and partition are immutable", func(c *metal.InfrastructureConfig) { c.ProjectID, c.PartitionID = "other", "fra-equ02" }, []string{
			"FieldValueInvalid spec.provider.infrastructureConfig.projectID",
			"FieldValueInvalid spec.provider.infrastructureConfig.partitionID",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validInfra()
			tt.mutate(c)
			checkErrs(t, ValidateInfrastructureConfigUpdate(old, c, infraPath), tt.want)
		})
	}
}

// isolation is a complete network isolation allowing egress to the given CIDRs.
func isolation(egress ...string) *metal.NetworkIsolation {
	return &metal.NetworkIsolation{
		AllowedNetworks: metal.AllowedNetworks{Egress: egress},
		DNSServers:      []string{"10.0.0.53"},
		NTPServers:      []string{"10.0.0.123"},
		RegistryMirrors: []metal.RegistryMirror{{Name: "r", Endpoint: "https://r.example.com", IP: "10.0.0.80", Port: 443, MirrorOf: []string{"docker.io"}}},
	}
}

// cloudProfile is a valid cloud profile: fra-equ01 allows isolated clusters with egress,
// fra-equ02 isolated clusters without egress, fra-equ03 and lab none.
func cloudProfile() *metal.CloudProfileConfig {
	return &metal.CloudProfileConfig{MetalControlPlanes: map[string]metal.MetalControlPlane{
		"prod": {
			Endpoint: "https://metal.example.com",
			Partitions: map[string]metal.Partition{
				"fra-equ01": {FirewallTypes: []string{"c1-xlarge-x86"}, NetworkIsolation: isolation("10.0.0.0/8")},
				"fra-equ02": {NetworkIsolation: isolation()},
				"fra-equ03": {},
			},
			FirewallImages: []string{"firewall-ubuntu-3.0"},
			FirewallControllerVersions: []metal.FirewallControllerVersion{
				{Version: "v2.3.4", URL: "https://images.example.com/fc"},
			},
		},
		"test": {Endpoint: "http://metal-api:8080", Partitions: map[string]metal.Partition{"lab": {}}},
	}}
}

func TestValidateInfrastructureConfigAgainstCloudProfile(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *metal.InfrastructureConfig)
		want   []string
	}{
		{"valid", func(*metal.InfrastructureConfig) {}, nil},
		{"auto controller version", func(c *metal.InfrastructureConfig) { c.Firewall.ControllerVersion = "auto" }, nil},
		{"offered controller version", func(c *metal.InfrastructureConfig) { c.Firewall.ControllerVersion = "v2.3.4" }, nil},
		{"partition without restrictions", func(c *metal.InfrastructureConfig) {
			c.PartitionID, c.Firewall.Image, c.Firewall.Size = "lab", "any", "any"
		}, nil},
		{"unknown partition", func(c *metal.InfrastructureConfig) { c.PartitionID = "nbg-w8101" }, []string{
			"FieldValueNotSupported spec.provider.infrastructureConfig.partitionID",
		}},
		{"image, size and controller version not offered", func(c *metal.InfrastructureConfig) {
			c.Firewall.Image, c.Firewall.Size, c.Firewall.ControllerVersion = "firewall-ubuntu-1.0", "c1-small-x86", "v1.0.0"
		}, []string{
			"FieldValueNotSupported spec.provider.infrastructureConfig.firewall.image",
			"FieldValueNotSupported spec.provider.infrastructureConfig.firewall.size",
			"FieldValueNotSupported spec.provider.infrastructureConfig.firewall.controllerVersion",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validInfra()
			tt.mutate(c)
			checkErrs(t, ValidateInfrastructureConfigAgainstCloudProfile(c, cloudProfile(), infraPath), tt.want)
		})
	}
}

var cpPath = field.NewPath("spec", "provider", "controlPlaneConfig")

func TestValidateControlPlaneConfig(t *testing.T) {
	tests := []struct {
		name string
		c    metal.ControlPlaneConfig
		want []string
	}{
		{"empty", metal.ControlPlaneConfig{}, nil},
		{"full", metal.ControlPlaneConfig{
			CloudControllerManager:    &metal.CloudControllerManagerConfig{FeatureGates: map[string]bool{"ContextualLogging": true}, DefaultExternalNetwork: ptr("internet")},
			FeatureGates:              metal.ControlPlaneFeatures{ClusterAudit: ptr(true), AuditToSplunk: ptr(true)},
			CustomDefaultStorageClass: &metal.CustomDefaultStorageClass{ClassName: ""},
			NetworkAccessType:         ptr(metal.NetworkAccessForbidden),
		}, nil},
		{"unknown feature gate", metal.ControlPlaneConfig{
			CloudControllerManager: &metal.CloudControllerManagerConfig{FeatureGates: map[string]bool{"NoSuchGate": true}},
		}, []string{"FieldValueInvalid spec.provider.controlPlaneConfig.cloudControllerManager.featureGates[NoSuchGate]"}},
		{"bad default external network", metal.ControlPlaneConfig{
			CloudControllerManager: &metal.CloudControllerManagerConfig{DefaultExternalNetwork: ptr("")},
		}, []string{"FieldValueRequired spec.provider.controlPlaneConfig.cloudControllerManager.defaultExternalNetwork"}},
		{"splunk without audit", metal.ControlPlaneConfig{FeatureGates: metal.ControlPlaneFeatures{AuditToSplunk: ptr(true)}},
			[]string{"FieldValueForbidden spec.provider.controlPlaneConfig.featureGates.auditToSplunk"}},
		{"bad storage class", metal.ControlPlaneConfig{CustomDefaultStorageClass: &metal.CustomDefaultStorageClass{ClassName: "Not_A_Name"}},
			[]string{"FieldValueInvalid spec.provider.controlPlaneConfig.customDefaultStorageClass.className"}},
		{"unknown network access type", metal.ControlPlaneConfig{NetworkAccessType: ptr(metal.NetworkAccessType("open"))},
			[]string{"FieldValueNotSupported spec.provider.controlPlaneConfig.networkAccessType"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErrs(t, ValidateControlPlaneConfig(&tt.c, cpPath), tt.want)
		})
	}
}

func TestValidateControlPlaneConfigAgainstCloudProfile(t *testing.T) {
	tests := []struct {
		name      string
		access    *metal.NetworkAccessType
		partition string
		want      []string
	}{
		{"default anywhere", nil, "fra-equ03", nil},
		{"baseline anywhere", ptr(metal.NetworkAccessBaseline), "nowhere", nil},
		{"restricted with isolation", ptr(metal.NetworkAccessRestricted), "fra-equ01", nil},
		{"forbidden with egress networks", ptr(metal.NetworkAccessForbidden), "fra-equ01", nil},
		{"restricted without isolation", ptr(metal.NetworkAccessRestricted), "fra-equ03", []string{"FieldValueForbidden spec.provider.controlPlaneConfig.networkAccessType"}},
		{"forbidden without egress networks", ptr(metal.NetworkAccessForbidden), "fra-equ02", []string{"FieldValueForbidden spec.provider.controlPlaneConfig.networkAccessType"}},
		{"unknown partition", ptr(metal.NetworkAccessRestricted), "nowhere", []string{"FieldValueForbidden spec.provider.controlPlaneConfig.networkAccessType"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &metal.ControlPlaneConfig{NetworkAccessType: tt.access}
			checkErrs(t, ValidateControlPlaneConfigAgainstCloudProfile(c, tt.partition, cloudProfile(), cpPath), tt.want)
		})
	}
}

func TestValidateWorkerConfig(t *testing.T) {
	p := field.NewPath("spec", "provider", "workers").Index(0).Child("providerConfig")
	tests := []struct {
		name string
		c    metal.WorkerConfig
		want []string
	}{
		{"empty", metal.WorkerConfig{}, nil},
		{"networks", metal.WorkerConfig{AdditionalNetworks: []string{"storage", "backup"}}, nil},
		{"bad networks", metal.WorkerConfig{AdditionalNetworks: []string{"storage", "storage", "a b"}}, []string{
			"FieldValueDuplicate spec.provider.workers[0].providerConfig.additionalNetworks[1]",
			"FieldValueInvalid spec.provider.workers[0].providerConfig.additionalNetworks[2]",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErrs(t, ValidateWorkerConfig(&tt.c, p), tt.want)
		})
	}
}
