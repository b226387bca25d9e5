package clienttest

import (
	"strings"
	"testing"
	"time"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/client/metalapi/filesystemlayout"
	"github.com/metalforge/metalforge/pkg/client/metalapi/image"
	machineops "github.com/metalforge/metalforge/pkg/client/metalapi/machine"
	"github.com/metalforge/metalforge/pkg/client/metalapi/network"
	"github.com/metalforge/metalforge/pkg/client/metalapi/partition"
	"github.com/metalforge/metalforge/pkg/client/metalapi/project"
	"github.com/metalforge/metalforge/pkg/client/metalapi/size"
	"github.com/metalforge/metalforge/pkg/client/metalapi/token"
	"github.com/metalforge/metalforge/pkg/client/wire"
)

// GiB is a gibibyte, for size constraints.
const GiB = 1 << 30

// Catalogue is what a test seeds into metal-api before it registers machines: one partition and
// the sizes, images, filesystem layouts and networks that refer to it. Seed creates them in that
// order, as the admin.
type Catalogue struct {
	// Partition is the partition's ID; it gets a placeholder boot config.
	Partition string
	Sizes     []*wire.Size
	// Images: an empty URL, Sha256 or Classification gets a placeholder
	// ("http://images/<id>.tar.zst", a fixed sha256, "supported").
	Images   []*wire.Image
	Layouts  []*wire.FilesystemLayout
	Networks []*wire.Network
}

// Seed creates the catalogue in metal-api; any error fails the test.
func (a *API) Seed(c Catalogue) {
	a.t.Helper()
	ctx := a.t.Context()
	admin := a.Client(AdminToken)
	_, err := admin.Partition.CreatePartitionContext(ctx, partition.NewCreatePartitionParams().WithBody(&wire.Partition{ID: c.Partition,
		Boot: &wire.BootConfig{KernelURL: "http://boot/vmlinuz", InitrdURL: "http://boot/initrd"}}), nil)
	a.check("create partition "+c.Partition, err)
	for _, s := range c.Sizes {
		_, err := admin.Size.CreateSizeContext(ctx, size.NewCreateSizeParams().WithBody(s), nil)
		a.check("create size "+s.ID, err)
	}
	for _, img := range c.Images {
		i := *img
		if i.URL == "" {
			i.URL = "http://images/" + i.ID + ".tar.zst"
		}
		if i.Sha256 == "" {
			i.Sha256 = strings.Repeat("ab", 32)
		}
		if i.Classification == "" {
			i.Classification = "supported"
		}
		_, err := admin.Image.CreateImageContext(ctx, image.NewCreateImageParams().WithBody(&i), nil)
		a.check("create image "+i.ID, err)
	}
	for _, l := range c.Layouts {
		_, err := admin.Filesystemlayout.CreateFilesystemLayoutContext(ctx, filesystemlayout.NewCreateFilesystemLayoutParams().WithBody(l), nil)
		a.check("create filesystem layout "+l.ID, err)
	}
	for _, n := range c.Networks {
		_, err := admin.Network.CreateNetworkContext(ctx, network.NewCreateNetworkParams().WithBody(n), nil)
		a.check("create network "+n.ID, err)
	}
}

// Size is a size of 1-4 cores and 1-16 GiB memory, which Machine matches, plus extra constraints.
func Size(id string, extra ...*wire.Constraint) *wire.Size {
	return &wire.Size{ID: id, Constraints: append([]*wire.Constraint{
		{Type: "cores", Min: 1, Max: 4}, {Type: "memory", Min: 1 * GiB, Max: 16 * GiB}}, extra...)}
}

// Image is an image of the OS with features ("machine", "firewall"); Seed fills in the rest.
func Image(id, os, version string, features ...string) *wire.Image {
	return &wire.Image{ID: id, OS: os, OSVersion: version, Features: features}
}

// Layout is a filesystem layout for debian images on the sizes: an EFI and a root partition on
// /dev/vda, the disk of Machine.
func Layout(id string, sizes ...string) *wire.FilesystemLayout {
	return &wire.FilesystemLayout{ID: id,
		Constraints: &wire.LayoutConstraints{Sizes: sizes, Images: map[string]string{"debian": "*"}},
		Disks: []*wire.Disk{{Device: "/dev/vda", Partitions: []*wire.DiskPartition{
			{Number: 1, Label: "efi", Size: 512}, {Number: 2, Label: "root"}}}},
		Filesystems: []*wire.Filesystem{{Device: "/dev/vda1", Format: "vfat", Path: "/boot/efi"},
			{Device: "/dev/vda2", Format: "ext4", Path: "/"}}}
}

// SuperNetwork is the partition's pool of tenant networks: 10.128.0.0/14 in /22 children.
func SuperNetwork(id, partition string) *wire.Network {
	return &wire.Network{ID: id, Type: "super", Prefixes: []string{"10.128.0.0/14"}, PartitionID: partition, ChildPrefixLength: 22}
}

// Internet is an external network with NAT and a default route: 100.64.0.0/22 in VRF 104009.
func Internet(id string) *wire.Network {
	return &wire.Network{ID: id, Type: "external", Prefixes: []string{"100.64.0.0/22"}, DestinationPrefixes: []string{"0.0.0.0/0"},
		NAT: true, VRF: 104009}
}

// Project creates a project and returns its ID.
func (a *API) Project(name string) string {
	a.t.Helper()
	r, err := a.Client(AdminToken).Project.CreateProjectContext(a.t.Context(), project.NewCreateProjectParams().
		WithBody(&wire.Project{Name: name}), nil)
	a.check("create project "+name, err)
	return r.Payload.ID
}

// Token creates a token with the role ("editor", "service", ...) in the project ("" for none) and
// returns its secret.
func (a *API) Token(name, role, project string) string {
	a.t.Helper()
	r, err := a.Client(AdminToken).Token.CreateTokenContext(a.t.Context(), token.NewCreateTokenParams().
		WithBody(&wire.Token{Name: name, Role: role, ProjectID: project}), nil)
	a.check("create token "+name, err)
	return r.Payload.Secret
}

// RegisterWaiting registers the machine, lets it Wait (see Wait for the returned channel) and
// returns once metal-api lists it as waiting and alive, i.e. allocatable.
func (a *API) RegisterWaiting(m api.Machine) <-chan api.InstallSpec {
	a.t.Helper()
	a.Register(m)
	spec := a.Wait(m.ID)
	admin := a.Client(AdminToken)
	WaitFor(a.t, 30*time.Second, "machine "+m.ID+" waiting", func() (bool, error) {
		r, err := admin.Machine.GetMachineContext(a.t.Context(), machineops.NewGetMachineParams().WithID(m.ID), nil)
		return err == nil && r.Payload.Waiting && r.Payload.Liveliness == api.LivelinessAlive, err
	})
	return spec
}

// WaitFor polls cond every 50ms until it holds, failing the test after timeout with the last error.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, error)) {
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

func (a *API) check(what string, err error) {
	a.t.Helper()
	if err != nil {
		a.t.Fatalf("%s: %v", what, err)
	}
}
