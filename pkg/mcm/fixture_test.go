package mcm_test

import (
	"encoding/json"
	"testing"

	"github.com/gardener/machine-controller-manager/pkg/apis/machine/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/metalforge/metalforge/pkg/client/clienttest"
	"github.com/metalforge/metalforge/pkg/client/metalapi"
	machineops "github.com/metalforge/metalforge/pkg/client/metalapi/machine"
	"github.com/metalforge/metalforge/pkg/client/metalapi/network"
	"github.com/metalforge/metalforge/pkg/client/wire"
	"github.com/metalforge/metalforge/pkg/mcm"
)

// The metal-api catalogue of the fixture.
const (
	part     = "fra-equ01"
	sizeID   = "s1"
	img      = "debian-12"
	layout   = "default"
	internet = "internet"
	userData = "#cloud-config\nhostname: <<MACHINE_NAME>>\n"
	sshKey   = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKl0oJ4u1tZKk7o3y9bDlHq+zRCcTqgSGkGQjAJYnQ3k test@metalforge"
)

// fixture is one metal-api with a catalogue, a project with its private network and an editor
// token, and machines that registered and wait, as the hammer makes them.
type fixture struct {
	t       testing.TB
	api     *clienttest.API
	admin   *metalapi.MetalAPI
	project string
	private string // the project's private network
	token   string
	next    int // index of the next registered machine
}

func check(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	ctx := t.Context()
	f := &fixture{t: t, api: clienttest.Start(t)}
	f.admin = f.api.Client(clienttest.AdminToken)
	f.api.Seed(clienttest.Catalogue{Partition: part,
		Sizes:    []*wire.Size{clienttest.Size(sizeID)},
		Images:   []*wire.Image{clienttest.Image(img, "debian", "12", "machine")},
		Layouts:  []*wire.FilesystemLayout{clienttest.Layout(layout, sizeID)},
		Networks: []*wire.Network{clienttest.SuperNetwork("tenant-super", part), clienttest.Internet(internet)}})
	f.project = f.api.Project("tenant")
	f.token = f.api.Token("mcm", "editor", f.project)
	// The cluster's private network, as the infrastructure actuator allocates it.
	nr, err := f.api.Client(f.token).Network.AllocateNetworkContext(ctx, network.NewAllocateNetworkParams().WithBody(
		&wire.NetworkAllocateRequest{ProjectID: f.project, PartitionID: part, Name: "cluster"}), nil)
	check(t, err)
	f.private = nr.Payload.ID
	return f
}

// waiting registers a machine in the rack over the boot service and lets it wait, as the hammer
// does; it returns when metal-api lists the machine as waiting.
func (f *fixture) waiting(rack string) string {
	f.t.Helper()
	m := clienttest.Machine(part, f.next)
	f.next++
	m.RackID = rack
	f.api.RegisterWaiting(m)
	return m.ID
}

// machine returns a machine as the admin sees it.
func (f *fixture) machine(id string) *wire.Machine {
	f.t.Helper()
	r, err := f.admin.Machine.GetMachineContext(f.t.Context(), machineops.NewGetMachineParams().WithID(id), nil)
	check(f.t, err)
	return r.Payload
}

// allocated returns the project's allocated machines tagged for the cluster, by id.
func (f *fixture) allocated(cluster string) map[string]*wire.Machine {
	f.t.Helper()
	yes := true
	r, err := f.admin.Machine.FindMachinesContext(f.t.Context(), machineops.NewFindMachinesParams().WithBody(&wire.MachineFindRequest{
		ProjectID: f.project, Allocated: &yes, Tags: []string{mcm.TagCluster + cluster}}), nil)
	check(f.t, err)
	out := map[string]*wire.Machine{}
	for _, m := range r.Payload.Items {
		out[m.ID] = m
	}
	return out
}

// spec is a valid provider spec for the fixture's cluster.
func (f *fixture) spec(cluster string) mcm.ProviderSpec {
	return mcm.ProviderSpec{Partition: part, Size: sizeID, Image: img, FilesystemLayout: layout, Project: f.project,
		Networks: []string{f.private, internet}, ClusterID: cluster, Tags: []string{"team=infra"}, SSHKeys: []string{sshKey}}
}

// class is a MachineClass with the spec.
func class(name string, spec any) *v1alpha1.MachineClass {
	raw, err := json.Marshal(spec)
	if err != nil {
		panic(err)
	}
	return &v1alpha1.MachineClass{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shoot"}, Provider: mcm.ProviderName,
		ProviderSpec: runtime.RawExtension{Raw: raw}}
}

// secret is the MachineClass secret for the fixture's metal-api.
func (f *fixture) secret() *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "cloudprovider", Namespace: "shoot"}, Data: map[string][]byte{
		mcm.SecretMetalAPIURL: []byte(f.api.URL), mcm.SecretMetalAPIToken: []byte(f.token), mcm.SecretUserData: []byte(userData)}}
}
