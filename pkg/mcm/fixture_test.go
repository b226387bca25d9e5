package mcm_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/gardener/machine-controller-manager/pkg/apis/machine/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/metalforge/metalforge/pkg/client/clienttest"
	"github.com/metalforge/metalforge/pkg/client/metalapi"
	"github.com/metalforge/metalforge/pkg/client/metalapi/filesystemlayout"
	"github.com/metalforge/metalforge/pkg/client/metalapi/image"
	machineops "github.com/metalforge/metalforge/pkg/client/metalapi/machine"
	"github.com/metalforge/metalforge/pkg/client/metalapi/network"
	"github.com/metalforge/metalforge/pkg/client/metalapi/partition"
	"github.com/metalforge/metalforge/pkg/client/metalapi/project"
	"github.com/metalforge/metalforge/pkg/client/metalapi/size"
	"github.com/metalforge/metalforge/pkg/client/metalapi/token"
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
	gib      = 1 << 30
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
	a := f.admin
	_, err := a.Partition.CreatePartitionContext(ctx, partition.NewCreatePartitionParams().WithBody(&wire.Partition{ID: part,
		Boot: &wire.BootConfig{KernelURL: "http://boot/vmlinuz", InitrdURL: "http://boot/initrd"}}), nil)
	check(t, err)
	_, err = a.Size.CreateSizeContext(ctx, size.NewCreateSizeParams().WithBody(&wire.Size{ID: sizeID, Constraints: []*wire.Constraint{
		{Type: "cores", Min: 1, Max: 4}, {Type: "memory", Min: 1 * gib, Max: 16 * gib}}}), nil)
	check(t, err)
	_, err = a.Image.CreateImageContext(ctx, image.NewCreateImageParams().WithBody(&wire.Image{ID: img,
		URL: "http://images/debian-12.tar.zst", Sha256: strings.Repeat("ab", 32), OS: "debian", OSVersion: "12",
		Features: []string{"machine"}, Classification: "supported"}), nil)
	check(t, err)
	_, err = a.Filesystemlayout.CreateFilesystemLayoutContext(ctx, filesystemlayout.NewCreateFilesystemLayoutParams().
		WithBody(&wire.FilesystemLayout{ID: layout,
			Constraints: &wire.LayoutConstraints{Sizes: []string{sizeID}, Images: map[string]string{"debian": "*"}},
			Disks: []*wire.Disk{{Device: "/dev/vda", Partitions: []*wire.DiskPartition{
				{Number: 1, Label: "efi", Size: 512}, {Number: 2, Label: "root"}}}},
			Filesystems: []*wire.Filesystem{{Device: "/dev/vda1", Format: "vfat", Path: "/boot/efi"},
				{Device: "/dev/vda2", Format: "ext4", Path: "/"}}}), nil)
	check(t, err)
	for _, n := range []*wire.Network{
		{ID: "tenant-super", Type: "super", Prefixes: []string{"10.128.0.0/14"}, PartitionID: part, ChildPrefixLength: 22},
		{ID: internet, Type: "external", Prefixes: []string{"100.64.0.0/22"}, DestinationPrefixes: []string{"0.0.0.0/0"}, NAT: true, VRF: 104009},
	} {
		_, err := a.Network.CreateNetworkContext(ctx, network.NewCreateNetworkParams().WithBody(n), nil)
		check(t, err)
	}
	r, err := a.Project.CreateProjectContext(ctx, project.NewCreateProjectParams().WithBody(&wire.Project{Name: "tenant"}), nil)
	check(t, err)
	f.project = r.Payload.ID
	tok, err := a.Token.CreateTokenContext(ctx, token.NewCreateTokenParams().WithBody(&wire.Token{
		Name: "mcm", Role: "editor", ProjectID: f.project}), nil)
	check(t, err)
	f.token = tok.Payload.Secret
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
	f.api.Register(m)
	f.api.Wait(m.ID)
	waitFor(f.t, 30*time.Second, "machine "+m.ID+" waiting", func() (bool, error) {
		r, err := f.admin.Machine.GetMachineContext(f.t.Context(), machineops.NewGetMachineParams().WithID(m.ID), nil)
		return err == nil && r.Payload.Waiting, err
	})
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

// waitFor polls cond every 50ms until it holds, failing the test after timeout with the last error.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for {
		ok, err := cond()
		if ok {
			return
		}
		last = err
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v (last error: %v)", what, timeout, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
