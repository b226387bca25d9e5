package autoscaler_test

import (
	"context"
	"log/slog"
	"net"
	"os"
	"slices"
	"sort"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/metalforge/metalforge/pkg/autoscaler"
	"github.com/metalforge/metalforge/pkg/autoscaler/externalgrpc"
	"github.com/metalforge/metalforge/pkg/client/clienttest"
	"github.com/metalforge/metalforge/pkg/client/metalapi"
	machineops "github.com/metalforge/metalforge/pkg/client/metalapi/machine"
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
	f := &fixture{t: t, api: clienttest.Start(t)}
	f.admin = f.api.Client(clienttest.AdminToken)
	f.api.Seed(clienttest.Catalogue{Partition: part,
		Sizes: []*wire.Size{
			clienttest.Size(sizeS1, &wire.Constraint{Type: "storage", Min: 10 * gib, Max: 100 * gib}),
			{ID: sizeGPU, Constraints: []*wire.Constraint{{Type: "cores", Min: 32, Max: 64}, {Type: "memory", Min: 256 * gib, Max: 512 * gib},
				{Type: "gpu", Min: 2, Max: 2, Identifier: "A100"}}},
		},
		Images:   []*wire.Image{clienttest.Image(img, "debian", "12", "machine")},
		Layouts:  []*wire.FilesystemLayout{clienttest.Layout(layout, sizeS1, sizeGPU)},
		Networks: []*wire.Network{clienttest.SuperNetwork("tenant-super", part)}})
	f.project = f.api.Project("tenant")
	// Least privilege: an editor of the project changes machines, a service token counts the
	// waiting ones (project tokens don't see unallocated machines).
	editor := f.api.Token("metal-autoscaler", "editor", f.project)
	service := f.api.Token("metal-autoscaler-capacity", "service", "")
	f.editor = f.api.Client(editor)
	f.index = map[string]int{}
	for i := range n {
		f.index[f.register(i)] = i
	}
	group := func(id, sz string, mx int) autoscaler.NodeGroup {
		return autoscaler.NodeGroup{ID: id, Cluster: cluster, Partition: part, Size: sz, Project: f.project, Image: img,
			FilesystemLayout: layout, Min: 0, Max: mx, Tags: []string{"pool=" + id, "team"}, SSHPubKeys: []string{"ssh-ed25519 AAAA test"}}
	}
	f.cfg = autoscaler.Config{Listen: "127.0.0.1:0", MetalAPIURL: f.api.URL, Token: editor,
		CapacityToken: service,
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
	f.api.RegisterWaiting(m)
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
