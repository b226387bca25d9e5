package gardener_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gardencorev1beta1 "github.com/gardener/gardener/pkg/apis/core/v1beta1"
	extensionsv1alpha1 "github.com/gardener/gardener/pkg/apis/extensions/v1alpha1"
	machinev1alpha1 "github.com/gardener/machine-controller-manager/pkg/apis/machine/v1alpha1"
	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/metalforge/metalforge/cmd/gardener-extension-provider-metal/app"
	"github.com/metalforge/metalforge/controllers/infrastructure"
	"github.com/metalforge/metalforge/controllers/infrastructure/infratest"
	"github.com/metalforge/metalforge/controllers/worker"
	"github.com/metalforge/metalforge/pkg/apis/metal"
	"github.com/metalforge/metalforge/pkg/apis/metal/helper"
	"github.com/metalforge/metalforge/pkg/ccm"
	"github.com/metalforge/metalforge/pkg/client/clienttest"
	"github.com/metalforge/metalforge/pkg/client/metalapi"
	ipops "github.com/metalforge/metalforge/pkg/client/metalapi/ip"
	machineops "github.com/metalforge/metalforge/pkg/client/metalapi/machine"
	tokenops "github.com/metalforge/metalforge/pkg/client/metalapi/token"
	"github.com/metalforge/metalforge/pkg/client/wire"
	"github.com/metalforge/metalforge/pkg/kubetest"
	"github.com/metalforge/metalforge/pkg/lab/gardener"
	"github.com/metalforge/metalforge/pkg/mcm"
	"github.com/metalforge/metalforge/pkg/mcm/mcmtest"
	"github.com/metalforge/metalforge/pkg/metalctl"
)

// env is the package's control plane, set by TestMain.
var env *kubetest.Env

