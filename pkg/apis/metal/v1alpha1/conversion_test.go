package v1alpha1_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/apitesting/fuzzer"
	"k8s.io/apimachinery/pkg/api/apitesting/roundtrip"
	metafuzzer "k8s.io/apimachinery/pkg/apis/meta/fuzzer"
	"k8s.io/apimachinery/pkg/runtime"
	runtimeserializer "k8s.io/apimachinery/pkg/runtime/serializer"
	"sigs.k8s.io/randfill"

	"github.com/metalforge/metalforge/pkg/apis/metal"
	"github.com/metalforge/metalforge/pkg/apis/metal/install"
	"github.com/metalforge/metalforge/pkg/apis/metal/v1alpha1"
)

// TestRoundTripFuzz is apimachinery's standard API round trip: random objects of every kind go
// internal → v1alpha1 → JSON/YAML → v1alpha1 → internal and must come back unchanged.
func TestRoundTripFuzz(t *testing.T) {
	roundtrip.RoundTripTestForAPIGroup(t, install.Install, fuzzer.MergeFuzzerFuncs(metafuzzer.Funcs, defaultedFields))
}

// defaultedFields keeps the fuzzer from leaving fields nil that decoding defaults, since a
// defaulted field would not survive the round trip unchanged (by design).
func defaultedFields(runtimeserializer.CodecFactory) []any {
	return []any{
		func(f *metal.Firewall, c randfill.Continue) {
			c.FillNoCustom(f)
			if f.FirewallHealthTimeout == nil {
				f.FirewallHealthTimeout = dur(time.Duration(c.Int63()))
			}
			if f.FirewallCreateTimeout == nil {
				f.FirewallCreateTimeout = dur(time.Duration(c.Int63()))
			}
		},
		func(cp *metal.ControlPlaneConfig, c randfill.Continue) {
			c.FillNoCustom(cp)
			if cp.NetworkAccessType == nil {
				cp.NetworkAccessType = ptr(metal.NetworkAccessRestricted)
			}
		},
	}
}

