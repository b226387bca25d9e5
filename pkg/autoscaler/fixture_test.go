package autoscaler_test

import (
	"context"
	"log/slog"
	"net"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/metalforge/metalforge/pkg/autoscaler"
	"github.com/metalforge/metalforge/pkg/autoscaler/externalgrpc"
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
	"github.com/metalforge/metalforge/pkg/kubetest"
)

// env is a real kube-apiserver: template nodes must be Nodes it accepts. Set once by TestMain.
var env *kubetest.Env

func TestMain(m *testing.M) {
	os.Exit(kubetest.Main(m, kubetest.Options{}, &env))
}

// The metal-api fixture.
const (
	part    = "fra-equ01"
	sizeS1  = "s1" // the machines of clienttest.Machine (2 cores, 4 GiB) match it
	sizeGPU = "g1" // no machines: scale from zero only
	img     = "debian-12"
	layout  = "default"
	cluster = "shoot-a"
	gib     = 1 << 30
)

// fixture is one metal-api with a project, n waiting machines and a running metal-autoscaler.
type fixture struct {
	t       testing.TB
	api     *clienttest.API
	admin   *metalapi.MetalAPI
	editor  *metalapi.MetalAPI
	project string
	index   map[string]int // machine ID → clienttest.Machine index
	cfg     autoscaler.Config
	cp      externalgrpc.CloudProviderClient
}

func check(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// newFixture starts metal-api with the catalogue, a project, n waiting machines of size s1 and the
// autoscaler with node groups "workers" (s1, max 3), "spare" (s1, max 5) and "gpu" (g1, max 2);
// mods adjust the config.
func newFixture(t testing.TB, n int, mods ...func(*autoscaler.Config)) *fixture {
	t.Helper()
	ctx := t.Context()
	f := &fixture{t: t, api: clienttest.Start(t)}
	f.admin = f.api.Client(clienttest.AdminToken)
	a := f.admin
	_, err := a.Partition.CreatePartitionContext(ctx, partition.NewCreatePartitionParams().WithBody(&wire.Partition{ID: part,
		Boot: &wire.BootConfig{KernelURL: "http://boot/vmlinuz", InitrdURL: "http://boot/initrd"}}), nil)
	check(t, err)
	for _, s := range []*wire.Size{
		{ID: sizeS1, Constraints: []*wire.Constraint{{Type: "cores", Min: 1, Max: 4}, {Type: "memory", Min: 1 * gib, Max: 16 * gib},
			{Type: "storage", Min: 10 * gib, Max: 100 * gib}}},
		{ID: sizeGPU, Constraints: []*wire.Constraint{{Type: "cores", Min: 32, Max: 64}, {Type: "memory", Min: 256 * gib, Max: 512 * gib},
			{Type: "gpu", Min: 2, Max: 2, Identifier: "A100"}}},
	} {
		_, err = a.Size.CreateSizeContext(ctx, size.NewCreateSizeParams().WithBody(s), nil)
		check(t, err)
	}
	_, err = a.Image.CreateImageContext(ctx, image.NewCreateImageParams().WithBody(&wire.Image{ID: img,
		URL: "http://images/debian-12.tar.zst", Sha256: strings.Repeat("ab", 32), OS: "debian", OSVersion: "12",
		Features: []string{"machine"}, Classification: "supported"}), nil)
	check(t, err)
	_, err = a.Filesystemlayout.CreateFilesystemLayoutContext(ctx, filesystemlayout.NewCreateFilesystemLayoutParams().
		WithBody(&wire.FilesystemLayout{ID: layout,
			Constraints: &wire.LayoutConstraints{Sizes: []string{sizeS1, sizeGPU}, Images: map[string]string{"debian": "*"}},
			Disks: []*wire.Disk{{Device: "/dev/vda", Partitions: []*wire.DiskPartition{
				{Number: 1, Label: "efi", Size: 512}, {Number: 2, Label: "root"}}}},
			Filesystems: []*wire.Filesystem{{Device: "/dev/vda1", Format: "vfat", Path: "/boot/efi"},
				{Device: "/dev/vda2", Format: "ext4", Path: "/"}}}), nil)
	check(t, err)
	_, err = a.Network.CreateNetworkContext(ctx, network.NewCreateNetworkParams().WithBody(&wire.Network{ID: "tenant-super",
		Type: "super", Prefixes: []string{"10.128.0.0/14"}, PartitionID: part, ChildPrefixLength: 22}), nil)
	check(t, err)
	r, err := a.Project.CreateProjectContext(ctx, project.NewCreateProjectParams().WithBody(&wire.Project{Name: "tenant"}), nil)
	check(t, err)
	f.project = r.Payload.ID
	// Least privilege: an editor of the project changes machines, a service token counts the
	// waiting ones (project tokens don't see unallocated machines).
	editor, err := a.Token.CreateTokenContext(ctx, token.NewCreateTokenParams().WithBody(&wire.Token{
		Name: "metal-autoscaler", Role: "editor", ProjectID: f.project}), nil)
	check(t, err)
	service, err := a.Token.CreateTokenContext(ctx, token.NewCreateTokenParams().WithBody(&wire.Token{
		Name: "metal-autoscaler-capacity", Role: "service"}), nil)
	check(t, err)
	f.editor = f.api.Client(editor.Payload.Secret)
	f.index = map[string]int{}
	for i := range n {
		f.index[f.register(i)] = i
	}
	group := func(id, sz string, mx int) autoscaler.NodeGroup {
		return autoscaler.NodeGroup{ID: id, Cluster: cluster, Partition: part, Size: sz, Project: f.project, Image: img,
			FilesystemLayout: layout, Min: 0, Max: mx, Tags: []string{"pool=" + id, "team"}, SSHPubKeys: []string{"ssh-ed25519 AAAA test"}}
	}
	f.cfg = autoscaler.Config{Listen: "127.0.0.1:0", MetalAPIURL: f.api.URL, Token: editor.Payload.Secret,
		CapacityToken: service.Payload.Secret,
		NodeGroups:    []autoscaler.NodeGroup{group("workers", sizeS1, 3), group("spare", sizeS1, 5), group("gpu", sizeGPU, 2)}}
	for _, m := range mods {
		m(&f.cfg)
	}
	f.cp = f.start(f.cfg)
	return f
}

// register registers machine i, lets it wait and waits until metal-api sees it waiting and alive.
func (f *fixture) register(i int) string {
	f.t.Helper()
	m := clienttest.Machine(part, i)
	f.api.Register(m)
	f.api.Wait(m.ID)
	waitFor(f.t, 30*time.Second, "machine "+m.ID+" waiting", func() (bool, error) {
		r, err := f.admin.Machine.GetMachineContext(f.t.Context(), machineops.NewGetMachineParams().WithID(m.ID), nil)
		return err == nil && r.Payload.Waiting && r.Payload.Liveliness == "Alive", err
	})
	return m.ID
}

// start runs the autoscaler until the test ends and returns a client of it over loopback.
func (f *fixture) start(cfg autoscaler.Config) externalgrpc.CloudProviderClient {
	f.t.Helper()
	ready := make(chan net.Addr, 1)
	cfg.Ready = func(a net.Addr) { ready <- a }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- autoscaler.Start(ctx, cfg, slog.New(slog.DiscardHandler)) }()
	f.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			f.t.Errorf("metal-autoscaler: %v", err)
		}
	})
	var addr net.Addr
	select {
	case addr = <-ready:
	case err := <-done:
		f.t.Fatalf("metal-autoscaler did not start: %v", err)
	case <-time.After(30 * time.Second):
		f.t.Fatal("metal-autoscaler did not start within 30s")
	}
	conn, err := grpc.NewClient(addr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	check(f.t, err)
	f.t.Cleanup(func() { conn.Close() })
	return externalgrpc.NewCloudProviderClient(conn)
}

