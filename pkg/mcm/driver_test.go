package mcm_test

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/gardener/machine-controller-manager/pkg/apis/machine/v1alpha1"
	"github.com/gardener/machine-controller-manager/pkg/util/provider/driver"
	"github.com/gardener/machine-controller-manager/pkg/util/provider/machinecodes/codes"
	"github.com/gardener/machine-controller-manager/pkg/util/provider/machinecodes/status"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/metalforge/metalforge/pkg/autoscaler"
	"github.com/metalforge/metalforge/pkg/ccm"
	"github.com/metalforge/metalforge/pkg/mcm"
)

// codeOf is the MCM code of a driver error, as MCM's machine controller decodes it.
func codeOf(err error) codes.Code {
	s, _ := status.FromError(err)
	return s.Code()
}

func mcmMachine(name, providerID string) *v1alpha1.Machine {
	return &v1alpha1.Machine{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shoot"}, Spec: v1alpha1.MachineSpec{ProviderID: providerID}}
}

// TestProviderIDAgrees: the driver's provider IDs and cluster tag are metal-ccm's (which writes
// Node.spec.providerID) and the autoscaler's, or MCM would never match a Node to its Machine.
func TestProviderIDAgrees(t *testing.T) {
	for _, tc := range []struct{ partition, id string }{
		{"fra-equ01", "00000000-0000-0000-0000-000000000001"}, {"p", "m"},
	} {
		got := mcm.ProviderID(tc.partition, tc.id)
		if want := ccm.ProviderID(tc.partition, tc.id); got != want {
			t.Errorf("mcm.ProviderID = %q, metal-ccm's %q", got, want)
		}
		if want := autoscaler.ProviderID(tc.partition, tc.id); got != want {
			t.Errorf("mcm.ProviderID = %q, the autoscaler's %q", got, want)
		}
		back, err := mcm.ParseProviderID(got)
		if err != nil || back != tc.id {
			t.Errorf("ParseProviderID(%q) = %q, %v; want %q", got, back, err, tc.id)
		}
		if ccmID, err := ccm.ParseProviderID(got); err != nil || ccmID != back {
			t.Errorf("metal-ccm parses %q as %q, %v; the driver as %q", got, ccmID, err, back)
		}
	}
	if tags := []string{mcm.TagCluster, ccm.TagCluster, autoscaler.TagCluster}; tags[0] != tags[1] || tags[0] != tags[2] {
		t.Errorf("cluster tags differ: mcm %q, metal-ccm %q, autoscaler %q", tags[0], tags[1], tags[2])
	}
	if mcm.ProviderName != ccm.ProviderName {
		t.Errorf("provider names differ: mcm %q, metal-ccm %q", mcm.ProviderName, ccm.ProviderName)
	}
	for _, bad := range []string{"", "aws:///i-1", "metal://", "metal://p/"} {
		if _, err := mcm.ParseProviderID(bad); err == nil {
			t.Errorf("ParseProviderID(%q) succeeded", bad)
		}
	}
}

// TestInvalidClass: a bad providerSpec or secret is InvalidArgument with a message naming the
// field, before metal-api is asked.
func TestInvalidClass(t *testing.T) {
	good := mcm.ProviderSpec{Partition: part, Size: sizeID, Image: img, Project: "p1", Networks: []string{"n1"}, ClusterID: "c1"}
	goodSecret := map[string][]byte{mcm.SecretMetalAPIURL: []byte("http://127.0.0.1:1"), mcm.SecretMetalAPIToken: []byte("t"), mcm.SecretUserData: []byte("x")}
	mod := func(f func(*mcm.ProviderSpec)) mcm.ProviderSpec {
		s := good
		s.Networks = slices.Clone(good.Networks)
		f(&s)
		return s
	}
	for _, tc := range []struct {
		name   string
		spec   any
		secret map[string][]byte
		want   string
	}{
		{"no partition", mod(func(s *mcm.ProviderSpec) { s.Partition = "" }), goodSecret, "partition is required"},
		{"bad size", mod(func(s *mcm.ProviderSpec) { s.Size = "S 1" }), goodSecret, `size "S 1" is not a valid id`},
		{"no image", mod(func(s *mcm.ProviderSpec) { s.Image = "" }), goodSecret, "image is required"},
		{"no project", mod(func(s *mcm.ProviderSpec) { s.Project = "" }), goodSecret, "project is required"},
		{"no cluster", mod(func(s *mcm.ProviderSpec) { s.ClusterID = "" }), goodSecret, "clusterID is required"},
		{"cluster with =", mod(func(s *mcm.ProviderSpec) { s.ClusterID = "a=b" }), goodSecret, `clusterID "a=b" contains`},
		{"no networks", mod(func(s *mcm.ProviderSpec) { s.Networks = nil }), goodSecret, "networks: at least the cluster's private network"},
		{"empty network", mod(func(s *mcm.ProviderSpec) { s.Networks = append(s.Networks, "") }), goodSecret, "networks(1) is empty"},
		{"reserved tag", mod(func(s *mcm.ProviderSpec) { s.Tags = []string{mcm.TagCluster + "other"} }), goodSecret, "the driver owns tags starting with " + mcm.TagCluster},
		{"bad ssh key", mod(func(s *mcm.ProviderSpec) { s.SSHKeys = []string{"hello"} }), goodSecret, "sshKeys(0) is not an OpenSSH public key"},
		{"unknown field", map[string]any{"partition": part, "sizes": "s1"}, goodSecret, `unknown field "sizes"`},
		{"not json", "partition", goodSecret, "decode providerSpec"},
		{"no url", good, map[string][]byte{mcm.SecretMetalAPIToken: []byte("t")}, "key metalAPIURL is missing"},
		{"bad url", good, map[string][]byte{mcm.SecretMetalAPIURL: []byte("metal-api:8080"), mcm.SecretMetalAPIToken: []byte("t")}, "is not an http(s) URL"},
		{"no token", good, map[string][]byte{mcm.SecretMetalAPIURL: []byte("http://x")}, "key metalAPIToken is missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := mcm.New(mcm.Config{})
			secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "shoot"}, Data: tc.secret}
			_, err := d.CreateMachine(t.Context(), &driver.CreateMachineRequest{Machine: mcmMachine("m1", ""), MachineClass: class("c", tc.spec), Secret: secret})
			if codeOf(err) != codes.InvalidArgument {
				t.Fatalf("CreateMachine: %v, want InvalidArgument", err)
			}
			// MCM's status text keeps the message between its brackets: the driver writes none of its own.
			s, _ := status.FromError(err)
			if !strings.Contains(s.Message(), tc.want) {
				t.Errorf("message %q does not contain %q", s.Message(), tc.want)
			}
			_, err = d.ListMachines(t.Context(), &driver.ListMachinesRequest{MachineClass: class("c", tc.spec), Secret: secret})
			if codeOf(err) != codes.InvalidArgument {
				t.Errorf("ListMachines: %v, want InvalidArgument", err)
			}
		})
	}
	d := mcm.New(mcm.Config{})
	secret := &corev1.Secret{Data: goodSecret}
	if _, err := d.CreateMachine(t.Context(), &driver.CreateMachineRequest{Machine: mcmMachine("Bad_Name", ""), MachineClass: class("c", good), Secret: secret}); codeOf(err) != codes.InvalidArgument {
		t.Errorf("machine name that is no hostname: %v, want InvalidArgument", err)
	}
	other := class("c", good)
	other.Provider = "aws"
	if _, err := d.CreateMachine(t.Context(), &driver.CreateMachineRequest{Machine: mcmMachine("m1", ""), MachineClass: other, Secret: secret}); codeOf(err) != codes.InvalidArgument {
		t.Errorf("class of another provider: %v, want InvalidArgument", err)
	}
}

