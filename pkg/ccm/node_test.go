package ccm_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	cloudproviderapi "k8s.io/cloud-provider/api"

	"github.com/metalforge/metalforge/pkg/ccm"
	"github.com/metalforge/metalforge/pkg/client/clienttest"
	machineops "github.com/metalforge/metalforge/pkg/client/metalapi/machine"
	"github.com/metalforge/metalforge/pkg/client/wire"
)

// newNode creates a Node as the kubelet does with --cloud-provider=external: tainted uninitialized.
func newNode(t testing.TB, name, providerID string) {
	t.Helper()
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{corev1.LabelHostname: name}},
		Spec: corev1.NodeSpec{ProviderID: providerID, Taints: []corev1.Taint{{
			Key: cloudproviderapi.TaintExternalCloudProvider, Value: "true", Effect: corev1.TaintEffectNoSchedule}}},
	}
	_, err := env.Kube.CoreV1().Nodes().Create(t.Context(), n, metav1.CreateOptions{})
	check(t, err)
}

func getNode(t testing.TB, name string) *corev1.Node {
	t.Helper()
	n, err := env.Kube.CoreV1().Nodes().Get(t.Context(), name, metav1.GetOptions{})
	check(t, err)
	return n
}

func hasTaint(n *corev1.Node, key string) bool {
	return slices.ContainsFunc(n.Spec.Taints, func(t corev1.Taint) bool { return t.Key == key })
}

// privateNet is the allocation's private network.
func privateNet(m *wire.Machine) *wire.MachineNetwork {
	for _, n := range m.Allocation.Networks {
		if n.Private {
			return n
		}
	}
	return nil
}

