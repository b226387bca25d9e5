// Package infratest holds the fixtures of the Gardener actuator tests (controllers/infrastructure,
// controllers/worker, the extension binary): a real in-process metal-api seeded with a partition,
// a size, machine and firewall images, the partition's super, underlay and an external network, a
// project with an editor token and waiting machines; and Gardener's objects for a shoot in it (the
// Cluster with shoot, cloud profile and seed embedded, the cloudprovider secret, provider configs).
package infratest

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	gardencorev1beta1 "github.com/gardener/gardener/pkg/apis/core/v1beta1"
	v1beta1constants "github.com/gardener/gardener/pkg/apis/core/v1beta1/constants"
	extensionsv1alpha1 "github.com/gardener/gardener/pkg/apis/extensions/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/metalforge/metalforge/controllers/infrastructure"
	"github.com/metalforge/metalforge/pkg/client/clienttest"
	"github.com/metalforge/metalforge/pkg/client/metalapi"
	machineops "github.com/metalforge/metalforge/pkg/client/metalapi/machine"
	"github.com/metalforge/metalforge/pkg/client/wire"
)

// The catalogue of the fixture.
const (
	Partition     = "fra-equ01"
	Size          = "c1-small"
	FirewallImage = "firewall-debian-12"
	ImageName     = "debian"
	ImageVersion  = "12"
	Super         = "tenant-super"
	Underlay      = "underlay-fra"
	Internet      = "internet"
	GiB           = 1 << 30
)

// Fixture is one metal-api with the catalogue and a project.
type Fixture struct {
	t       testing.TB
	API     *clienttest.API
	Admin   *metalapi.MetalAPI
	Editor  *metalapi.MetalAPI
	Project string
	Token   string
}

// Start runs metal-api until the test ends and seeds it.
func Start(t testing.TB) *Fixture {
	t.Helper()
	f := &Fixture{t: t, API: clienttest.Start(t)}
	f.Admin = f.API.Client(clienttest.AdminToken)
	f.API.Seed(clienttest.Catalogue{Partition: Partition,
		Sizes: []*wire.Size{{ID: Size, Constraints: []*wire.Constraint{{Type: "cores", Min: 2, Max: 4},
			{Type: "memory", Min: 4 * GiB, Max: 16 * GiB}, {Type: "storage", Min: 10 * GiB, Max: 100 * GiB}}}},
		Images: []*wire.Image{clienttest.Image(ImageName+"-"+ImageVersion, "debian", "12", "machine"),
			{ID: FirewallImage, URL: "http://images/firewall.tar.zst", OS: "debian", OSVersion: "12", Features: []string{"firewall"}}},
		Networks: []*wire.Network{
			clienttest.SuperNetwork(Super, Partition),
			{ID: Underlay, Type: "underlay", Prefixes: []string{"10.255.0.0/22"}, PartitionID: Partition},
			clienttest.Internet(Internet),
		}})
	f.Project = f.API.Project("tenant")
	f.Token = f.API.Token("gardener", "editor", f.Project)
	f.Editor = f.API.Client(f.Token)
	return f
}

// WaitingMachine registers machine i of the partition (2 cores, 4 GiB, 20 GiB: size Size) and waits
// until metal-api lists it as waiting, i.e. allocatable.
func (f *Fixture) WaitingMachine(i int) string {
	f.t.Helper()
	m := clienttest.Machine(Partition, i)
	f.API.RegisterWaiting(m)
	return m.ID
}

// Machine returns a machine as the admin sees it.
func (f *Fixture) Machine(id string) *wire.Machine {
	f.t.Helper()
	r, err := f.Admin.Machine.GetMachineContext(f.t.Context(), machineops.NewGetMachineParams().WithID(id), nil)
	check(f.t, err)
	return r.Payload
}

// Shoot describes the shoot of a Cluster.
type Shoot struct {
	Name      string // shoot name; the seed namespace is shoot--test--<name>
	UID       string // status.uid, the cluster ID
	NodesCIDR string // spec.networking.nodes, "" for none
	Workers   []gardencorev1beta1.Worker
}

// Namespace is the shoot's seed namespace.
func (s Shoot) Namespace() string { return "shoot--test--" + s.Name }

// InfrastructureConfig is the shoot's provider config: the fixture's partition and project and a
// firewall of Size with FirewallImage on the internet.
func (f *Fixture) InfrastructureConfig() []byte {
	return mustJSON(map[string]any{
		"apiVersion":  "metal.provider.extensions.gardener.cloud/v1alpha1",
		"kind":        "InfrastructureConfig",
		"partitionID": Partition,
		"projectID":   f.Project,
		"firewall":    map[string]any{"size": Size, "image": FirewallImage, "networks": []string{Internet}},
	})
}

// CloudProfileConfig names the fixture's metal-api as the control plane of its partition.
func (f *Fixture) CloudProfileConfig() []byte {
	return mustJSON(map[string]any{
		"apiVersion": "metal.provider.extensions.gardener.cloud/v1alpha1",
		"kind":       "CloudProfileConfig",
		"metalControlPlanes": map[string]any{"lab": map[string]any{
			"endpoint": f.API.URL, "partitions": map[string]any{Partition: map[string]any{}}}},
	})
}