// TestConversionRoundTrip converts fully populated objects both ways and compares field by
// field, so a field dropped by either direction shows up by name.
func TestConversionRoundTrip(t *testing.T) {
	s := runtime.NewScheme()
	install.Install(s)
	tests := []struct {
		name      string
		versioned runtime.Object
		internal  runtime.Object
	}{
		{
			name: "InfrastructureConfig",
			versioned: &v1alpha1.InfrastructureConfig{
				PartitionID: "p", ProjectID: "proj",
				Firewall: v1alpha1.Firewall{
					Size: "s", Image: "i", Networks: []string{"n1", "n2"},
					RateLimits:             []v1alpha1.RateLimit{{NetworkID: "n1", RateLimit: 7}},
					EgressRules:            []v1alpha1.EgressRule{{NetworkID: "n2", IPs: []string{"192.0.2.1"}}},
					LogAcceptedConnections: true, ControllerVersion: "v1", AutoUpdateMachineImage: true,
					FirewallHealthTimeout: dur(time.Minute), FirewallCreateTimeout: dur(2 * time.Minute),
				},
			},
			internal: &metal.InfrastructureConfig{
				PartitionID: "p", ProjectID: "proj",
				Firewall: metal.Firewall{
					Size: "s", Image: "i", Networks: []string{"n1", "n2"},
					RateLimits:             []metal.RateLimit{{NetworkID: "n1", RateLimit: 7}},
					EgressRules:            []metal.EgressRule{{NetworkID: "n2", IPs: []string{"192.0.2.1"}}},
					LogAcceptedConnections: true, ControllerVersion: "v1", AutoUpdateMachineImage: true,
					FirewallHealthTimeout: dur(time.Minute), FirewallCreateTimeout: dur(2 * time.Minute),
				},
			},
		},
		{
			name: "ControlPlaneConfig",
			versioned: &v1alpha1.ControlPlaneConfig{
				CloudControllerManager:    &v1alpha1.CloudControllerManagerConfig{FeatureGates: map[string]bool{"A": true}, DefaultExternalNetwork: ptr("internet")},
				FeatureGates:              v1alpha1.ControlPlaneFeatures{MachineControllerManagerOOT: ptr(true), ClusterAudit: ptr(true), AuditToSplunk: ptr(false), DurosStorageEncryption: ptr(true), RestrictEgress: ptr(true)},
				CustomDefaultStorageClass: &v1alpha1.CustomDefaultStorageClass{ClassName: "sc"},
				NetworkAccessType:         ptr(v1alpha1.NetworkAccessForbidden),
			},
			internal: &metal.ControlPlaneConfig{
				CloudControllerManager:    &metal.CloudControllerManagerConfig{FeatureGates: map[string]bool{"A": true}, DefaultExternalNetwork: ptr("internet")},
				FeatureGates:              metal.ControlPlaneFeatures{MachineControllerManagerOOT: ptr(true), ClusterAudit: ptr(true), AuditToSplunk: ptr(false), DurosStorageEncryption: ptr(true), RestrictEgress: ptr(true)},
				CustomDefaultStorageClass: &metal.CustomDefaultStorageClass{ClassName: "sc"},
				NetworkAccessType:         ptr(metal.NetworkAccessForbidden),
			},
		},
		{
			name:      "WorkerConfig",
			versioned: &v1alpha1.WorkerConfig{AdditionalNetworks: []string{"storage"}},
			internal:  &metal.WorkerConfig{AdditionalNetworks: []string{"storage"}},
		},
		{
			name:      "WorkerStatus",
			versioned: &v1alpha1.WorkerStatus{MachineImages: []v1alpha1.MachineImage{{Name: "debian", Version: "12", Image: "debian-12"}}},
			internal:  &metal.WorkerStatus{MachineImages: []metal.MachineImage{{Name: "debian", Version: "12", Image: "debian-12"}}},
		},
		{
			name:      "InfrastructureStatus",
			versioned: &v1alpha1.InfrastructureStatus{Firewall: v1alpha1.FirewallStatus{MachineID: "m"}},
			internal:  &metal.InfrastructureStatus{Firewall: metal.FirewallStatus{MachineID: "m"}},
		},
		{
			name: "InfrastructureStatus with network and egress IPs",
			versioned: &v1alpha1.InfrastructureStatus{Firewall: v1alpha1.FirewallStatus{MachineID: "m"}, NetworkID: "n",
				EgressIPs: []v1alpha1.EgressIP{{NetworkID: "internet", IP: "203.0.113.10"}}},
			internal: &metal.InfrastructureStatus{Firewall: metal.FirewallStatus{MachineID: "m"}, NetworkID: "n",
				EgressIPs: []metal.EgressIP{{NetworkID: "internet", IP: "203.0.113.10"}}},
		},
		{
			name: "CloudProfileConfig",
			versioned: &v1alpha1.CloudProfileConfig{MetalControlPlanes: map[string]v1alpha1.MetalControlPlane{"prod": {
				Endpoint: "https://e",
				Partitions: map[string]v1alpha1.Partition{"p": {FirewallTypes: []string{"fw"}, NetworkIsolation: &v1alpha1.NetworkIsolation{
					AllowedNetworks: v1alpha1.AllowedNetworks{Ingress: []string{"10.0.0.0/8"}, Egress: []string{"0.0.0.0/0"}},
					DNSServers:      []string{"1.1.1.1"}, NTPServers: []string{"2.2.2.2"},
					RegistryMirrors: []v1alpha1.RegistryMirror{{Name: "r", Endpoint: "https://r", IP: "3.3.3.3", Port: 443, MirrorOf: []string{"docker.io"}}},
				}}},
				FirewallImages:             []string{"img"},
				FirewallControllerVersions: []v1alpha1.FirewallControllerVersion{{Version: "v1", URL: "https://u", Classification: ptr(v1alpha1.ClassificationSupported)}},
				NftablesExporter:           v1alpha1.NftablesExporter{Version: "v2", URL: "https://n"},
			}}},
			internal: &metal.CloudProfileConfig{MetalControlPlanes: map[string]metal.MetalControlPlane{"prod": {
				Endpoint: "https://e",
				Partitions: map[string]metal.Partition{"p": {FirewallTypes: []string{"fw"}, NetworkIsolation: &metal.NetworkIsolation{
					AllowedNetworks: metal.AllowedNetworks{Ingress: []string{"10.0.0.0/8"}, Egress: []string{"0.0.0.0/0"}},
					DNSServers:      []string{"1.1.1.1"}, NTPServers: []string{"2.2.2.2"},
					RegistryMirrors: []metal.RegistryMirror{{Name: "r", Endpoint: "https://r", IP: "3.3.3.3", Port: 443, MirrorOf: []string{"docker.io"}}},
				}}},
				FirewallImages:             []string{"img"},
				FirewallControllerVersions: []metal.FirewallControllerVersion{{Version: "v1", URL: "https://u", Classification: ptr(metal.ClassificationSupported)}},
				NftablesExporter:           metal.NftablesExporter{Version: "v2", URL: "https://n"},
			}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			internal := tt.internal.DeepCopyObject()
			if err := clear(internal); err != nil {
				t.Fatal(err)
			}
			if err := s.Convert(tt.versioned, internal, nil); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.internal, internal); diff != "" {
				t.Errorf("v1alpha1 → internal differs (-want +got):\n%s", diff)
			}
			versioned := tt.versioned.DeepCopyObject()
			if err := clear(versioned); err != nil {
				t.Fatal(err)
			}
			if err := s.Convert(tt.internal, versioned, nil); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.versioned, versioned); diff != "" {
				t.Errorf("internal → v1alpha1 differs (-want +got):\n%s", diff)
			}
		})
	}
}

// clear zeroes obj in place through a fresh object of the same type.
func clear(obj runtime.Object) error {
	switch o := obj.(type) {
	case *metal.InfrastructureConfig:
		*o = metal.InfrastructureConfig{}
	case *metal.ControlPlaneConfig:
		*o = metal.ControlPlaneConfig{}
	case *metal.WorkerConfig:
		*o = metal.WorkerConfig{}
	case *metal.WorkerStatus:
		*o = metal.WorkerStatus{}
	case *metal.InfrastructureStatus:
		*o = metal.InfrastructureStatus{}
	case *metal.CloudProfileConfig:
		*o = metal.CloudProfileConfig{}
	case *v1alpha1.InfrastructureConfig:
		*o = v1alpha1.InfrastructureConfig{}
	case *v1alpha1.ControlPlaneConfig:
		*o = v1alpha1.ControlPlaneConfig{}
	case *v1alpha1.WorkerConfig:
		*o = v1alpha1.WorkerConfig{}
	case *v1alpha1.WorkerStatus:
		*o = v1alpha1.WorkerStatus{}
	case *v1alpha1.InfrastructureStatus:
		*o = v1alpha1.InfrastructureStatus{}
	case *v1alpha1.CloudProfileConfig:
		*o = v1alpha1.CloudProfileConfig{}
	default:
		return fmt.Errorf("clear: unexpected type %T", obj)
	}
	return nil
}
