package autoscaler

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/metalforge/metalforge/pkg/autoscaler/externalgrpc"
	"github.com/metalforge/metalforge/pkg/client/wire"
)

// MaxPods is the pod capacity of template nodes (kubelet's default).
const MaxPods = 110

// NodeGroupTemplateNodeInfo returns the node a new member would become, serialized as protobuf
// (v1.Node.Marshal): capacity from the size, labels as metal-ccm sets them. It works with zero
// members (scale from zero).
func (s *Server) NodeGroupTemplateNodeInfo(ctx context.Context, req *externalgrpc.NodeGroupTemplateNodeInfoRequest) (*externalgrpc.NodeGroupTemplateNodeInfoResponse, error) {
	g, err := s.group(req.GetId())
	if err != nil {
		return nil, err
	}
	snap, err := s.current(ctx)
	if err != nil {
		return nil, err
	}
	node, err := TemplateNode(g, snap.sizes[g.Size], snap.partitions[g.Partition])
	if err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "node group %s: %v", g.ID, err)
	}
	raw, err := node.Marshal()
	if err != nil {
		return nil, status.Errorf(codes.Internal, "node group %s: marshal template node: %v", g.ID, err)
	}
	return &externalgrpc.NodeGroupTemplateNodeInfoResponse{NodeBytes: raw}, nil
}

// TemplateNode is the node of a new member of g: capacity and allocatable are the minimum of the
// size's constraints (cores → cpu, memory, storage → ephemeral-storage, gpu → ResourceGPU) and
// MaxPods pods; labels are the well-known ones (zone = partition, region, instance type = size,
// os, arch, hostname), metal-ccm's machine labels, and the key=value tags of the machine (cluster
// tag, node group tag, the group's tags), which metal-ccm copies to the node.
func TemplateNode(g *NodeGroup, sz *wire.Size, p *wire.Partition) (*corev1.Node, error) {
	if sz == nil || p == nil {
		return nil, fmt.Errorf("size %s or partition %s not known", g.Size, g.Partition)
	}
	capacity := corev1.ResourceList{corev1.ResourcePods: *resource.NewQuantity(MaxPods, resource.DecimalSI)}
	for _, c := range sz.Constraints {
		if c == nil {
			continue
		}
		switch c.Type {
		case "cores":
			capacity[corev1.ResourceCPU] = *resource.NewQuantity(int64(c.Min), resource.DecimalSI)
		case "memory":
			capacity[corev1.ResourceMemory] = *resource.NewQuantity(int64(c.Min), resource.BinarySI)
		case "storage":
			capacity[corev1.ResourceEphemeralStorage] = *resource.NewQuantity(int64(c.Min), resource.BinarySI)
		case "gpu":
			if c.Min > 0 {
				capacity[ResourceGPU] = *resource.NewQuantity(int64(c.Min), resource.DecimalSI)
			}
		}
	}
	if _, ok := capacity[corev1.ResourceCPU]; !ok {
		return nil, fmt.Errorf("size %s has no cores constraint", sz.ID)
	}
	if _, ok := capacity[corev1.ResourceMemory]; !ok {
		return nil, fmt.Errorf("size %s has no memory constraint", sz.ID)
	}
	name := "template-node-for-" + g.ID
	labels := map[string]string{}
	for _, t := range append([]string{g.clusterTag(), g.groupTag()}, g.Tags...) {
		k, v, ok := strings.Cut(t, "=")
		if ok && len(validation.IsQualifiedName(k)) == 0 && len(validation.IsValidLabelValue(v)) == 0 {
			labels[k] = v
		}
	}
	for k, v := range map[string]string{
		corev1.LabelHostname:           name,
		corev1.LabelOSStable:           "linux",
		corev1.LabelArchStable:         "amd64",
		corev1.LabelTopologyZone:       g.Partition,
		corev1.LabelTopologyRegion:     Region(p),
		corev1.LabelInstanceTypeStable: g.Size,
		LabelSize:                      g.Size,
		LabelPartition:                 g.Partition,
	} {
		if v = labelSafe(v); v != "" {
			labels[k] = v
		}
	}
	if gpu := gpuOf(sz); gpu != nil && gpu.Min > 0 {
		labels[LabelGPU] = gpuType(gpu)
	}
	return &corev1.Node{
		TypeMeta:   metav1.TypeMeta{Kind: "Node", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Status: corev1.NodeStatus{
			Capacity:    capacity,
			Allocatable: capacity.DeepCopy(),
			Conditions: []corev1.NodeCondition{
				{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady"},
				{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse},
				{Type: corev1.NodeDiskPressure, Status: corev1.ConditionFalse},
				{Type: corev1.NodePIDPressure, Status: corev1.ConditionFalse},
				{Type: corev1.NodeNetworkUnavailable, Status: corev1.ConditionFalse},
			},
			NodeInfo: corev1.NodeSystemInfo{OperatingSystem: "linux", Architecture: "amd64"},
		},
	}, nil
}

// Region of a partition, as metal-ccm derives it: its topology.kubernetes.io/region or region
// label, else the part of its ID before the first dash (fra-equ01 → fra), else the ID.
func Region(p *wire.Partition) string {
	for _, k := range []string{corev1.LabelTopologyRegion, "region"} {
		if r := p.Labels[k]; r != "" {
			return r
		}
	}
	if r, _, ok := strings.Cut(p.ID, "-"); ok && r != "" {
		return r
	}
	return p.ID
}

// labelSafe is v if it is a valid label value, "" otherwise.
func labelSafe(v string) string {
	if len(validation.IsValidLabelValue(v)) > 0 {
		return ""
	}
	return v
}
