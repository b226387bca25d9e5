package autoscaler_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/metalforge/metalforge/pkg/autoscaler"
	pb "github.com/metalforge/metalforge/pkg/autoscaler/externalgrpc"
	machineops "github.com/metalforge/metalforge/pkg/client/metalapi/machine"
	"github.com/metalforge/metalforge/pkg/client/wire"
)

func TestNodeGroups(t *testing.T) {
	f := newFixture(t, 0)
	r, err := f.cp.NodeGroups(t.Context(), &pb.NodeGroupsRequest{})
	check(t, err)
	var got []*pb.NodeGroup
	for _, g := range r.GetNodeGroups() {
		got = append(got, &pb.NodeGroup{Id: g.GetId(), MinSize: g.GetMinSize(), MaxSize: g.GetMaxSize()})
		if g.GetDebug() == "" {
			t.Errorf("node group %s has no debug string", g.GetId())
		}
	}
	want := []*pb.NodeGroup{{Id: "workers", MaxSize: 3}, {Id: "spare", MaxSize: 5}, {Id: "gpu", MaxSize: 2}}
	if d := cmp.Diff(want, got, protocmp.Transform()); d != "" {
		t.Errorf("node groups (-want +got):\n%s", d)
	}
	gpu, err := f.cp.GPULabel(t.Context(), &pb.GPULabelRequest{})
	check(t, err)
	if gpu.GetLabel() != autoscaler.LabelGPU {
		t.Errorf("gpu label %q, want %q", gpu.GetLabel(), autoscaler.LabelGPU)
	}
	types, err := f.cp.GetAvailableGPUTypes(t.Context(), &pb.GetAvailableGPUTypesRequest{})
	check(t, err)
	if _, ok := types.GetGpuTypes()["A100"]; !ok || len(types.GetGpuTypes()) != 1 {
		t.Errorf("gpu types %v, want A100", types.GetGpuTypes())
	}
	// The optional calls say Unimplemented, so cluster-autoscaler takes its defaults.
	for name, call := range map[string]func() error{
		"PricingNodePrice": func() error { _, err := f.cp.PricingNodePrice(t.Context(), &pb.PricingNodePriceRequest{}); return err },
		"PricingPodPrice":  func() error { _, err := f.cp.PricingPodPrice(t.Context(), &pb.PricingPodPriceRequest{}); return err },
		"NodeGroupGetOptions": func() error {
			_, err := f.cp.NodeGroupGetOptions(t.Context(), &pb.NodeGroupAutoscalingOptionsRequest{Id: "workers"})
			return err
		},
	} {
		if code := status.Code(call()); code != codes.Unimplemented {
			t.Errorf("%s: code %v, want Unimplemented", name, code)
		}
	}
	_, err = f.cp.Cleanup(t.Context(), &pb.CleanupRequest{})
	check(t, err)
	_, err = f.cp.NodeGroupTargetSize(t.Context(), &pb.NodeGroupTargetSizeRequest{Id: "nope"})
	if status.Code(err) != codes.NotFound {
		t.Errorf("target size of an unknown group: %v, want NotFound", err)
	}
}

