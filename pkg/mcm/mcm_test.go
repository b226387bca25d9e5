package mcm_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gardener/machine-controller-manager/pkg/apis/machine/v1alpha1"
	mcmclient "github.com/gardener/machine-controller-manager/pkg/client/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/metalforge/metalforge/pkg/client/clienttest"
	"github.com/metalforge/metalforge/pkg/mcm"
	"github.com/metalforge/metalforge/pkg/mcm/mcmtest"
)

// TestMachineDeployment runs the real machine-controller-manager (its machine-deployment
// controller and the provider-side machine controller with the metal driver) against the real
// kube-apiserver and a real metal-api whose machines registered and wait over the boot service:
// a MachineDeployment of 2 replicas gets 2 allocated machines, scaling it to 0 frees both.
//
// No kubelet runs, so no Node would ever join: both controllers run with --target-kubeconfig=none,
// MCM's mode without a target cluster, in which a machine is Available as soon as the driver
// created it and deletion skips drain and Node deletion. With a target cluster, the machines would
// sit in Pending until --machine-creation-timeout and then be replaced: not deterministic.
func TestMachineDeployment(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs two MCM processes")
	}
	f := newFixture(t)
	for _, rack := range []string{"rack-1", "rack-2", "rack-1"} {
		f.waiting(rack)
	}
	ctx := t.Context()
	// A namespace of its own per run (-count=N shares the control plane); it goes with the test.
	ns := "shoot--tenant--mcm-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	const cluster, className = "shoot-mcm", "pool-a-z1"
	mc, err := mcmclient.NewForConfig(env.Config)
	check(t, err)
	machines := mc.MachineV1alpha1()

	_, err = env.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	check(t, err)
	t.Cleanup(func() { cleanupNamespace(t, mc, ns) })
	secret := f.secret()
	secret.Namespace = ns
	_, err = env.Kube.CoreV1().Secrets(ns).Create(ctx, secret, metav1.CreateOptions{})
	check(t, err)
	raw, err := json.Marshal(f.spec(cluster))
	check(t, err)
	_, err = machines.MachineClasses(ns).Create(ctx, &v1alpha1.MachineClass{
		ObjectMeta: metav1.ObjectMeta{Name: className, Namespace: ns}, Provider: mcm.ProviderName,
		ProviderSpec: runtime.RawExtension{Raw: raw},
		SecretRef:    &corev1.SecretReference{Name: secret.Name, Namespace: ns},
	}, metav1.CreateOptions{})
	check(t, err)
	labels := map[string]string{"name": "pool-a"}
	zero, one := intstr.FromInt32(0), intstr.FromInt32(1)
	_, err = machines.MachineDeployments(ns).Create(ctx, &v1alpha1.MachineDeployment{
		ObjectMeta: metav1.ObjectMeta{Name: "pool-a", Namespace: ns},
		Spec: v1alpha1.MachineDeploymentSpec{
			Replicas: 2,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Strategy: v1alpha1.MachineDeploymentStrategy{Type: v1alpha1.RollingUpdateMachineDeploymentStrategyType,
				RollingUpdate: &v1alpha1.RollingUpdateMachineDeployment{UpdateConfiguration: v1alpha1.UpdateConfiguration{MaxSurge: &one, MaxUnavailable: &zero}}},
			Template: v1alpha1.MachineTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       v1alpha1.MachineSpec{Class: v1alpha1.ClassSpec{Kind: "MachineClass", Name: className}},
			},
		},
	}, metav1.CreateOptions{})
	check(t, err)

	// Machines get 10 minutes to be created and become healthy, so that a slow CI machine never sees
	// MCM's own timeouts fire; without a target cluster MCM does not wait for a Node anyway.
	mcmtest.Start(t, env.Config, ns)

	// 2 Machines with provider IDs, backed by 2 allocated machines of the cluster.
	var list *v1alpha1.MachineList
	begin := time.Now()
	clienttest.WaitFor(t, 2*time.Minute, "2 machines created by MCM", func() (bool, error) {
		var err error
		list, err = machines.Machines(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		available := 0
		for _, m := range list.Items {
			if m.Spec.ProviderID != "" && m.Status.CurrentStatus.Phase == v1alpha1.MachineAvailable {
				available++
			}
		}
		if len(list.Items) != 2 || available != 2 {
			return false, fmt.Errorf("%d machines, %d with a provider ID and phase Available: %s", len(list.Items), available, phases(list))
		}
		return len(f.allocated(cluster)) == 2, fmt.Errorf("metal-api: %d machines allocated", len(f.allocated(cluster)))
	})
	allocated := f.allocated(cluster)
	var ids []string
	racks := map[string]bool{}
	for _, m := range list.Items {
		id, err := mcm.ParseProviderID(m.Spec.ProviderID)
		check(t, err)
		a, ok := allocated[id]
		if !ok {
			t.Fatalf("machine %s has provider id %s, which is no allocated machine of the cluster", m.Name, m.Spec.ProviderID)
		}
		ids = append(ids, id)
		racks[a.RackID] = true
		if m.Spec.ProviderID != mcm.ProviderID(a.PartitionID, a.ID) {
			t.Errorf("machine %s: provider id %s, want %s", m.Name, m.Spec.ProviderID, mcm.ProviderID(a.PartitionID, a.ID))
		}
		if a.Allocation.Hostname != m.Name || !slices.Contains(a.Tags, mcm.TagMachine+m.Name) || !slices.Contains(a.Tags, mcm.TagNodeGroup+className) {
			t.Errorf("machine %s: allocation hostname %q, tags %v", m.Name, a.Allocation.Hostname, a.Tags)
		}
		// MCM put the machine name into the user data before handing it to the driver.
		if want := strings.ReplaceAll(userData, "<<MACHINE_NAME>>", m.Name); a.Allocation.UserData != want {
			t.Errorf("machine %s: user data %q, want %q", m.Name, a.Allocation.UserData, want)
		}
	}
	if len(racks) != 2 {
		t.Errorf("the 2 machines are in racks %v, want both racks", racks)
	}
	t.Logf("MCM created machines %s (metal-api %v) in %v", names(list), ids, time.Since(begin).Round(time.Millisecond))

	// Scale to 0: MCM deletes both Machines, the driver frees both.
	_, err = machines.MachineDeployments(ns).Patch(ctx, "pool-a", types.MergePatchType, []byte(`{"spec":{"replicas":0}}`), metav1.PatchOptions{})
	check(t, err)
	begin = time.Now()
	clienttest.WaitFor(t, 2*time.Minute, "both machines deleted and freed", func() (bool, error) {
		list, err := machines.Machines(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		if len(list.Items) != 0 {
			return false, fmt.Errorf("%d machines left: %s", len(list.Items), phases(list))
		}
		if n := len(f.allocated(cluster)); n != 0 {
			return false, fmt.Errorf("metal-api: %d machines still allocated", n)
		}
		md, err := machines.MachineDeployments(ns).Get(ctx, "pool-a", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return md.Status.Replicas == 0, fmt.Errorf("MachineDeployment status: %d replicas", md.Status.Replicas)
	})
	t.Logf("MCM deleted both machines, metal-api freed them, in %v", time.Since(begin).Round(time.Millisecond))
	for _, id := range ids {
		if m := f.machine(id); m.Allocation != nil {
			t.Errorf("machine %s still allocated: %+v", id, m.Allocation)
		}
	}
}

// cleanupNamespace removes what the test left once the MCM processes are gone: MCM's finalizers
// would otherwise keep the objects (and the namespace) forever.
func cleanupNamespace(t *testing.T, mc mcmclient.Interface, ns string) {
	ctx := context.Background()
	c := mc.MachineV1alpha1()
	unfinalize := []byte(`{"metadata":{"finalizers":null}}`)
	if l, err := c.Machines(ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, m := range l.Items {
			_, _ = c.Machines(ns).Patch(ctx, m.Name, types.MergePatchType, unfinalize, metav1.PatchOptions{})
		}
	}
	if l, err := c.MachineClasses(ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, m := range l.Items {
			_, _ = c.MachineClasses(ns).Patch(ctx, m.Name, types.MergePatchType, unfinalize, metav1.PatchOptions{})
		}
	}
	if l, err := env.Kube.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, s := range l.Items {
			_, _ = env.Kube.CoreV1().Secrets(ns).Patch(ctx, s.Name, types.MergePatchType, unfinalize, metav1.PatchOptions{})
		}
	}
	_ = c.MachineDeployments(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
	_ = c.MachineSets(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
	_ = c.Machines(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
	_ = c.MachineClasses(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
	if err := env.Kube.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		t.Errorf("delete namespace %s: %v", ns, err)
	}
}

func phases(l *v1alpha1.MachineList) string {
	var out []string
	for _, m := range l.Items {
		out = append(out, fmt.Sprintf("%s=%s(%s)", m.Name, m.Status.CurrentStatus.Phase, m.Status.LastOperation.Description))
	}
	return strings.Join(out, ", ")
}

func names(l *v1alpha1.MachineList) []string {
	var out []string
	for _, m := range l.Items {
		out = append(out, m.Name)
	}
	return out
}
