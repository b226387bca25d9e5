package v1alpha1_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/metalforge/metalforge/pkg/apis/metal/v1alpha1"
)

func ptr[T any](v T) *T { return &v }

func dur(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

func TestDefaults(t *testing.T) {
	s := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		in   runtime.Object
		want runtime.Object
	}{
		{
			name: "firewall timeouts filled in",
			in:   &v1alpha1.InfrastructureConfig{},
			want: &v1alpha1.InfrastructureConfig{Firewall: v1alpha1.Firewall{
				FirewallHealthTimeout: dur(20 * time.Minute),
				FirewallCreateTimeout: dur(10 * time.Minute),
			}},
		},
		{
			name: "explicit timeouts kept, zero health timeout too",
			in: &v1alpha1.InfrastructureConfig{Firewall: v1alpha1.Firewall{
				FirewallHealthTimeout: dur(0),
				FirewallCreateTimeout: dur(time.Hour),
			}},
			want: &v1alpha1.InfrastructureConfig{Firewall: v1alpha1.Firewall{
				FirewallHealthTimeout: dur(0),
				FirewallCreateTimeout: dur(time.Hour),
			}},
		},
		{
			name: "network access baseline by default",
			in:   &v1alpha1.ControlPlaneConfig{},
			want: &v1alpha1.ControlPlaneConfig{NetworkAccessType: ptr(v1alpha1.NetworkAccessBaseline)},
		},
		{
			name: "network access kept",
			in:   &v1alpha1.ControlPlaneConfig{NetworkAccessType: ptr(v1alpha1.NetworkAccessForbidden)},
			want: &v1alpha1.ControlPlaneConfig{NetworkAccessType: ptr(v1alpha1.NetworkAccessForbidden)},
		},
		{
			name: "cloud profile has no defaults",
			in:   &v1alpha1.CloudProfileConfig{MetalControlPlanes: map[string]v1alpha1.MetalControlPlane{"a": {Endpoint: "https://a"}}},
			want: &v1alpha1.CloudProfileConfig{MetalControlPlanes: map[string]v1alpha1.MetalControlPlane{"a": {Endpoint: "https://a"}}},
		},
		{
			name: "worker config has no defaults",
			in:   &v1alpha1.WorkerConfig{},
			want: &v1alpha1.WorkerConfig{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.Default(tt.in)
			if diff := cmp.Diff(tt.want, tt.in); diff != "" {
				t.Errorf("defaulted object differs (-want +got):\n%s", diff)
			}
		})
	}
}