// TestTemplateNodeInfo: with no machines at all (scale from zero) the template decodes as a
// v1.Node with the size's minimum capacity and the labels metal-ccm gives real nodes, and a real
// kube-apiserver accepts it.
func TestTemplateNodeInfo(t *testing.T) {
	f := newFixture(t, 0)
	tests := []struct {
		group    string
		capacity corev1.ResourceList
		labels   map[string]string
	}{
		{"workers", corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("1Gi"),
			corev1.ResourceEphemeralStorage: resource.MustParse("10Gi"), corev1.ResourcePods: resource.MustParse("110")},
			map[string]string{"pool": "workers"}},
		{"gpu", corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("32"), corev1.ResourceMemory: resource.MustParse("256Gi"),
			autoscaler.ResourceGPU: resource.MustParse("2"), corev1.ResourcePods: resource.MustParse("110")},
			map[string]string{"pool": "gpu", autoscaler.LabelGPU: "A100"}},
	}
	for _, tt := range tests {
		t.Run(tt.group, func(t *testing.T) {
			r, err := f.cp.NodeGroupTemplateNodeInfo(t.Context(), &pb.NodeGroupTemplateNodeInfoRequest{Id: tt.group})
			check(t, err)
			var node corev1.Node
			if err := node.Unmarshal(r.GetNodeBytes()); err != nil {
				t.Fatalf("node bytes are no v1.Node: %v", err)
			}
			if d := cmp.Diff(tt.capacity, node.Status.Capacity); d != "" {
				t.Errorf("capacity (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tt.capacity, node.Status.Allocatable); d != "" {
				t.Errorf("allocatable (-want +got):\n%s", d)
			}
			size := map[string]string{"workers": sizeS1, "gpu": sizeGPU}[tt.group]
			want := map[string]string{
				corev1.LabelTopologyZone: part, corev1.LabelTopologyRegion: "fra", corev1.LabelInstanceTypeStable: size,
				corev1.LabelOSStable: "linux", corev1.LabelArchStable: "amd64", corev1.LabelHostname: node.Name,
				autoscaler.LabelSize: size, autoscaler.LabelPartition: part,
				"cluster.metalforge.io/id": cluster, "autoscaler.metalforge.io/node-group": tt.group,
			}
			for k, v := range tt.labels {
				want[k] = v
			}
			if d := cmp.Diff(want, node.Labels); d != "" {
				t.Errorf("labels (-want +got):\n%s", d)
			}
			// Valid as a Node: the API server validates it on create.
			node.ResourceVersion = ""
			created, err := env.Kube.CoreV1().Nodes().Create(t.Context(), &node, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			if err != nil {
				t.Fatalf("kube-apiserver refuses the template node: %v", err)
			}
			if created.Name != node.Name {
				t.Errorf("created node %q, want %q", created.Name, node.Name)
			}
		})
	}
}

// TestIncreaseSize: machines are allocated from the waiting ones with the membership tags, and
// the group's calls see them.
func TestIncreaseSize(t *testing.T) {
	f := newFixture(t, 3)
	ctx := t.Context()
	_, err := f.cp.NodeGroupIncreaseSize(ctx, &pb.NodeGroupIncreaseSizeRequest{Id: "workers", Delta: 2})
	check(t, err)
	ids := f.allocated("workers")
	if len(ids) != 2 {
		t.Fatalf("allocated %v, want 2 machines", ids)
	}
	all := f.machines()
	for _, id := range ids {
		m := all[id]
		if m.Allocation.ProjectID != f.project || m.SizeID != sizeS1 || m.PartitionID != part || m.Allocation.ImageID != img {
			t.Errorf("machine %s: project %s size %s partition %s image %s", id, m.Allocation.ProjectID, m.SizeID, m.PartitionID, m.Allocation.ImageID)
		}
		for _, tag := range []string{"cluster.metalforge.io/id=" + cluster, "autoscaler.metalforge.io/node-group=workers", "pool=workers", "team"} {
			if !slices.Contains(m.Tags, tag) {
				t.Errorf("machine %s tags %v lack %q", id, m.Tags, tag)
			}
		}
		if d := cmp.Diff([]string{"ssh-ed25519 AAAA test"}, m.Allocation.SSHPubKeys); d != "" {
			t.Errorf("machine %s ssh keys (-want +got):\n%s", id, d)
		}
	}
	size, err := f.cp.NodeGroupTargetSize(ctx, &pb.NodeGroupTargetSizeRequest{Id: "workers"})
	check(t, err)
	if size.GetTargetSize() != 2 {
		t.Errorf("target size %d, want 2", size.GetTargetSize())
	}
	nodes, err := f.cp.NodeGroupNodes(ctx, &pb.NodeGroupNodesRequest{Id: "workers"})
	check(t, err)
	var want []*pb.Instance
	for _, id := range ids {
		want = append(want, &pb.Instance{Id: "metal://" + part + "/" + id,
			Status: &pb.InstanceStatus{InstanceState: pb.InstanceStatus_instanceCreating}})
	}
	if d := cmp.Diff(want, nodes.GetInstances(), protocmp.Transform()); d != "" {
		t.Errorf("instances (-want +got):\n%s", d)
	}
	for _, tt := range []struct{ providerID, group string }{
		{"metal://" + part + "/" + ids[0], "workers"},
		{"metal://" + ids[1], "workers"},
		{"metal://" + part + "/" + f.freeMachine(), ""}, // waiting, no member
		{"aws:///eu-central-1a/i-0123", ""},
		{"", ""},
	} {
		r, err := f.cp.NodeGroupForNode(ctx, &pb.NodeGroupForNodeRequest{Node: &pb.ExternalGrpcNode{ProviderID: tt.providerID, Name: "n"}})
		check(t, err)
		if r.GetNodeGroup().GetId() != tt.group {
			t.Errorf("node group of %q: %q, want %q", tt.providerID, r.GetNodeGroup().GetId(), tt.group)
		}
	}
	spare, err := f.cp.NodeGroupTargetSize(ctx, &pb.NodeGroupTargetSizeRequest{Id: "spare"})
	check(t, err)
	if spare.GetTargetSize() != 0 {
		t.Errorf("target size of spare %d, want 0: members of workers leaked", spare.GetTargetSize())
	}
}

// freeMachine is the ID of a machine that is not allocated.
func (f *fixture) freeMachine() string {
	f.t.Helper()
	for id, m := range f.machines() {
		if m.Allocation == nil {
			return id
		}
	}
	f.t.Fatal("no free machine")
	return ""
}

// TestIncreaseSizeRefused: beyond the waiting machines or max, nothing is allocated.
func TestIncreaseSizeRefused(t *testing.T) {
	f := newFixture(t, 2)
	ctx := t.Context()
	// A machine of the partition and size that is not waiting any more (allocated elsewhere) does
	// not count.
	other, err := f.admin.Machine.AllocateMachineContext(ctx, machineops.NewAllocateMachineParams().WithBody(&wire.MachineAllocateRequest{
		ProjectID: f.project, PartitionID: part, SizeID: sizeS1, ImageID: img, FilesystemLayoutID: layout, AutoNetwork: true}), nil)
	check(t, err)
	before := f.allocations()
	tests := []struct {
		name  string
		group string
		delta int32
		code  codes.Code
	}{
		{"more than waiting", "workers", 2, codes.ResourceExhausted},
		{"beyond max", "workers", 4, codes.FailedPrecondition},
		{"scale from zero, nothing waiting", "gpu", 1, codes.ResourceExhausted},
		{"zero", "workers", 0, codes.InvalidArgument},
		{"negative", "workers", -1, codes.InvalidArgument},
		{"unknown group", "nope", 1, codes.NotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.cp.NodeGroupIncreaseSize(ctx, &pb.NodeGroupIncreaseSizeRequest{Id: tt.group, Delta: tt.delta})
			if status.Code(err) != tt.code {
				t.Fatalf("increase %s by %d: %v, want %v", tt.group, tt.delta, err, tt.code)
			}
			t.Logf("refused: %s", status.Convert(err).Message())
			if d := cmp.Diff(before, f.allocations()); d != "" {
				t.Errorf("metal-api changed (-before +after):\n%s", d)
			}
		})
	}
	if msg := status.Convert(func() error {
		_, err := f.cp.NodeGroupIncreaseSize(ctx, &pb.NodeGroupIncreaseSizeRequest{Id: "workers", Delta: 2})
		return err
	}()).Message(); msg != fmt.Sprintf("node group workers: 2 machines of size %s asked in partition %s, only 1 waiting; nothing allocated", sizeS1, part) {
		t.Errorf("message %q", msg)
	}
	// What is waiting can be had.
	_, err = f.cp.NodeGroupIncreaseSize(ctx, &pb.NodeGroupIncreaseSizeRequest{Id: "workers", Delta: 1})
	check(t, err)
	if got := f.allocated("workers"); len(got) != 1 || got[0] == other.Payload.ID {
		t.Errorf("allocated %v, want the one waiting machine", got)
	}
}