// TestLifecycle drives the driver through create (spread over racks, idempotent), status, list and
// delete (idempotent) against a real metal-api whose machines registered over the boot service.
func TestLifecycle(t *testing.T) {
	f := newFixture(t)
	for _, rack := range []string{"rack-1", "rack-1", "rack-2", "rack-2", "rack-3"} {
		f.waiting(rack)
	}
	ctx := t.Context()
	d := mcm.New(mcm.Config{})
	cls := class("pool-a-z1", f.spec("c1"))
	secret := f.secret()

	// MCM asks for the status first; nothing exists yet.
	_, err := d.GetMachineStatus(ctx, &driver.GetMachineStatusRequest{Machine: mcmMachine("m-a", ""), MachineClass: cls, Secret: secret})
	if codeOf(err) != codes.NotFound {
		t.Fatalf("GetMachineStatus before create: %v, want NotFound", err)
	}
	created := map[string]*driver.CreateMachineResponse{}
	for _, name := range []string{"m-a", "m-b"} {
		r, err := d.CreateMachine(ctx, &driver.CreateMachineRequest{Machine: mcmMachine(name, ""), MachineClass: cls, Secret: secret})
		check(t, err)
		if r.NodeName != name {
			t.Errorf("node name %q, want the machine name %q", r.NodeName, name)
		}
		created[name] = r
	}
	got := f.allocated("c1")
	if len(got) != 2 {
		t.Fatalf("%d machines allocated for the cluster, want 2", len(got))
	}
	racks := map[string]bool{}
	for name, r := range created {
		id, err := mcm.ParseProviderID(r.ProviderID)
		check(t, err)
		m, ok := got[id]
		if !ok {
			t.Fatalf("provider id %s of %s is not an allocated machine of the cluster", r.ProviderID, name)
		}
		if want := ccm.ProviderID(m.PartitionID, m.ID); r.ProviderID != want {
			t.Errorf("provider id %q, metal-ccm's %q", r.ProviderID, want)
		}
		racks[m.RackID] = true
		a := m.Allocation
		wantTags := []string{"cluster.metalforge.io/id=c1", "mcm.metalforge.io/machine=" + name, "mcm.metalforge.io/node-group=pool-a-z1", "team=infra"}
		if diff := cmp.Diff(wantTags, slices.Sorted(slices.Values(m.Tags))); diff != "" {
			t.Errorf("tags of %s (-want +got):\n%s", name, diff)
		}
		if a.Hostname != name || a.ImageID != img || a.FilesystemLayoutID != layout || a.ProjectID != f.project ||
			a.UserData != userData || !slices.Equal(a.SSHPubKeys, []string{sshKey}) {
			t.Errorf("allocation of %s: %+v", name, a)
		}
		var nets []string
		for _, n := range a.Networks {
			nets = append(nets, n.NetworkID)
		}
		if diff := cmp.Diff([]string{f.private, internet}, nets); diff != "" {
			t.Errorf("networks of %s (-want +got):\n%s", name, diff)
		}
		var internal []string
		for _, ad := range r.Addresses {
			if ad.Type == corev1.NodeInternalIP {
				internal = append(internal, ad.Address)
			}
		}
		if len(internal) != 1 {
			t.Errorf("addresses of %s: %v, want one internal IP", name, r.Addresses)
		}
	}
	if len(racks) != 2 {
		t.Errorf("the cluster's two machines are in racks %v, want one in each rack", slices.Collect(maps.Keys(racks)))
	}

	// A name longer than a DNS label (gardener's can be) makes a 63-character hostname with a hash;
	// the name tag keeps the whole name.
	long := "shoot--myproject--my-long-shoot-name-worker-pool-1-z1-5d8f6-abcde"
	lr, err := d.CreateMachine(ctx, &driver.CreateMachineRequest{Machine: mcmMachine(long, ""), MachineClass: cls, Secret: secret})
	check(t, err)
	if len(lr.NodeName) != 63 || !strings.HasPrefix(lr.NodeName, long[:50]) {
		t.Errorf("node name of %s: %q, want its first characters and a hash, 63 in all", long, lr.NodeName)
	}
	l, err := d.ListMachines(ctx, &driver.ListMachinesRequest{MachineClass: cls, Secret: secret})
	check(t, err)
	if l.MachineList[lr.ProviderID] != long {
		t.Errorf("ListMachines names %s %q, want %q", lr.ProviderID, l.MachineList[lr.ProviderID], long)
	}
	_, err = d.DeleteMachine(ctx, &driver.DeleteMachineRequest{Machine: mcmMachine(long, ""), MachineClass: cls, Secret: secret})
	check(t, err)

	// A retry after a crash (the provider ID never reached the Machine) returns the same machine.
	again, err := d.CreateMachine(ctx, &driver.CreateMachineRequest{Machine: mcmMachine("m-a", ""), MachineClass: cls, Secret: secret})
	check(t, err)
	if again.ProviderID != created["m-a"].ProviderID {
		t.Errorf("second CreateMachine for m-a: %s, want the first machine %s", again.ProviderID, created["m-a"].ProviderID)
	}
	if n := len(f.allocated("c1")); n != 2 {
		t.Errorf("%d machines allocated after the retry, want 2", n)
	}

	// Status by provider ID and, before MCM recorded it, by name.
	for _, pid := range []string{created["m-b"].ProviderID, ""} {
		st, err := d.GetMachineStatus(ctx, &driver.GetMachineStatusRequest{Machine: mcmMachine("m-b", pid), MachineClass: cls, Secret: secret})
		check(t, err)
		if st.ProviderID != created["m-b"].ProviderID || st.NodeName != "m-b" {
			t.Errorf("GetMachineStatus(m-b, %q) = %+v", pid, st)
		}
	}

	// Another cluster of the same project sees none of them and can't free them.
	otherCls := class("pool-x", f.spec("c2"))
	l, err = d.ListMachines(ctx, &driver.ListMachinesRequest{MachineClass: otherCls, Secret: secret})
	check(t, err)
	if len(l.MachineList) != 0 {
		t.Errorf("cluster c2 lists %v", l.MachineList)
	}
	if _, err := d.GetMachineStatus(ctx, &driver.GetMachineStatusRequest{Machine: mcmMachine("m-a", created["m-a"].ProviderID), MachineClass: otherCls, Secret: secret}); codeOf(err) != codes.NotFound {
		t.Errorf("c2 status of c1's machine: %v, want NotFound", err)
	}
	_, err = d.DeleteMachine(ctx, &driver.DeleteMachineRequest{Machine: mcmMachine("m-a", created["m-a"].ProviderID), MachineClass: otherCls, Secret: secret})
	check(t, err)
	if n := len(f.allocated("c1")); n != 2 {
		t.Fatalf("c2's delete of c1's machine freed it: %d machines left, want 2", n)
	}

	l, err = d.ListMachines(ctx, &driver.ListMachinesRequest{MachineClass: cls, Secret: secret})
	check(t, err)
	want := map[string]string{created["m-a"].ProviderID: "m-a", created["m-b"].ProviderID: "m-b"}
	if diff := cmp.Diff(want, l.MachineList); diff != "" {
		t.Errorf("ListMachines (-want +got):\n%s", diff)
	}

	// A stale provider ID (the machine was freed and went to another MCM machine) is not the
	// Machine's: NotFound, and deleting it frees nothing.
	stale := mcmMachine("m-gone", created["m-b"].ProviderID)
	if _, err := d.GetMachineStatus(ctx, &driver.GetMachineStatusRequest{Machine: stale, MachineClass: cls, Secret: secret}); codeOf(err) != codes.NotFound {
		t.Errorf("status of m-b's machine for m-gone: %v, want NotFound", err)
	}
	_, err = d.DeleteMachine(ctx, &driver.DeleteMachineRequest{Machine: stale, MachineClass: cls, Secret: secret})
	check(t, err)
	if n := len(f.allocated("c1")); n != 2 {
		t.Fatalf("deleting m-gone freed m-b's machine: %d machines left, want 2", n)
	}

	// Delete by provider ID, and m-b by name only; both twice.
	for range 2 {
		_, err = d.DeleteMachine(ctx, &driver.DeleteMachineRequest{Machine: mcmMachine("m-a", created["m-a"].ProviderID), MachineClass: cls, Secret: secret})
		check(t, err)
		_, err = d.DeleteMachine(ctx, &driver.DeleteMachineRequest{Machine: mcmMachine("m-b", ""), MachineClass: cls, Secret: secret})
		check(t, err)
	}
	for name, r := range created {
		id, _ := mcm.ParseProviderID(r.ProviderID)
		if m := f.machine(id); m.Allocation != nil {
			t.Errorf("machine %s of %s is still allocated after DeleteMachine", id, name)
		}
		_, err := d.GetMachineStatus(ctx, &driver.GetMachineStatusRequest{Machine: mcmMachine(name, r.ProviderID), MachineClass: cls, Secret: secret})
		if codeOf(err) != codes.NotFound {
			t.Errorf("GetMachineStatus of freed %s: %v, want NotFound", name, err)
		}
	}
	l, err = d.ListMachines(ctx, &driver.ListMachinesRequest{MachineClass: cls, Secret: secret})
	check(t, err)
	if len(l.MachineList) != 0 {
		t.Errorf("ListMachines after delete: %v", l.MachineList)
	}
	// A provider ID of a machine metal-api never had is gone too.
	_, err = d.DeleteMachine(ctx, &driver.DeleteMachineRequest{Machine: mcmMachine("m-c", mcm.ProviderID(part, "no-such-machine")), MachineClass: cls, Secret: secret})
	check(t, err)
}