func TestMain(m *testing.M) {
	if code, ok := mcmtest.RunChild(); ok {
		os.Exit(code)
	}
	if os.Getenv("METALFORGE_LOG") == "" {
		klog.SetLogger(logr.Discard())
	}
	crds, err := infratest.CRDs([]string{"clusters", "infrastructures", "workers", "controlplanes"},
		[]string{"machineclasses", "machinedeployments", "machinesets", "machines"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// The control plane actuator writes ManagedResources (gardener-resource-manager's CRD).
	dir, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/gardener/gardener").Output()
	if err != nil {
		fmt.Fprintln(os.Stderr, "find gardener module:", err)
		os.Exit(1)
	}
	crds = append(crds, filepath.Join(strings.TrimSpace(string(dir)),
		"pkg/component/gardener/resourcemanager/assets/crd-resources.gardener.cloud_managedresources.yaml"))
	os.Exit(kubetest.Main(m, kubetest.Options{CRDDirs: crds}, &env))
}

// Paths of the repository's example data.
var (
	exampleSeed     = filepath.Join("..", "..", "..", "example", "seed.yaml")
	exampleGardener = filepath.Join("..", "..", "..", "example", "gardener")
)

// spareMachines are waiting machines beyond the firewall and the pools' minimum, so that the test
// sees that exactly the minimum is allocated.
const spareMachines = 1

// TestShootFlow runs the example Shoot from manifests to allocated machines and back: the example
// CloudProfile, Seed and Shoot decoded strictly into gardener's types; metal-api seeded with
// `metalctl apply -f example/seed.yaml` and machines registered and waiting over the boot service
// as hammers do; the seed objects gardenlet would create; gardener-extension-provider-metal run as
// its binary does (app.Run: flags, scheme, controller table) and the real machine-controller-manager
// (machine-deployment controller and pkg/mcm's provider as processes). It checks the Infrastructure
// (private network, egress IP, firewall), the ControlPlane (metal-ccm in the seed ManagedResource
// configured for the shoot's partition, project, cluster ID and metal-api; the ClusterwideNetworkPolicy
// CRD and the default policies of the shoot's networkAccessType in the shoot ManagedResources), the
// Worker (MachineDeployments, Machines with provider IDs, metal-api machines of the cluster = the
// pools' minimum), and that infrastructure, metal-ccm and MCM agree on the cluster ID. Then it
// deletes Worker, ControlPlane and Infrastructure in that order, as gardenlet's shoot deletion
// flow does, and checks that metal-api has everything back.
func TestShootFlow(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs the extension and two MCM processes")
	}
	ctx := t.Context()
	total := time.Now()
	phase := time.Now()
	lap := func(name string) {
		t.Logf("phase %-34s %8v", name, time.Since(phase).Round(time.Millisecond))
		phase = time.Now()
	}

	// Garden side: the example manifests in gardener's types.
	m, err := gardener.LoadManifests(exampleGardener)
	check(t, err)
	lap("manifests decoded")

	// metal-api with the example seed data and waiting machines.
	api := clienttest.Start(t)
	admin := api.Client(clienttest.AdminToken)
	var out, errb bytes.Buffer
	if err := metalctl.Run(ctx, metalctl.Config{Stdout: &out, Stderr: &errb, Version: "test",
		Getenv: func(k string) string {
			return map[string]string{metalctl.EnvURL: api.URL, metalctl.EnvToken: clienttest.AdminToken}[k]
		}, ConfigFile: filepath.Join(t.TempDir(), "absent.yaml")}, []string{"apply", "-f", exampleSeed}); err != nil {
		t.Fatalf("metalctl apply -f %s: %v\n%s%s", exampleSeed, metalctl.Message(err), out.String(), errb.String())
	}
	cfg := &metal.InfrastructureConfig{}
	check(t, helper.Decode(m.Shoot.Spec.Provider.InfrastructureConfig.Raw, cfg))
	tok, err := admin.Token.CreateTokenContext(ctx, tokenops.NewCreateTokenParams().WithBody(&wire.Token{
		Name: "gardener " + m.Shoot.Name, Role: "editor", ProjectID: cfg.ProjectID}), nil)
	check(t, err)
	minimum := 0
	for _, w := range m.Shoot.Spec.Provider.Workers {
		minimum += int(w.Minimum)
	}
	var machines []string
	for i := range 1 + minimum + spareMachines {
		mach := clienttest.Machine(cfg.PartitionID, i+1)
		api.Register(mach)
		api.Wait(mach.ID)
		machines = append(machines, mach.ID)
	}
	clienttest.WaitFor(t, 30*time.Second, "machines waiting", func() (bool, error) {
		for _, id := range machines {
			r, err := admin.Machine.GetMachineContext(ctx, machineops.NewGetMachineParams().WithID(id), nil)
			if err != nil || !r.Payload.Waiting || r.Payload.SizeID != cfg.Firewall.Size {
				return false, fmt.Errorf("machine %s: %v", id, err)
			}
		}
		return true, nil
	})
	lap("metal-api seeded, machines waiting")

	// Seed side: what gardenlet creates before the Infrastructure.
	g := &gardener.Gardenlet{Manifests: m, UID: "3f1c2a4e-demo-uid", SSHPublicKey: infratest.SSHKey}
	ns := g.Namespace()
	scheme, err := app.NewScheme()
	check(t, err)
	k, err := client.New(env.Config, client.Options{Scheme: scheme})
	check(t, err)
	cluster, err := g.Cluster()
	check(t, err)
	check(t, k.Create(ctx, g.NamespaceObject()))
	check(t, k.Create(ctx, cluster))
	check(t, k.Create(ctx, g.CloudProviderSecret(api.URL, tok.Payload.Secret)))
	kubeconfig, err := g.GenericTokenKubeconfig()
	check(t, err)
	check(t, k.Create(ctx, kubeconfig))

	// The extension as its binary runs, and MCM.
	startExtension(t)
	mcmtest.Start(t, env.Config, ns)
	lap("extension and MCM started")

	infra := g.Infrastructure()
	check(t, k.Create(ctx, infra))
	clienttest.WaitFor(t, 60*time.Second, "infrastructure ready", func() (bool, error) {
		if err := k.Get(ctx, client.ObjectKeyFromObject(infra), infra); err != nil {
			return false, err
		}
		return succeeded(infra.Status.LastOperation), fmt.Errorf("last operation %+v", infra.Status.LastOperation)
	})
	lap("infrastructure ready")
	ps := &metal.InfrastructureStatus{}
	check(t, helper.Decode(infra.Status.ProviderStatus.Raw, ps))
	fw := machine(t, admin, ps.Firewall.MachineID)
	if a := fw.Allocation; a == nil || a.Role != "firewall" || a.ProjectID != cfg.ProjectID || a.ImageID != cfg.Firewall.Image ||
		fw.SizeID != cfg.Firewall.Size || !slices.Contains(fw.Tags, infrastructure.ClusterTag(g.UID)) {
		t.Errorf("firewall %s: size %s tags %v allocation %+v", fw.ID, fw.SizeID, fw.Tags, fw.Allocation)
	}
	nets, err := infrastructure.ClusterNetworks(ctx, admin, cfg.ProjectID, cfg.PartitionID, g.UID)
	check(t, err)
	if len(nets) != 1 || nets[0].ID != ps.NetworkID || nets[0].Type != "private" {
		t.Fatalf("private networks of the cluster %v, status networkID %q", nets, ps.NetworkID)
	}
	wantEgress := []metal.EgressIP{{NetworkID: cfg.Firewall.EgressRules[0].NetworkID, IP: cfg.Firewall.EgressRules[0].IPs[0]}}
	if !slices.Equal(ps.EgressIPs, wantEgress) {
		t.Errorf("status egressIPs %v, want %v", ps.EgressIPs, wantEgress)
	}
	ip, err := admin.IP.GetIPContext(ctx, ipops.NewGetIPParams().WithID(wantEgress[0].IP), nil)
	check(t, err)
	if ip.Payload.MachineID != fw.ID || ip.Payload.ProjectID != cfg.ProjectID || ip.Payload.Type != "static" {
		t.Errorf("egress ip %s: machine %s project %s type %s", ip.Payload.Address, ip.Payload.MachineID, ip.Payload.ProjectID, ip.Payload.Type)
	}
	fwNets := map[string]bool{}
	for _, n := range fw.Allocation.Networks {
		fwNets[n.NetworkID] = true
	}
	for _, want := range []string{ps.NetworkID, "internet", "underlay"} {
		if !fwNets[want] {
			t.Errorf("firewall networks %v lack %s", fwNets, want)
		}
	}
	t.Logf("infrastructure: network %s %v, egress %v, firewall %s", nets[0].ID, nets[0].Prefixes, ps.EgressIPs, fw.ID)

	// The ControlPlane, as gardenlet deploys it once the Infrastructure is ready.
	cp := g.ControlPlane(infra.Status.ProviderStatus)
	check(t, k.Create(ctx, cp))
	clienttest.WaitFor(t, 60*time.Second, "controlplane ready", func() (bool, error) {
		if err := k.Get(ctx, client.ObjectKeyFromObject(cp), cp); err != nil {
			return false, err
		}
		return succeeded(cp.Status.LastOperation), fmt.Errorf("last operation %+v", cp.Status.LastOperation)
	})
	lap("controlplane ready")
	ccmCfg := checkControlPlane(t, k, g, controlPlaneWant{metalAPIURL: api.URL, token: tok.Payload.Secret, firewallMachineID: fw.ID})
	// One cluster ID for all: metal-ccm tags IPs with the tag the infrastructure put on the firewall.
	if tag := ccm.TagCluster + ccmCfg.ClusterID; tag != infrastructure.ClusterTag(g.UID) || !slices.Contains(fw.Tags, tag) {
		t.Errorf("metal-ccm cluster tag %s, infrastructure's %s, firewall tags %v", tag, infrastructure.ClusterTag(g.UID), fw.Tags)
	}
	lap("controlplane checked")

	// The Worker, as gardenlet creates it after the Infrastructure.
	w, userData := g.Worker(infra.Status.ProviderStatus)
	for _, s := range userData {
		check(t, k.Create(ctx, s))
	}
	check(t, k.Create(ctx, w))
	var mds machinev1alpha1.MachineDeploymentList
	clienttest.WaitFor(t, 60*time.Second, "machine deployments", func() (bool, error) {
		err := k.List(ctx, &mds, client.InNamespace(ns))
		return err == nil && len(mds.Items) == len(w.Spec.Pools), fmt.Errorf("%d deployments (%v)", len(mds.Items), err)
	})
	lap("machine deployments")
	var ms machinev1alpha1.MachineList
	clienttest.WaitFor(t, 60*time.Second, "machines with provider IDs", func() (bool, error) {
		if err := k.List(ctx, &ms, client.InNamespace(ns)); err != nil {
			return false, err
		}
		n := 0
		for _, x := range ms.Items {
			if x.Spec.ProviderID != "" {
				n++
			}
		}
		return len(ms.Items) == minimum && n == minimum, fmt.Errorf("%d machines, %d with provider IDs", len(ms.Items), n)
	})
	lap("machines allocated")
	clienttest.WaitFor(t, 60*time.Second, "worker ready", func() (bool, error) {
		if err := k.Get(ctx, client.ObjectKeyFromObject(w), w); err != nil {
			return false, err
		}
		return succeeded(w.Status.LastOperation), fmt.Errorf("last operation %+v", w.Status.LastOperation)
	})
	lap("worker ready")

	for _, md := range mds.Items {
		i := slices.IndexFunc(w.Spec.Pools, func(p extensionsv1alpha1.WorkerPool) bool { return strings.HasPrefix(md.Name, ns+"-"+p.Name+"-") })
		if i < 0 || md.Spec.Replicas != w.Spec.Pools[i].Minimum {
			t.Errorf("machine deployment %s: replicas %d, pools %v", md.Name, md.Spec.Replicas, w.Spec.Pools)
		}
	}
	var classes machinev1alpha1.MachineClassList
	check(t, k.List(ctx, &classes, client.InNamespace(ns)))
	for _, c := range classes.Items {
		if !strings.Contains(string(c.ProviderSpec.Raw), `"`+ps.NetworkID+`"`) {
			t.Errorf("machine class %s does not use the private network %s of the infrastructure status: %s", c.Name, ps.NetworkID, c.ProviderSpec.Raw)
		}
		spec := &mcm.ProviderSpec{}
		check(t, json.Unmarshal(c.ProviderSpec.Raw, spec))
		if spec.ClusterID != ccmCfg.ClusterID {
			t.Errorf("machine class %s: cluster ID %q, metal-ccm's %q", c.Name, spec.ClusterID, ccmCfg.ClusterID)
		}
	}
	workers := clusterMachines(t, admin, cfg.ProjectID, g.UID, "machine")
	if len(workers) != minimum {
		t.Errorf("metal-api: %d worker machines of the cluster, want the pools' minimum %d", len(workers), minimum)
	}
	for _, x := range ms.Items {
		id, err := mcm.ParseProviderID(x.Spec.ProviderID)
		check(t, err)
		mach := machine(t, admin, id)
		var pool string
		for _, tag := range mach.Tags {
			if p, ok := strings.CutPrefix(tag, worker.TagPool); ok {
				pool = p
			}
		}
		if a := mach.Allocation; a == nil || a.ProjectID != cfg.ProjectID || a.ImageID != worker.ImageID("debian", "12") ||
			!slices.Contains(mach.Tags, worker.TagPool+pool) || !strings.Contains(a.UserData, "worker pool "+pool) ||
			!strings.Contains(a.UserData, "hostname: "+x.Name) || !slices.Equal(a.SSHPubKeys, []string{infratest.SSHKey}) {
			t.Errorf("machine %s (%s, pool %q): tags %v allocation %+v", id, x.Name, pool, mach.Tags, mach.Allocation)
		}
	}
	t.Logf("worker: %d deployments, machines %v", len(mds.Items), workers)

	// Shoot deletion: gardenlet deletes the Worker, waits, then the Infrastructure.
	check(t, k.Delete(ctx, w))
	clienttest.WaitFor(t, 90*time.Second, "worker gone, machines freed", func() (bool, error) {
		if err := k.Get(ctx, client.ObjectKeyFromObject(w), w); !apierrors.IsNotFound(err) {
			return false, fmt.Errorf("worker still there (%v), finalizers %v", err, w.Finalizers)
		}
		left := clusterMachines(t, admin, cfg.ProjectID, g.UID, "machine")
		return len(left) == 0, fmt.Errorf("machines still allocated: %v", left)
	})
	lap("worker deleted, machines freed")
	// Then the ControlPlane, before the Infrastructure.
	check(t, k.Delete(ctx, cp))
	waitControlPlaneGone(t, k, client.ObjectKeyFromObject(cp))
	lap("controlplane deleted")
	// MCM (its safety controller lists the provider's machines) must have left the firewall alone.
	if fw := machine(t, admin, ps.Firewall.MachineID); fw.Allocation == nil || fw.Allocation.Role != "firewall" {
		t.Errorf("firewall %s no longer allocated before the infrastructure is deleted: %+v", fw.ID, fw.Allocation)
	}
	check(t, k.Delete(ctx, infra))
	clienttest.WaitFor(t, 60*time.Second, "infrastructure gone", func() (bool, error) {
		err := k.Get(ctx, client.ObjectKeyFromObject(infra), infra)
		return apierrors.IsNotFound(err), fmt.Errorf("infrastructure still there (%v), last operation %+v", err, infra.Status.LastOperation)
	})
	lap("infrastructure deleted")

	if left := clusterMachines(t, admin, cfg.ProjectID, g.UID, ""); len(left) != 0 {
		t.Errorf("machines of the cluster still allocated: %v", left)
	}
	if nets, err := infrastructure.ClusterNetworks(ctx, admin, cfg.ProjectID, cfg.PartitionID, g.UID); err != nil || len(nets) != 0 {
		t.Errorf("private networks of the cluster left: %v (%v)", nets, err)
	}
	r, err := admin.IP.FindIPsContext(ctx, ipops.NewFindIPsParams().WithBody(&wire.IPFindRequest{ProjectID: cfg.ProjectID}), nil)
	check(t, err)
	for _, x := range r.Payload.Items {
		// The pinned egress address belongs to the project (the tenant asked for it); it stays, unused.
		if x.MachineID != "" || x.Address != wantEgress[0].IP {
			t.Errorf("ip %s of the project left: machine %q network %s tags %v", x.Address, x.MachineID, x.NetworkID, x.Tags)
		}
	}
	clienttest.WaitFor(t, 30*time.Second, "machines waiting again", func() (bool, error) {
		n := 0
		for _, id := range machines {
			r, err := admin.Machine.GetMachineContext(ctx, machineops.NewGetMachineParams().WithID(id), nil)
			if err != nil {
				return false, err
			}
			if r.Payload.Allocation == nil {
				n++
			}
		}
		return n == len(machines), fmt.Errorf("%d of %d machines unallocated", n, len(machines))
	})
	var infras extensionsv1alpha1.InfrastructureList
	var wl extensionsv1alpha1.WorkerList
	var cps extensionsv1alpha1.ControlPlaneList
	check(t, k.List(ctx, &infras, client.InNamespace(ns)))
	check(t, k.List(ctx, &wl, client.InNamespace(ns)))
	check(t, k.List(ctx, &cps, client.InNamespace(ns)))
	if len(infras.Items)+len(wl.Items)+len(cps.Items) != 0 {
		t.Errorf("extension objects left: %d infrastructures, %d workers, %d controlplanes", len(infras.Items), len(wl.Items), len(cps.Items))
	}
	t.Logf("phase %-34s %8v", "total", time.Since(total).Round(time.Millisecond))
}

func succeeded(lo *gardencorev1beta1.LastOperation) bool {
	return lo != nil && lo.State == gardencorev1beta1.LastOperationStateSucceeded
}

func machine(t testing.TB, api *metalapi.MetalAPI, id string) *wire.Machine {
	t.Helper()
	r, err := api.Machine.GetMachineContext(t.Context(), machineops.NewGetMachineParams().WithID(id), nil)
	check(t, err)
	return r.Payload
}

// clusterMachines are the IDs of the project's allocated machines with the cluster tag and the
// role ("" for any).
func clusterMachines(t testing.TB, api *metalapi.MetalAPI, project, clusterID, role string) []string {
	t.Helper()
	r, err := api.Machine.FindMachinesContext(t.Context(), machineops.NewFindMachinesParams().WithBody(&wire.MachineFindRequest{
		ProjectID: project, Role: role, Tags: []string{infrastructure.ClusterTag(clusterID)}, Limit: 100}), nil)
	check(t, err)
	var out []string
	for _, m := range r.Payload.Items {
		if m.Allocation != nil {
			out = append(out, m.ID)
		}
	}
	slices.Sort(out)
	return out
}

// startExtension runs gardener-extension-provider-metal's app.Run, as its main does, until the
// test ends; its output is shown when the test fails (or with METALFORGE_LOG=1).
func startExtension(t *testing.T) {
	t.Helper()
	out := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	args := []string{"--kubeconfig", mcmtest.WriteKubeconfig(t, env.Config), "--metrics-bind-address", "0",
		"--health-bind-address", "127.0.0.1:" + mcmtest.FreePort(t), "--log-level", "info", "--log-format", "text"}
	go func() { done <- app.Run(ctx, "gardener-extension-provider-metal", args, out) }()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("extension exited with %d", code)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("extension did not stop within 30s")
		}
		if t.Failed() || os.Getenv("METALFORGE_LOG") != "" {
			lines := strings.Split(out.String(), "\n")
			if len(lines) > 300 {
				lines = lines[len(lines)-300:]
			}
			t.Logf("extension output:\n%s", strings.Join(lines, "\n"))
		}
	})
	select {
	case code := <-done:
		t.Fatalf("extension exited with %d:\n%s", code, out.String())
	case <-time.After(100 * time.Millisecond):
	}
}

// syncBuffer collects output written from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func check(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