func TestNodeLifecycle(t *testing.T) {
	f := newFixture(t, ccm.BackendMetalLB)
	ctx := t.Context()
	ma := f.machine(1, "node-a", "rack-1", "team=blue", "not a label")
	mb := f.machine(2, "node-b", "rack-2")
	newNode(t, "node-a", ccm.ProviderID(part, ma.ID))
	newNode(t, "node-b", "") // found by hostname

	for _, m := range []*wire.Machine{ma, mb} {
		name := m.Allocation.Hostname
		clienttest.WaitFor(t, 30*time.Second, "initialized "+name, func() (bool, error) {
			n, err := env.Kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			// Labels and taint go in one update, the addresses in a status update after it.
			return err == nil && !hasTaint(n, cloudproviderapi.TaintExternalCloudProvider) &&
				n.Labels[corev1.LabelTopologyZone] != "" && len(n.Status.Addresses) > 0, err
		})
		n := getNode(t, name)
		pn := privateNet(m)
		if pn == nil || len(pn.Ips) == 0 || pn.ASN == 0 {
			t.Fatalf("machine %s has no private network with an address and an ASN: %+v", m.ID, m.Allocation.Networks)
		}
		if n.Spec.ProviderID != fmt.Sprintf("metal://%s/%s", part, m.ID) {
			t.Errorf("node %s: provider id %q", name, n.Spec.ProviderID)
		}
		want := map[string]string{
			corev1.LabelTopologyZone:       part,
			corev1.LabelTopologyRegion:     region,
			corev1.LabelInstanceTypeStable: sizeID,
			ccm.LabelSize:                  sizeID,
			ccm.LabelPartition:             part,
			ccm.LabelRack:                  m.RackID,
			ccm.LabelASN:                   fmt.Sprint(pn.ASN),
		}
		for k, v := range want {
			if n.Labels[k] != v {
				t.Errorf("node %s: label %s=%q, want %q", name, k, n.Labels[k], v)
			}
		}
		wantAddrs := []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: name}}
		for _, ip := range pn.Ips {
			wantAddrs = append(wantAddrs, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip})
		}
		if diff := cmp.Diff(wantAddrs, n.Status.Addresses); diff != "" {
			t.Errorf("node %s addresses (-want +got):\n%s", name, diff)
		}
	}

	// Housekeeping: machine tags that are labels become labels, and come back when edited away.
	clienttest.WaitFor(t, 10*time.Second, "tag label on node-a", func() (bool, error) {
		return getNode(t, "node-a").Labels["team"] == "blue", nil
	})
	n := getNode(t, "node-a")
	n.Labels[ccm.LabelRack] = "wrong"
	_, err := env.Kube.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
	check(t, err)
	clienttest.WaitFor(t, 10*time.Second, "rack label repaired", func() (bool, error) {
		return getNode(t, "node-a").Labels[ccm.LabelRack] == "rack-1", nil
	})
	if _, ok := getNode(t, "node-b").Labels["team"]; ok {
		t.Error("node-b has the label of node-a's machine tag")
	}

	// Power off: InstanceShutdown taints the node.
	_, err = f.admin.Machine.ReportBMCContext(ctx, machineops.NewReportBMCParams().WithID(mb.ID).
		WithBody(&wire.BMCReport{PowerState: "OFF"}), nil)
	check(t, err)
	clienttest.WaitFor(t, 15*time.Second, "shutdown taint on node-b", func() (bool, error) {
		return hasTaint(getNode(t, "node-b"), cloudproviderapi.TaintNodeShutdown), nil
	})

	// Both exist; after a few monitor periods no node is gone.
	inst, _ := f.cloud.InstancesV2()
	for _, name := range []string{"node-a", "node-b"} {
		ok, err := inst.InstanceExists(ctx, getNode(t, name))
		if err != nil || !ok {
			t.Errorf("InstanceExists(%s) = %v, %v; want true", name, ok, err)
		}
	}

	// Free machine a: it no longer exists for the cluster and the lifecycle controller removes its
	// node (it is not Ready: no kubelet here).
	_, err = f.editor.Machine.FreeMachineContext(ctx, machineops.NewFreeMachineParams().WithID(ma.ID), nil)
	check(t, err)
	nodeA := getNode(t, "node-a")
	ok, err := inst.InstanceExists(ctx, nodeA)
	if err != nil || ok {
		t.Errorf("InstanceExists(node-a) after free = %v, %v; want false", ok, err)
	}
	clienttest.WaitFor(t, 20*time.Second, "node-a deleted", func() (bool, error) {
		_, err := env.Kube.CoreV1().Nodes().Get(ctx, "node-a", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if _, err := env.Kube.CoreV1().Nodes().Get(ctx, "node-b", metav1.GetOptions{}); err != nil {
		t.Errorf("node-b: %v; want it kept", err)
	}
}

func TestInstanceMetadataOfForeignMachine(t *testing.T) {
	f := newFixture(t, ccm.BackendNone)
	ctx := t.Context()
	m := f.machine(3, "node-c", "rack-1")
	inst, _ := f.cloud.InstancesV2()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "x"}, Spec: corev1.NodeSpec{ProviderID: ccm.ProviderID(part, m.ID)}}
	if md, err := inst.InstanceMetadata(ctx, node); err != nil || md.Zone != part {
		t.Fatalf("InstanceMetadata = %+v, %v", md, err)
	}
	// A metal-ccm of another project does not see the machine.
	cfg := f.cfg
	cfg.ProjectID = f.other
	other, err := ccm.New(cfg, logr.Discard())
	check(t, err)
	oi, _ := other.InstancesV2()
	if ok, err := oi.InstanceExists(ctx, node); err != nil || ok {
		t.Errorf("InstanceExists in another project = %v, %v; want false, nil", ok, err)
	}
	if _, err := oi.InstanceMetadata(ctx, node); err == nil {
		t.Error("InstanceMetadata in another project: no error")
	}
	bad := node.DeepCopy()
	bad.Spec.ProviderID = "aws:///eu-central-1a/i-123"
	if _, err := inst.InstanceExists(ctx, bad); err == nil {
		t.Error("InstanceExists with a foreign provider id: no error")
	}
}

// machineTags reads the machine's tags from metal-api.
func (f *fixture) machineTags(id string) []string {
	f.t.Helper()
	r, err := f.editor.Machine.GetMachineContext(f.t.Context(), machineops.NewGetMachineParams().WithID(id), nil)
	check(f.t, err)
	return r.Payload.Tags
}

func (f *fixture) setMachineTags(id string, tags ...string) {
	f.t.Helper()
	_, err := f.editor.Machine.SetMachineTagsContext(f.t.Context(), machineops.NewSetMachineTagsParams().WithID(id).
		WithBody(&wire.MachineTagsRequest{Tags: tags}), nil)
	check(f.t, err)
}