// machines is every machine in metal-api, by ID, as the admin sees it.
func (f *fixture) machines() map[string]*wire.Machine {
	f.t.Helper()
	out := map[string]*wire.Machine{}
	var cursor *string
	limit := int64(100)
	for range 1000 {
		r, err := f.admin.Machine.ListMachinesContext(f.t.Context(), machineops.NewListMachinesParams().WithLimit(&limit).WithCursor(cursor), nil)
		check(f.t, err)
		for _, m := range r.Payload.Items {
			out[m.ID] = m
		}
		if r.Payload.Next == "" {
			return out
		}
		cursor = &r.Payload.Next
	}
	f.t.Fatal("more than 1000 pages of machines")
	return nil
}

// allocation is what the autoscaler may change of each machine: allocated or not, to which
// project, with which tags (metal-api's bookkeeping, e.g. PreAllocated once the hammer took the
// install spec, moves on by itself).
type allocation struct {
	Project string
	Tags    []string
}

// allocations are the machines' allocations, by ID; nil for a free machine.
func (f *fixture) allocations() map[string]*allocation {
	f.t.Helper()
	out := map[string]*allocation{}
	for id, m := range f.machines() {
		out[id] = nil
		if m.Allocation != nil {
			out[id] = &allocation{Project: m.Allocation.ProjectID, Tags: m.Tags}
		}
	}
	return out
}

// allocated are the IDs of the machines allocated with the node group's tag, sorted.
func (f *fixture) allocated(group string) []string {
	f.t.Helper()
	var out []string
	for id, m := range f.machines() {
		if m.Allocation != nil && slices.Contains(m.Tags, autoscaler.TagNodeGroup+group) {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
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