// Cluster is Gardener's Cluster resource of the shoot (named after its seed namespace) with the
// shoot, a cloud profile holding CloudProfileConfig and a seed embedded as gardenlet writes them.
func (f *Fixture) Cluster(s Shoot) *extensionsv1alpha1.Cluster {
	shoot := &gardencorev1beta1.Shoot{
		TypeMeta:   metav1.TypeMeta{APIVersion: "core.gardener.cloud/v1beta1", Kind: "Shoot"},
		ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: "garden-test"},
		Spec: gardencorev1beta1.ShootSpec{
			Region:     "fra",
			Networking: &gardencorev1beta1.Networking{},
			Provider: gardencorev1beta1.Provider{Type: infrastructure.Type,
				InfrastructureConfig: &runtime.RawExtension{Raw: f.InfrastructureConfig()}, Workers: s.Workers},
		},
		Status: gardencorev1beta1.ShootStatus{UID: types.UID(s.UID), TechnicalID: s.Namespace()},
	}
	if s.NodesCIDR != "" {
		shoot.Spec.Networking.Nodes = &s.NodesCIDR
	}
	profile := &gardencorev1beta1.CloudProfile{
		TypeMeta:   metav1.TypeMeta{APIVersion: "core.gardener.cloud/v1beta1", Kind: "CloudProfile"},
		ObjectMeta: metav1.ObjectMeta{Name: "metal"},
		Spec: gardencorev1beta1.CloudProfileSpec{Type: infrastructure.Type,
			ProviderConfig: &runtime.RawExtension{Raw: f.CloudProfileConfig()}},
	}
	seed := &gardencorev1beta1.Seed{
		TypeMeta:   metav1.TypeMeta{APIVersion: "core.gardener.cloud/v1beta1", Kind: "Seed"},
		ObjectMeta: metav1.ObjectMeta{Name: "seed"},
	}
	return &extensionsv1alpha1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: s.Namespace()},
		Spec: extensionsv1alpha1.ClusterSpec{
			Shoot:        runtime.RawExtension{Raw: mustJSON(shoot)},
			CloudProfile: runtime.RawExtension{Raw: mustJSON(profile)},
			Seed:         &runtime.RawExtension{Raw: mustJSON(seed)},
		},
	}
}

// CloudProviderSecret is the shoot's credentials: the project's editor token only, the URL comes
// from the cloud profile.
func (f *Fixture) CloudProviderSecret(namespace string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "cloudprovider", Namespace: namespace},
		Data:       map[string][]byte{infrastructure.SecretMetalAPIToken: []byte(f.Token)},
	}
}

// CRDs are the paths of CRD manifests in the gardener and MCM modules: gardener's extension CRDs
// (crd-extensions.gardener.cloud_<name>.yaml) and MCM's (machine.sapcloud.io_<name>.yaml).
func CRDs(gardener, mcm []string) ([]string, error) {
	var out []string
	for _, m := range []struct {
		module, dir, prefix string
		names               []string
	}{
		{"github.com/gardener/gardener", "pkg/component/extensions/crds/assets", "crd-extensions.gardener.cloud_", gardener},
		{"github.com/gardener/machine-controller-manager", "kubernetes/crds", "machine.sapcloud.io_", mcm},
	} {
		if len(m.names) == 0 {
			continue
		}
		dir, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", m.module).Output()
		if err != nil {
			return nil, fmt.Errorf("find module %s: %w", m.module, err)
		}
		for _, n := range m.names {
			out = append(out, filepath.Join(strings.TrimSpace(string(dir)), m.dir, m.prefix+n+".yaml"))
		}
	}
	return out, nil
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func check(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// SSHKey is the shoot's SSH public key.
const SSHKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE1mZXRhbGZvcmdlLXRlc3Qta2V5 test"

// Infrastructure is the shoot's Infrastructure "infra" with the fixture's InfrastructureConfig,
// annotated for reconciliation as gardenlet does.
func (f *Fixture) Infrastructure(s Shoot) *extensionsv1alpha1.Infrastructure {
	ns := s.Namespace()
	return &extensionsv1alpha1.Infrastructure{
		ObjectMeta: metav1.ObjectMeta{Name: "infra", Namespace: ns,
			Annotations: map[string]string{v1beta1constants.GardenerOperation: v1beta1constants.GardenerOperationReconcile}},
		Spec: extensionsv1alpha1.InfrastructureSpec{
			DefaultSpec:  extensionsv1alpha1.DefaultSpec{Type: infrastructure.Type, ProviderConfig: &runtime.RawExtension{Raw: f.InfrastructureConfig()}},
			Region:       "fra",
			SecretRef:    corev1.SecretReference{Name: "cloudprovider", Namespace: ns},
			SSHPublicKey: []byte(SSHKey),
		},
	}
}
