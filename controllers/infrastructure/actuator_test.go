package infrastructure_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	extensionscontroller "github.com/gardener/gardener/extensions/pkg/controller"
	gardencorev1beta1 "github.com/gardener/gardener/pkg/apis/core/v1beta1"
	v1beta1constants "github.com/gardener/gardener/pkg/apis/core/v1beta1/constants"
	extensionsv1alpha1 "github.com/gardener/gardener/pkg/apis/extensions/v1alpha1"
	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/metalforge/metalforge/controllers/infrastructure"
	"github.com/metalforge/metalforge/controllers/infrastructure/infratest"
	"github.com/metalforge/metalforge/controllers/internal/extensiontest"
	"github.com/metalforge/metalforge/pkg/apis/metal"
	"github.com/metalforge/metalforge/pkg/apis/metal/helper"
	"github.com/metalforge/metalforge/pkg/apis/metal/install"
	"github.com/metalforge/metalforge/pkg/client/clienttest"
	ipops "github.com/metalforge/metalforge/pkg/client/metalapi/ip"
	machineops "github.com/metalforge/metalforge/pkg/client/metalapi/machine"
	"github.com/metalforge/metalforge/pkg/client/wire"
	"github.com/metalforge/metalforge/pkg/kubetest"
)

// env is the package's control plane, set by TestMain.
var env *kubetest.Env

