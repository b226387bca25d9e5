package ccm

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	cloudprovider "k8s.io/cloud-provider"

	"github.com/metalforge/metalforge/pkg/client/wire"
	"github.com/metalforge/metalforge/pkg/providerid"
)

// instances implements cloudprovider.InstancesV2.
type instances struct{ c *Cloud }

// ProviderID is the provider ID of a machine: metal://<partition>/<machine-id>.
func ProviderID(partition, machineID string) string { return providerid.Format(partition, machineID) }

// ParseProviderID returns the machine ID of a provider ID (metal://<partition>/<id>, or
// metal://<id> as written by hand).
func ParseProviderID(providerID string) (string, error) { return providerid.Parse(providerID) }

// machineOf finds the node's machine by provider ID, or by hostname before it has one.
func (i *instances) machineOf(ctx context.Context, node *corev1.Node) (*wire.Machine, error) {
	if node.Spec.ProviderID == "" {
		return i.c.metal.machineByHostname(ctx, node.Name)
	}
	id, err := ParseProviderID(node.Spec.ProviderID)
	if err != nil {
		return nil, err
	}
	return i.c.metal.machine(ctx, id)
}

// InstanceExists is false once the node's machine is freed (or given to another project), which
// makes the node lifecycle controller delete the Node.
func (i *instances) InstanceExists(ctx context.Context, node *corev1.Node) (bool, error) {
	_, err := i.machineOf(ctx, node)
	if errors.Is(err, errNotFound) {
		return false, nil
	}
	return err == nil, err
}

// InstanceShutdown is true when the machine's BMC reports power off.
func (i *instances) InstanceShutdown(ctx context.Context, node *corev1.Node) (bool, error) {
	m, err := i.machineOf(ctx, node)
	if errors.Is(err, errNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return m.BMC != nil && strings.EqualFold(m.BMC.PowerState, "OFF"), nil
}

// InstanceMetadata gives the node its provider ID, addresses, instance type (size), zone
// (partition), region and the machine labels.
func (i *instances) InstanceMetadata(ctx context.Context, node *corev1.Node) (*cloudprovider.InstanceMetadata, error) {
	m, err := i.machineOf(ctx, node)
	if errors.Is(err, errNotFound) {
		return nil, fmt.Errorf("node %s: %w: %w", node.Name, cloudprovider.InstanceNotFound, err)
	}
	if err != nil {
		return nil, err
	}
	p, err := i.c.metal.partition(ctx, m.PartitionID)
	if err != nil {
		return nil, err
	}
	return &cloudprovider.InstanceMetadata{
		ProviderID:       ProviderID(m.PartitionID, m.ID),
		InstanceType:     m.SizeID,
		NodeAddresses:    addresses(m),
		Zone:             m.PartitionID,
		Region:           Region(p),
		AdditionalLabels: machineLabels(m),
	}, nil
}

// Region of a partition: its topology.kubernetes.io/region or region label, else the part of its ID
// before the first dash (fra-equ01 → fra), else the ID.
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

// addresses: the allocation's hostname, private network IPs as internal, external network IPs as
// external addresses. Underlay addresses (firewalls) are not for Kubernetes.
func addresses(m *wire.Machine) []corev1.NodeAddress {
	var internal, external []corev1.NodeAddress
	for _, n := range m.Allocation.Networks {
		switch {
		case n.Underlay:
		case n.Private:
			for _, ip := range n.Ips {
				internal = append(internal, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip})
			}
		default:
			for _, ip := range n.Ips {
				external = append(external, corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: ip})
			}
		}
	}
	out := []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: m.Allocation.Hostname}}
	return append(append(out, internal...), external...)
}

// asn is the machine's own ASN: the one of its private network.
func asn(m *wire.Machine) uint32 {
	var first uint32
	for _, n := range m.Allocation.Networks {
		if n.Private && n.ASN != 0 {
			return n.ASN
		}
		if first == 0 {
			first = n.ASN
		}
	}
	return first
}

// machineLabels are the node labels that mirror the machine.
func machineLabels(m *wire.Machine) map[string]string {
	l := map[string]string{LabelSize: m.SizeID, LabelPartition: m.PartitionID}
	if a := asn(m); a != 0 {
		l[LabelASN] = strconv.FormatUint(uint64(a), 10)
	}
	if m.RackID != "" {
		l[LabelRack] = m.RackID
	}
	for k, v := range l {
		if len(validation.IsValidLabelValue(v)) > 0 {
			delete(l, k)
		}
	}
	return l
}