// TestMetalAPIErrors: metal-api's refusals arrive as MCM codes that make MCM do the right thing.
func TestMetalAPIErrors(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	d := mcm.New(mcm.Config{})
	cls := class("pool", f.spec("c1"))
	create := func(cls *v1alpha1.MachineClass, secret *corev1.Secret) error {
		_, err := d.CreateMachine(ctx, &driver.CreateMachineRequest{Machine: mcmMachine("m-1", ""), MachineClass: cls, Secret: secret})
		return err
	}
	// Nothing waits: MCM backs off (ResourceExhausted) instead of failing the machine.
	if err := create(cls, f.secret()); codeOf(err) != codes.ResourceExhausted {
		t.Errorf("no waiting machine: %v, want ResourceExhausted", err)
	}
	f.waiting("rack-1")
	spec := f.spec("c1")
	spec.Image = "no-such-image"
	if err := create(class("pool", spec), f.secret()); codeOf(err) != codes.InvalidArgument {
		t.Errorf("unknown image: %v, want InvalidArgument", err)
	}
	bad := f.secret()
	bad.Data[mcm.SecretMetalAPIToken] = []byte("wrong")
	if err := create(cls, bad); codeOf(err) != codes.Unauthenticated {
		t.Errorf("wrong token: %v, want Unauthenticated", err)
	}
	down := f.secret()
	down.Data[mcm.SecretMetalAPIURL] = []byte("http://127.0.0.1:1")
	if err := create(cls, down); codeOf(err) != codes.Unavailable {
		t.Errorf("metal-api unreachable: %v, want Unavailable", err)
	}
	if err := create(cls, f.secret()); err != nil {
		t.Errorf("create once the machine waits: %v", err)
	}
}

// TestNoVolumesNoInitialization: metalforge has no provider volumes and nothing to initialize.
func TestNoVolumesNoInitialization(t *testing.T) {
	d := mcm.New(mcm.Config{})
	r, err := d.GetVolumeIDs(t.Context(), &driver.GetVolumeIDsRequest{PVSpecs: []*corev1.PersistentVolumeSpec{
		{PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: "csi.example.com", VolumeHandle: "vol-1"}}},
		{PersistentVolumeSource: corev1.PersistentVolumeSource{Local: &corev1.LocalVolumeSource{Path: "/mnt/disk"}}},
	}})
	check(t, err)
	if r.VolumeIDs == nil || len(r.VolumeIDs) != 0 {
		t.Errorf("GetVolumeIDs = %#v, want an empty list", r.VolumeIDs)
	}
	_, err = d.InitializeMachine(t.Context(), &driver.InitializeMachineRequest{Machine: mcmMachine("m", "")})
	if codeOf(err) != codes.Unimplemented {
		t.Errorf("InitializeMachine: %v, want Unimplemented", err)
	}
}