func TestMain(m *testing.M) {
	crds, err := infratest.CRDs([]string{"clusters", "infrastructures"}, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(kubetest.Main(m, kubetest.Options{CRDDirs: crds}, &env))
}

func check(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// kube is a client with the scheme of the controllers.
func kube(t testing.TB) client.Client {
	t.Helper()
	return extensiontest.Client(t, env.Config, newScheme(t))
}

func newScheme(t testing.TB) *runtime.Scheme {
	return extensiontest.Scheme(t, extensionsv1alpha1.AddToScheme, install.AddToScheme)
}

// startManager runs a manager with gardener's Infrastructure controller and the actuator; the
// returned function stops it (as a crash would: mid-operation, nothing flushed) and waits.
func startManager(t *testing.T) (stop func()) {
	t.Helper()
	mgr, err := manager.New(env.Config, manager.Options{
		Scheme:                 newScheme(t),
		Logger:                 extensiontest.Log(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		// The controller is registered again by every restart in this process.
		Controller: config.Controller{SkipNameValidation: new(true)},
	})
	check(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	check(t, infrastructure.AddToManager(ctx, mgr, infrastructure.AddOptions{}))
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	var once bool
	stop = func() {
		if once {
			return
		}
		once = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

func getInfra(t testing.TB, ns string) (*extensionsv1alpha1.Infrastructure, error) {
	infra := &extensionsv1alpha1.Infrastructure{}
	err := kube(t).Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "infra"}, infra)
	return infra, err
}

func stateOf(t testing.TB, infra *extensionsv1alpha1.Infrastructure) infrastructure.State {
	t.Helper()
	var st infrastructure.State
	if infra.Status.State != nil {
		check(t, json.Unmarshal(infra.Status.State.Raw, &st))
	}
	return st
}

func step(st infrastructure.State, name string) infrastructure.StepStatus {
	for _, s := range st.Steps {
		if s.Name == name {
			return s
		}
	}
	return infrastructure.StepStatus{}
}

// metalObjects is what metal-api holds for the cluster.
type metalObjects struct {
	networks  []string // id=prefix
	egress    []string // addresses
	firewalls []string // machine ids
}

func observe(t testing.TB, f *infratest.Fixture, clusterID string) metalObjects {
	t.Helper()
	ctx := t.Context()
	var o metalObjects
	nets, err := infrastructure.ClusterNetworks(ctx, f.Editor, f.Project, infratest.Partition, clusterID)
	check(t, err)
	for _, n := range nets {
		o.networks = append(o.networks, n.ID+"="+strings.Join(n.Prefixes, ","))
	}
	ips, err := f.Editor.IP.FindIPsContext(ctx, ipops.NewFindIPsParams().WithBody(&wire.IPFindRequest{
		ProjectID: f.Project, Tag: infrastructure.ClusterTag(clusterID)}), nil)
	check(t, err)
	for _, ip := range ips.Payload.Items {
		if slices.Contains(ip.Tags, infrastructure.TagEgress) {
			o.egress = append(o.egress, ip.Address)
		}
	}
	ms, err := f.Editor.Machine.FindMachinesContext(ctx, machineops.NewFindMachinesParams().WithBody(&wire.MachineFindRequest{
		ProjectID: f.Project, Tags: []string{infrastructure.ClusterTag(clusterID)}}), nil)
	check(t, err)
	for _, m := range ms.Payload.Items {
		if m.Allocation != nil && m.Allocation.Role == "firewall" {
			o.firewalls = append(o.firewalls, m.ID)
		}
	}
	return o
}

// create writes the shoot's namespace, Cluster, cloudprovider secret and Infrastructure, the
// latter annotated for reconciliation as gardenlet does.
func create(t *testing.T, f *infratest.Fixture, s infratest.Shoot) {
	t.Helper()
	ctx := t.Context()
	ns := s.Namespace()
	check(t, kube(t).Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	check(t, kube(t).Create(ctx, f.Cluster(s)))
	check(t, kube(t).Create(ctx, f.CloudProviderSecret(ns)))
	check(t, kube(t).Create(ctx, f.Infrastructure(s)))
}

// TestInfrastructureLifecycle runs gardener's Infrastructure controller with the actuator against
// a real kube-apiserver and a real metal-api through a failed first attempt, a crash, a lost
// status, and a delete that has to be retried, checking after each that metal-api holds exactly
// one network, one egress IP and (once possible) one firewall, and nothing after the delete.
func TestInfrastructureLifecycle(t *testing.T) {
	f := infratest.Start(t)
	shoot := infratest.Shoot{Name: "lifecycle", UID: "uid-lifecycle", NodesCIDR: "10.128.0.0/22"}
	ns := shoot.Namespace()
	create(t, f, shoot)
	kubeconfig := "apiVersion: v1\nkind: Config\nclusters: []\n"
	check(t, kube(t).Create(t.Context(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: infrastructure.FirewallKubeconfigSecret, Namespace: ns},
		Data: map[string][]byte{"kubeconfig": []byte(kubeconfig)}}))
	stop := startManager(t)

	// 1. No machine is waiting: the network and the egress IP are allocated, the firewall step fails,
	// and status.state says so.
	var infra *extensionsv1alpha1.Infrastructure
	clienttest.WaitFor(t, 60*time.Second, "firewall step failure recorded", func() (bool, error) {
		var err error
		infra, err = getInfra(t, ns)
		return err == nil && step(stateOf(t, infra), infrastructure.StepFirewall).Error != "", err
	})
	st := stateOf(t, infra)
	if !step(st, infrastructure.StepNetwork).Done || !step(st, infrastructure.StepEgressIPs).Done {
		t.Fatalf("steps before the firewall not done: %+v", st.Steps)
	}
	if e := step(st, infrastructure.StepFirewall).Error; !strings.Contains(e, "allocate firewall") {
		t.Errorf("firewall step error = %q, want it to name the allocation", e)
	}
	first := observe(t, f, shoot.UID)
	if len(first.networks) != 1 || len(first.egress) != 1 || len(first.firewalls) != 0 {
		t.Fatalf("after the failed attempt metal-api holds %+v, want 1 network, 1 egress ip, no firewall", first)
	}
	if want := st.NetworkID + "=" + shoot.NodesCIDR; first.networks[0] != want {
		t.Errorf("network = %s, want %s", first.networks[0], want)
	}

	// 2. The extension crashes; a machine becomes available; a new process converges without
	// allocating the network or the IP again.
	stop()
	fwID := f.WaitingMachine(1)
	stop = startManager(t)
	clienttest.WaitFor(t, 60*time.Second, "infrastructure reconciled", func() (bool, error) {
		var err error
		infra, err = getInfra(t, ns)
		return err == nil && infra.Status.LastOperation != nil && infra.Status.LastOperation.State == gardencorev1beta1.LastOperationStateSucceeded, err
	})
	got := observe(t, f, shoot.UID)
	want := metalObjects{networks: first.networks, egress: first.egress, firewalls: []string{fwID}}
	if d := cmp.Diff(want, got, cmp.AllowUnexported(metalObjects{})); d != "" {
		t.Fatalf("metal-api after the restart (-want +got):\n%s", d)
	}
	ps := &metal.InfrastructureStatus{}
	check(t, helper.Decode(infra.Status.ProviderStatus.Raw, ps))
	if ps.Firewall.MachineID != fwID {
		t.Errorf("providerStatus firewall = %q, want %q", ps.Firewall.MachineID, fwID)
	}
	if id, _, _ := strings.Cut(first.networks[0], "="); ps.NetworkID != id || len(first.networks) != 1 {
		t.Errorf("providerStatus networkID = %q, want the one network of %v", ps.NetworkID, first.networks)
	}
	if d := cmp.Diff([]metal.EgressIP{{NetworkID: infratest.Internet, IP: first.egress[0]}}, ps.EgressIPs); d != "" {
		t.Errorf("providerStatus egressIPs (-want +got):\n%s", d)
	}
	if infra.Status.NodesCIDR == nil || *infra.Status.NodesCIDR != shoot.NodesCIDR {
		t.Errorf("status.nodesCIDR = %v, want %s", infra.Status.NodesCIDR, shoot.NodesCIDR)
	}
	if d := cmp.Diff([]string{first.egress[0] + "/32"}, infra.Status.EgressCIDRs); d != "" {
		t.Errorf("status.egressCIDRs (-want +got):\n%s", d)
	}
	fw := f.Machine(fwID)
	nets := map[string][]string{}
	for _, n := range fw.Allocation.Networks {
		nets[n.NetworkID] = n.Ips
	}
	st = stateOf(t, infra)
	if fw.Allocation.Role != "firewall" || fw.Allocation.ImageID != infratest.FirewallImage || fw.Allocation.ProjectID != f.Project ||
		fw.Allocation.Hostname != "lifecycle-firewall" || len(fw.Allocation.SSHPubKeys) != 1 || fw.Allocation.UserData != kubeconfig {
		t.Errorf("firewall allocation = %+v", fw.Allocation)
	}
	if d := cmp.Diff(first.egress, nets[infratest.Internet]); d != "" {
		t.Errorf("firewall's internet addresses (-egress ip +got):\n%s", d)
	}
	if len(nets[st.NetworkID]) != 1 || len(nets[infratest.Underlay]) != 1 {
		t.Errorf("firewall networks = %v, want the private network %s and the underlay", nets, st.NetworkID)
	}
	if !slices.Contains(fw.Tags, infrastructure.ClusterTag(shoot.UID)) {
		t.Errorf("firewall tags = %v, want the cluster tag", fw.Tags)
	}

	// 3. status.state is lost (as after a crash between an allocation and the status write): the
	// next reconcile finds everything by tag and label and allocates nothing.
	patch := client.MergeFrom(infra.DeepCopy())
	infra.Status.State = nil
	check(t, kube(t).Status().Patch(t.Context(), infra, patch))
	patch = client.MergeFrom(infra.DeepCopy())
	metav1.SetMetaDataAnnotation(&infra.ObjectMeta, v1beta1constants.GardenerOperation, v1beta1constants.GardenerOperationReconcile)
	check(t, kube(t).Patch(t.Context(), infra, patch))
	clienttest.WaitFor(t, 60*time.Second, "state rebuilt", func() (bool, error) {
		i, err := getInfra(t, ns)
		return err == nil && stateOf(t, i).FirewallID == fwID && i.Status.LastOperation.State == gardencorev1beta1.LastOperationStateSucceeded, err
	})
	if d := cmp.Diff(want, observe(t, f, shoot.UID), cmp.AllowUnexported(metalObjects{})); d != "" {
		t.Fatalf("metal-api after the state was lost (-want +got):\n%s", d)
	}

	// 4. Delete while a worker machine still has an address in the private network: the firewall
	// and the egress IP go, the network step fails; once the worker is freed the retry finishes and
	// the finalizer goes.
	workerID := f.WaitingMachine(2)
	_, err := f.Editor.Machine.AllocateMachineContext(t.Context(), machineops.NewAllocateMachineParams().WithBody(&wire.MachineAllocateRequest{
		ProjectID: f.Project, PartitionID: infratest.Partition, SizeID: infratest.Size, ImageID: infratest.ImageName + "-" + infratest.ImageVersion,
		Hostname: "worker-1", Networks: []*wire.AllocationNetwork{{NetworkID: st.NetworkID}}}), nil)
	check(t, err)
	check(t, kube(t).Delete(t.Context(), infra))
	clienttest.WaitFor(t, 60*time.Second, "network delete refused", func() (bool, error) {
		i, err := getInfra(t, ns)
		return err == nil && step(stateOf(t, i), "delete-"+infrastructure.StepNetwork).Error != "", err
	})
	if d := cmp.Diff(metalObjects{networks: first.networks}, observe(t, f, shoot.UID), cmp.AllowUnexported(metalObjects{})); d != "" {
		t.Fatalf("metal-api while the network is in use (-want +got):\n%s", d)
	}
	if f.Machine(fwID).Allocation != nil {
		t.Errorf("firewall %s still allocated", fwID)
	}
	_, err = f.Editor.Machine.FreeMachineContext(t.Context(), machineops.NewFreeMachineParams().WithID(workerID), nil)
	check(t, err)
	clienttest.WaitFor(t, 90*time.Second, "infrastructure deleted", func() (bool, error) {
		_, err := getInfra(t, ns)
		return apierrors.IsNotFound(err), err
	})
	if d := cmp.Diff(metalObjects{}, observe(t, f, shoot.UID), cmp.AllowUnexported(metalObjects{})); d != "" {
		t.Fatalf("metal-api after the delete (-want +got):\n%s", d)
	}
}

// TestForceDelete calls the actuator directly: with a worker still in the private network Delete
// fails but ForceDelete frees the firewall and the egress IP, leaves the network and succeeds; with
// metal-api unreachable ForceDelete still succeeds.
func TestForceDelete(t *testing.T) {
	f := infratest.Start(t)
	shoot := infratest.Shoot{Name: "force", UID: "uid-force"}
	ns := shoot.Namespace()
	create(t, f, shoot)
	ctx := t.Context()
	k := kube(t)
	a := infrastructure.NewActuator(infrastructure.Config{Client: k})
	cluster, err := extensionscontroller.GetCluster(ctx, k, ns)
	check(t, err)
	infra, err := getInfra(t, ns)
	check(t, err)
	fwID := f.WaitingMachine(1)
	check(t, a.Reconcile(ctx, logr.Discard(), infra, cluster))
	networkID := stateOf(t, infra).NetworkID
	f.WaitingMachine(2)
	_, err = f.Editor.Machine.AllocateMachineContext(ctx, machineops.NewAllocateMachineParams().WithBody(&wire.MachineAllocateRequest{
		ProjectID: f.Project, PartitionID: infratest.Partition, SizeID: infratest.Size, ImageID: infratest.ImageName + "-" + infratest.ImageVersion,
		Hostname: "worker-1", Networks: []*wire.AllocationNetwork{{NetworkID: networkID}}}), nil)
	check(t, err)

	if err := a.Delete(ctx, logr.Discard(), infra, cluster); err == nil || !strings.Contains(err.Error(), "delete network") {
		t.Errorf("Delete with a machine in the network: %v, want a delete network error", err)
	}
	check(t, a.ForceDelete(ctx, logr.Discard(), infra, cluster))
	got := observe(t, f, shoot.UID)
	if len(got.networks) != 1 || len(got.egress) != 0 || len(got.firewalls) != 0 {
		t.Errorf("after ForceDelete metal-api holds %+v, want only the network in use", got)
	}
	if f.Machine(fwID).Allocation != nil {
		t.Errorf("firewall %s still allocated", fwID)
	}

	unreachable := cluster.CloudProfile.DeepCopy()
	unreachable.Spec.ProviderConfig.Raw = []byte(strings.ReplaceAll(string(unreachable.Spec.ProviderConfig.Raw), f.API.URL, "http://127.0.0.1:1"))
	gone := *cluster
	gone.CloudProfile = unreachable
	if err := a.Delete(ctx, logr.Discard(), infra, &gone); err == nil {
		t.Error("Delete with metal-api unreachable succeeded")
	}
	check(t, a.ForceDelete(ctx, logr.Discard(), infra, &gone))
}