// TestDeleteNodes frees members only, and not below min.
func TestDeleteNodes(t *testing.T) {
	f := newFixture(t, 4, func(c *autoscaler.Config) { c.NodeGroups[1].Min = 1 })
	ctx := t.Context()
	_, err := f.cp.NodeGroupIncreaseSize(ctx, &pb.NodeGroupIncreaseSizeRequest{Id: "workers", Delta: 2})
	check(t, err)
	_, err = f.cp.NodeGroupIncreaseSize(ctx, &pb.NodeGroupIncreaseSizeRequest{Id: "spare", Delta: 1})
	check(t, err)
	workers, spare := f.allocated("workers"), f.allocated("spare")
	node := func(id string) *pb.ExternalGrpcNode {
		return &pb.ExternalGrpcNode{ProviderID: autoscaler.ProviderID(part, id), Name: id}
	}
	before := f.allocations()
	for _, tt := range []struct {
		name  string
		group string
		nodes []*pb.ExternalGrpcNode
		code  codes.Code
	}{
		{"member of another group", "workers", []*pb.ExternalGrpcNode{node(workers[0]), node(spare[0])}, codes.InvalidArgument},
		{"not a metal node", "workers", []*pb.ExternalGrpcNode{{ProviderID: "aws:///i-1", Name: "x"}}, codes.InvalidArgument},
		{"below min", "spare", []*pb.ExternalGrpcNode{node(spare[0])}, codes.FailedPrecondition},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.cp.NodeGroupDeleteNodes(ctx, &pb.NodeGroupDeleteNodesRequest{Id: tt.group, Nodes: tt.nodes})
			if status.Code(err) != tt.code {
				t.Fatalf("delete: %v, want %v", err, tt.code)
			}
			if d := cmp.Diff(before, f.allocations()); d != "" {
				t.Errorf("metal-api changed (-before +after):\n%s", d)
			}
		})
	}
	_, err = f.cp.NodeGroupDeleteNodes(ctx, &pb.NodeGroupDeleteNodesRequest{Id: "workers", Nodes: []*pb.ExternalGrpcNode{node(workers[0])}})
	check(t, err)
	after := f.machines()
	if m := after[workers[0]]; m.Allocation != nil || len(m.Tags) != 0 {
		t.Errorf("machine %s after delete: allocation %v tags %v, want freed", m.ID, m.Allocation, m.Tags)
	}
	if d := cmp.Diff([]string{workers[1]}, f.allocated("workers")); d != "" {
		t.Errorf("workers after delete (-want +got):\n%s", d)
	}
	if after[spare[0]].Allocation == nil {
		t.Errorf("spare machine %s was freed", spare[0])
	}
	size, err := f.cp.NodeGroupTargetSize(ctx, &pb.NodeGroupTargetSizeRequest{Id: "workers"})
	check(t, err)
	if size.GetTargetSize() != 1 {
		t.Errorf("target size %d, want 1", size.GetTargetSize())
	}
	r, err := f.cp.NodeGroupForNode(ctx, &pb.NodeGroupForNodeRequest{Node: node(workers[0])})
	check(t, err)
	if r.GetNodeGroup().GetId() != "" {
		t.Errorf("freed machine still in node group %q", r.GetNodeGroup().GetId())
	}
}

