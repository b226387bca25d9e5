package metal_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/metalforge/metalforge/pkg/apis/metal"
	"github.com/metalforge/metalforge/pkg/apis/metal/helper"
	"github.com/metalforge/metalforge/pkg/apis/metal/validation"
)

func ptr[T any](v T) *T { return &v }

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wantCloudProfile is testdata/cloudprofileconfig.yaml as the internal type.
func wantCloudProfile() *metal.CloudProfileConfig {
	return &metal.CloudProfileConfig{
		MetalControlPlanes: map[string]metal.MetalControlPlane{
			"prod": {
				Endpoint: "https://api.metal.example.com/metal",
				Partitions: map[string]metal.Partition{
					"fra-equ01": {
						FirewallTypes: []string{"c1-xlarge-x86", "n1-medium-x86"},
						NetworkIsolation: &metal.NetworkIsolation{
							AllowedNetworks: metal.AllowedNetworks{
								Ingress: []string{"10.0.0.0/8"},
								Egress:  []string{"100.64.0.0/10", "2001:db8:200::/48"},
							},
							DNSServers: []string{"10.31.0.53", "10.31.0.54:5353"},
							NTPServers: []string{"10.31.0.123", "ntp.fra.example.com"},
							RegistryMirrors: []metal.RegistryMirror{{
								Name:     "partition registry",
								Endpoint: "https://registry.fra.example.com",
								IP:       "10.31.0.80",
								Port:     443,
								MirrorOf: []string{"docker.io", "ghcr.io", "registry.k8s.io"},
							}},
						},
					},
					"fra-equ02": {FirewallTypes: []string{"c1-xlarge-x86"}},
				},
				FirewallImages: []string{"firewall-ubuntu-2.0", "firewall-ubuntu-3.0"},
				FirewallControllerVersions: []metal.FirewallControllerVersion{
					{Version: "v2.3.3", URL: "https://images.example.com/firewall-controller/v2.3.3/firewall-controller", Classification: ptr(metal.ClassificationDeprecated)},
					{Version: "v2.3.4", URL: "https://images.example.com/firewall-controller/v2.3.4/firewall-controller", Classification: ptr(metal.ClassificationSupported)},
					{Version: "7f3a2b1", URL: "https://images.example.com/firewall-controller/pull-requests/123-dns/firewall-controller", Classification: ptr(metal.ClassificationPreview)},
				},
				NftablesExporter: metal.NftablesExporter{Version: "v0.2.1", URL: "https://images.example.com/nftables-exporter/v0.2.1/nftables-exporter.tar.gz"},
			},
			"test": {
				Endpoint:       "http://metal-api.test.svc.cluster.local:8080",
				Partitions:     map[string]metal.Partition{"lab": {}},
				FirewallImages: []string{"firewall-debian-12"},
			},
		},
	}
}