// patchLabel sets (value non-nil) or removes a node label.
func patchLabel(t testing.TB, node, key string, value *string) {
	t.Helper()
	b, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]any{key: value}}})
	check(t, err)
	_, err = env.Kube.CoreV1().Nodes().Patch(t.Context(), node, types.MergePatchType, b, metav1.PatchOptions{})
	check(t, err)
}

func TestMachineTags(t *testing.T) {
	f := newFixture(t, ccm.BackendNone)
	ctx := t.Context()
	cluster := ccm.TagCluster + f.cluster
	app := ccm.DefaultNodeTagPrefix + "app"
	m := f.machine(4, "node-t", "rack-1")
	// A machine that lost its cluster tag, with tags of its own and a stale one under the prefix that
	// no label backs.
	f.setMachineTags(m.ID, "team=blue", "inventory:4711", ccm.DefaultNodeTagPrefix+"stale=1")
	newNode(t, "node-t", ccm.ProviderID(part, m.ID))

	want := []string{cluster, "inventory:4711", "team=blue"}
	clienttest.WaitFor(t, 15*time.Second, "cluster tag on the machine", func() (bool, error) {
		return slices.Equal(f.machineTags(m.ID), want), nil
	})
	clienttest.WaitFor(t, 10*time.Second, "machine tag as node label", func() (bool, error) {
		return getNode(t, "node-t").Labels["team"] == "blue", nil
	})

	// A label under the prefix becomes a tag; the machine's other tags stay.
	db := "db"
	patchLabel(t, "node-t", app, &db)
	want = []string{cluster, "inventory:4711", app + "=db", "team=blue"}
	clienttest.WaitFor(t, 10*time.Second, "node label as machine tag", func() (bool, error) {
		return slices.Equal(f.machineTags(m.ID), want), nil
	})
	// The machine owns team: a node edit is reverted, not copied to the machine.
	red := "red"
	patchLabel(t, "node-t", "team", &red)
	clienttest.WaitFor(t, 10*time.Second, "team label reverted", func() (bool, error) {
		return getNode(t, "node-t").Labels["team"] == "blue", nil
	})
	// No ping-pong: once converged, neither side changes any more. The well-known kubernetes.io
	// labels are the cloud node controller's (it may still be initialising the node): not ours.
	housekeeping := func(l map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range l {
			if !strings.Contains(k, "kubernetes.io/") {
				out[k] = v
			}
		}
		return out
	}
	tags, labels := f.machineTags(m.ID), housekeeping(getNode(t, "node-t").Labels)
	time.Sleep(2 * time.Second)
	if diff := cmp.Diff(want, f.machineTags(m.ID)); diff != "" || !slices.Equal(tags, want) {
		t.Errorf("machine tags moved after converging (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(labels, housekeeping(getNode(t, "node-t").Labels)); diff != "" {
		t.Errorf("node labels moved after converging (-before +after):\n%s", diff)
	}

	// Removing the label removes the tag, and only it.
	patchLabel(t, "node-t", app, nil)
	want = []string{cluster, "inventory:4711", "team=blue"}
	clienttest.WaitFor(t, 10*time.Second, "tag removed with the label", func() (bool, error) {
		return slices.Equal(f.machineTags(m.ID), want), nil
	})

	// A machine of another cluster keeps its tags; the Node gets a warning.
	mo := f.machine(5, "node-o", "rack-1")
	other := ccm.TagCluster + "another-cluster"
	f.setMachineTags(mo.ID, other, "team=green")
	newNode(t, "node-o", ccm.ProviderID(part, mo.ID))
	patchLabel(t, "node-o", app, &db)
	clienttest.WaitFor(t, 15*time.Second, "warning about the other cluster", func() (bool, error) {
		ev, err := env.Kube.CoreV1().Events("").List(ctx, metav1.ListOptions{
			FieldSelector: "involvedObject.name=node-o,reason=" + ccm.ReasonOtherCluster})
		return err == nil && len(ev.Items) > 0, err
	})
	if diff := cmp.Diff([]string{other, "team=green"}, f.machineTags(mo.ID)); diff != "" {
		t.Errorf("tags of the other cluster's machine (-want +got):\n%s", diff)
	}
}