// TestDecreaseTargetSize drops machines that have not come up, never running ones.
func TestDecreaseTargetSize(t *testing.T) {
	f := newFixture(t, 3)
	ctx := t.Context()
	_, err := f.cp.NodeGroupIncreaseSize(ctx, &pb.NodeGroupIncreaseSizeRequest{Id: "workers", Delta: 3})
	check(t, err)
	ids := f.allocated("workers")
	// The first machine's installed OS phones home: it runs.
	up := ids[0]
	for _, ev := range []string{"Installing", "Booting New Kernel", "Phoned Home"} {
		_, err := f.admin.Machine.AddMachineEventContext(ctx, machineops.NewAddMachineEventParams().WithID(up).
			WithBody(&wire.EventRequest{Event: ev}), nil)
		check(t, err)
	}
	_, err = f.cp.Refresh(ctx, &pb.RefreshRequest{})
	check(t, err)
	nodes, err := f.cp.NodeGroupNodes(ctx, &pb.NodeGroupNodesRequest{Id: "workers"})
	check(t, err)
	running := 0
	for _, in := range nodes.GetInstances() {
		if in.GetStatus().GetInstanceState() == pb.InstanceStatus_instanceRunning {
			running++
			if in.GetId() != autoscaler.ProviderID(part, up) {
				t.Errorf("running instance %s, want %s", in.GetId(), up)
			}
		}
	}
	if running != 1 {
		t.Errorf("%d running instances, want 1: %v", running, nodes.GetInstances())
	}
	before := f.allocations()
	for _, delta := range []int32{0, 1, -3} {
		_, err := f.cp.NodeGroupDecreaseTargetSize(ctx, &pb.NodeGroupDecreaseTargetSizeRequest{Id: "workers", Delta: delta})
		if code := status.Code(err); code != codes.InvalidArgument && code != codes.FailedPrecondition {
			t.Errorf("decrease by %d: %v, want refusal", delta, err)
		}
	}
	if d := cmp.Diff(before, f.allocations()); d != "" {
		t.Errorf("metal-api changed by refused decreases (-before +after):\n%s", d)
	}
	_, err = f.cp.NodeGroupDecreaseTargetSize(ctx, &pb.NodeGroupDecreaseTargetSizeRequest{Id: "workers", Delta: -2})
	check(t, err)
	if d := cmp.Diff([]string{up}, f.allocated("workers")); d != "" {
		t.Errorf("members after decrease (-want +got):\n%s", d)
	}
}