// TestDecodeTestdata decodes manifests in the public wire format, compares every field with
// what they say, and validates them (on their own and against the cloud profile).
func TestDecodeTestdata(t *testing.T) {
	codec := helper.NewCodec()
	cloudProfile := &metal.CloudProfileConfig{}
	if err := codec.Decode(readTestdata(t, "cloudprofileconfig.yaml"), cloudProfile); err != nil {
		t.Fatal(err)
	}
	root := field.NewPath("spec", "provider")
	tests := []struct {
		file     string
		into     runtime.Object
		want     runtime.Object
		validate func(obj runtime.Object) field.ErrorList
	}{
		{
			file: "infrastructureconfig.yaml",
			into: &metal.InfrastructureConfig{},
			want: &metal.InfrastructureConfig{
				PartitionID: "fra-equ01",
				ProjectID:   "5a9b0c6e-1e52-4d34-9c4b-3f6f2b8a7d10",
				Firewall: metal.Firewall{
					Size:     "c1-xlarge-x86",
					Image:    "firewall-ubuntu-3.0",
					Networks: []string{"internet", "mpls-fra-equ01"},
					RateLimits: []metal.RateLimit{
						{NetworkID: "internet", RateLimit: 1000},
						{NetworkID: "mpls-fra-equ01", RateLimit: 10000},
					},
					EgressRules: []metal.EgressRule{
						{NetworkID: "internet", IPs: []string{"203.0.113.10", "203.0.113.11"}},
						{NetworkID: "mpls-fra-equ01", IPs: []string{"2001:db8:100::20"}},
					},
					LogAcceptedConnections: true,
					ControllerVersion:      "v2.3.4",
					AutoUpdateMachineImage: true,
					FirewallHealthTimeout:  &metav1.Duration{Duration: 30 * time.Minute},
					FirewallCreateTimeout:  &metav1.Duration{Duration: 15 * time.Minute},
				},
			},
			validate: func(obj runtime.Object) field.ErrorList {
				c := obj.(*metal.InfrastructureConfig)
				p := root.Child("infrastructureConfig")
				return append(validation.ValidateInfrastructureConfig(c, p),
					validation.ValidateInfrastructureConfigAgainstCloudProfile(c, cloudProfile, p)...)
			},
		},
		{
			file: "infrastructureconfig-minimal.json",
			into: &metal.InfrastructureConfig{},
			want: &metal.InfrastructureConfig{
				PartitionID: "fra-equ02",
				ProjectID:   "5a9b0c6e-1e52-4d34-9c4b-3f6f2b8a7d10",
				Firewall: metal.Firewall{
					Size:                  "c1-large-x86",
					Image:                 "firewall-ubuntu-3.0",
					Networks:              []string{"internet"},
					RateLimits:            []metal.RateLimit{},
					EgressRules:           []metal.EgressRule{},
					FirewallHealthTimeout: &metav1.Duration{Duration: 20 * time.Minute}, // defaulted
					FirewallCreateTimeout: &metav1.Duration{Duration: 10 * time.Minute}, // defaulted
				},
			},
			validate: func(obj runtime.Object) field.ErrorList {
				return validation.ValidateInfrastructureConfig(obj.(*metal.InfrastructureConfig), root.Child("infrastructureConfig"))
			},
		},
		{
			file: "controlplaneconfig.yaml",
			into: &metal.ControlPlaneConfig{},
			want: &metal.ControlPlaneConfig{
				CloudControllerManager: &metal.CloudControllerManagerConfig{
					FeatureGates:           map[string]bool{"ContextualLogging": true, "LoggingBetaOptions": false},
					DefaultExternalNetwork: ptr("internet"),
				},
				FeatureGates: metal.ControlPlaneFeatures{
					MachineControllerManagerOOT: ptr(true),
					ClusterAudit:                ptr(true),
					AuditToSplunk:               ptr(true),
					RestrictEgress:              ptr(false),
				},
				CustomDefaultStorageClass: &metal.CustomDefaultStorageClass{ClassName: "csi-driver-lvm-mirror"},
				NetworkAccessType:         ptr(metal.NetworkAccessRestricted),
			},
			validate: func(obj runtime.Object) field.ErrorList {
				c := obj.(*metal.ControlPlaneConfig)
				p := root.Child("controlPlaneConfig")
				return append(validation.ValidateControlPlaneConfig(c, p),
					validation.ValidateControlPlaneConfigAgainstCloudProfile(c, "fra-equ01", cloudProfile, p)...)
			},
		},
		{
			file: "cloudprofileconfig.yaml",
			into: &metal.CloudProfileConfig{},
			want: wantCloudProfile(),
			validate: func(obj runtime.Object) field.ErrorList {
				c := obj.(*metal.CloudProfileConfig)
				return append(validation.ValidateCloudProfileConfig(c, field.NewPath("spec", "providerConfig")),
					validation.ValidateCloudProfileConfigZones(c, map[string][]string{"eu-central-1": {"fra-equ01", "fra-equ02"}, "lab": {"lab"}}, field.NewPath("spec", "regions"))...)
			},
		},
		{
			file: "workerconfig.yaml",
			into: &metal.WorkerConfig{},
			want: &metal.WorkerConfig{AdditionalNetworks: []string{"storage-fra-equ01"}},
			validate: func(obj runtime.Object) field.ErrorList {
				return validation.ValidateWorkerConfig(obj.(*metal.WorkerConfig), root.Child("workers").Index(0).Child("providerConfig"))
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			if err := codec.Decode(readTestdata(t, tt.file), tt.into); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, tt.into); diff != "" {
				t.Errorf("decoded object differs (-want +got):\n%s", diff)
			}
			if errs := tt.validate(tt.into); len(errs) > 0 {
				t.Errorf("validation: %v", errs.ToAggregate())
			}
		})
	}
}

func TestDecodeUnknownField(t *testing.T) {
	err := helper.Decode(readTestdata(t, "infrastructureconfig-unknown-field.yaml"), &metal.InfrastructureConfig{})
	if err == nil {
		t.Fatal("decoded a manifest with unknown fields")
	}
	for _, want := range []string{`InfrastructureConfig`, `unknown field "firewall.sise"`, `unknown field "networks"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}
