package infrastructure_test

import (
	"strings"
	"testing"

	extensionscontroller "github.com/gardener/gardener/extensions/pkg/controller"
	gardencorev1beta1 "github.com/gardener/gardener/pkg/apis/core/v1beta1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/metalforge/metalforge/controllers/infrastructure"
	"github.com/metalforge/metalforge/pkg/apis/metal"
)

// TestReadAccess: the secret's URL, else the partition's control plane endpoint; a token always.
// No API server is needed, so this uses controller-runtime's fake client.
func TestReadAccess(t *testing.T) {
	profile := &metal.CloudProfileConfig{MetalControlPlanes: map[string]metal.MetalControlPlane{
		"cp": {Endpoint: "https://cp.example.com", Partitions: map[string]metal.Partition{"p1": {}}}}}
	for _, tc := range []struct {
		name      string
		data      map[string]string
		profile   *metal.CloudProfileConfig
		partition string
		want      infrastructure.Access
		err       string
	}{
		{"secret url wins", map[string]string{"metalAPIURL": "https://own.example.com", "metalAPIToken": "t"}, profile, "p1",
			infrastructure.Access{URL: "https://own.example.com", Token: "t"}, ""},
		{"profile endpoint", map[string]string{"metalAPIToken": " t\n"}, profile, "p1",
			infrastructure.Access{URL: "https://cp.example.com", Token: "t"}, ""},
		{"partition not in profile", map[string]string{"metalAPIToken": "t"}, profile, "p2", infrastructure.Access{}, "no key metalAPIURL"},
		{"no profile", map[string]string{"metalAPIToken": "t"}, nil, "p1", infrastructure.Access{}, "no key metalAPIURL"},
		{"no token", map[string]string{"metalAPIURL": "https://own.example.com"}, profile, "p1", infrastructure.Access{}, "no key metalAPIToken"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "cloudprovider", Namespace: "ns"}, Data: map[string][]byte{}}
			for k, v := range tc.data {
				s.Data[k] = []byte(v)
			}
			c := fake.NewClientBuilder().WithObjects(s).Build()
			got, err := infrastructure.ReadAccess(t.Context(), c, corev1.SecretReference{Name: "cloudprovider", Namespace: "ns"}, tc.profile, tc.partition)
			switch {
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("error %v, want one containing %q", err, tc.err)
			case tc.err == "" && err != nil:
				t.Fatal(err)
			case got != tc.want:
				t.Errorf("access %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestClusterID(t *testing.T) {
	shoot := func(statusUID, uid string) *gardencorev1beta1.Shoot {
		s := &gardencorev1beta1.Shoot{}
		s.Status.UID, s.UID = types.UID(statusUID), types.UID(uid)
		return s
	}
	meta := metav1.ObjectMeta{Name: "shoot--p--n"}
	for _, tc := range []struct {
		cluster *extensionscontroller.Cluster
		want    string
	}{
		{&extensionscontroller.Cluster{ObjectMeta: meta, Shoot: shoot("status-uid", "uid")}, "status-uid"},
		{&extensionscontroller.Cluster{ObjectMeta: meta, Shoot: shoot("", "uid")}, "uid"},
		{&extensionscontroller.Cluster{ObjectMeta: meta}, "shoot--p--n"},
		{nil, ""},
	} {
		if got := infrastructure.ClusterID(tc.cluster); got != tc.want {
			t.Errorf("ClusterID = %q, want %q", got, tc.want)
		}
	}
}