// TestRefresh: machines tagged for a group outside the autoscaler show up after Refresh.
func TestRefresh(t *testing.T) {
	f := newFixture(t, 1)
	ctx := t.Context()
	size, err := f.cp.NodeGroupTargetSize(ctx, &pb.NodeGroupTargetSizeRequest{Id: "spare"})
	check(t, err)
	if size.GetTargetSize() != 0 {
		t.Fatalf("target size %d, want 0", size.GetTargetSize())
	}
	m, err := f.admin.Machine.AllocateMachineContext(ctx, machineops.NewAllocateMachineParams().WithBody(&wire.MachineAllocateRequest{
		ProjectID: f.project, PartitionID: part, SizeID: sizeS1, ImageID: img, FilesystemLayoutID: layout, AutoNetwork: true,
		Tags: []string{autoscaler.TagCluster + cluster, autoscaler.TagNodeGroup + "spare"}}), nil)
	check(t, err)
	_, err = f.cp.Refresh(ctx, &pb.RefreshRequest{})
	check(t, err)
	size, err = f.cp.NodeGroupTargetSize(ctx, &pb.NodeGroupTargetSizeRequest{Id: "spare"})
	check(t, err)
	if size.GetTargetSize() != 1 {
		t.Errorf("target size after refresh %d, want 1", size.GetTargetSize())
	}
	r, err := f.cp.NodeGroupForNode(ctx, &pb.NodeGroupForNodeRequest{Node: &pb.ExternalGrpcNode{ProviderID: autoscaler.ProviderID(part, m.Payload.ID)}})
	check(t, err)
	if r.GetNodeGroup().GetId() != "spare" {
		t.Errorf("node group %q, want spare", r.GetNodeGroup().GetId())
	}
}

// TestIncreaseSizeConcurrent: concurrent scale-ups are serialised, so max holds.
func TestIncreaseSizeConcurrent(t *testing.T) {
	f := newFixture(t, 4)
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := f.cp.NodeGroupIncreaseSize(t.Context(), &pb.NodeGroupIncreaseSizeRequest{Id: "workers", Delta: 2})
			errs <- err
		}()
	}
	codesSeen := map[codes.Code]int{}
	for range 2 {
		codesSeen[status.Code(<-errs)]++
	}
	if d := cmp.Diff(map[codes.Code]int{codes.OK: 1, codes.FailedPrecondition: 1}, codesSeen); d != "" {
		t.Errorf("outcomes (-want +got):\n%s", d)
	}
	if got := f.allocated("workers"); len(got) != 2 {
		t.Errorf("allocated %v, want 2 machines (max 3)", got)
	}
}
