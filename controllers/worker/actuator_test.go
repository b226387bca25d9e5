package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	v1beta1constants "github.com/gardener/gardener/pkg/apis/core/v1beta1/constants"
	extensionsv1alpha1 "github.com/gardener/gardener/pkg/apis/extensions/v1alpha1"
	machinev1alpha1 "github.com/gardener/machine-controller-manager/pkg/apis/machine/v1alpha1"
	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/metalforge/metalforge/controllers/infrastructure"
	"github.com/metalforge/metalforge/controllers/infrastructure/infratest"
	"github.com/metalforge/metalforge/controllers/internal/extensiontest"
	"github.com/metalforge/metalforge/controllers/worker"
	"github.com/metalforge/metalforge/pkg/apis/metal"
	"github.com/metalforge/metalforge/pkg/apis/metal/helper"
	"github.com/metalforge/metalforge/pkg/apis/metal/install"
	"github.com/metalforge/metalforge/pkg/client/clienttest"
	networkops "github.com/metalforge/metalforge/pkg/client/metalapi/network"
	"github.com/metalforge/metalforge/pkg/client/wire"
	"github.com/metalforge/metalforge/pkg/kubetest"
	"github.com/metalforge/metalforge/pkg/mcm"
	"github.com/metalforge/metalforge/pkg/mcm/mcmtest"
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
	crds, err := infratest.CRDs([]string{"clusters", "workers"}, []string{"machineclasses", "machinedeployments", "machinesets", "machines"})
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

func newScheme(t testing.TB) *runtime.Scheme {
	return extensiontest.Scheme(t, extensionsv1alpha1.AddToScheme, machinev1alpha1.AddToScheme, install.AddToScheme)
}

func kube(t testing.TB) client.Client {
	t.Helper()
	return extensiontest.Client(t, env.Config, newScheme(t))
}

// startManager runs gardener's Worker controller with the delegate until the test ends (one
// worker controller per test).
func startManager(t *testing.T) {
	t.Helper()
	extensiontest.StartManager(t, env.Config, newScheme(t), func(ctx context.Context, mgr manager.Manager) error {
		return worker.AddToManager(ctx, mgr, worker.AddOptions{})
	})
}

// privateNetwork allocates the shoot's private network as the infrastructure actuator leaves it:
// labelled with the cluster.
func privateNetwork(t testing.TB, f *infratest.Fixture, shoot infratest.Shoot) string {
	t.Helper()
	nw, err := f.Editor.Network.AllocateNetworkContext(t.Context(), networkops.NewAllocateNetworkParams().WithBody(&wire.NetworkAllocateRequest{
		ProjectID: f.Project, PartitionID: infratest.Partition, Labels: map[string]string{infrastructure.ClusterLabel: shoot.UID}}), nil)
	check(t, err)
	return nw.Payload.ID
}

// createShoot creates what gardenlet leaves in the shoot's seed namespace before a Worker: the
// namespace, the Cluster, the cloudprovider secret and the user-data secret (key cloud-config)
// the pools name.
func createShoot(t testing.TB, k client.Client, f *infratest.Fixture, shoot infratest.Shoot, userData string) {
	t.Helper()
	ctx, ns := t.Context(), shoot.Namespace()
	check(t, k.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	check(t, k.Create(ctx, f.Cluster(shoot)))
	check(t, k.Create(ctx, f.CloudProviderSecret(ns)))
	check(t, k.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "user-data", Namespace: ns},
		Data: map[string][]byte{"cloud-config": []byte(userData)}}))
}

const sshKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE1mZXRhbGZvcmdlLXRlc3Qta2V5 test"

// TestWorkerMachineClassesAndDeployments runs gardener's Worker controller with the generic actuator
// and the delegate against a real kube-apiserver (with MCM's CRDs) and a real metal-api, and checks
// the MachineClasses (providerSpec for pkg/mcm, secret, node template from the size) and the
// MachineDeployments (names, replicas, strategy, labels, taints, autoscaler annotations) it
// writes. No machine-controller-manager runs, so the Worker stays in "waiting for machines".
func TestWorkerMachineClassesAndDeployments(t *testing.T) {
	f := infratest.Start(t)
	shoot := infratest.Shoot{Name: "workers", UID: "uid-workers"}
	ns := shoot.Namespace()
	ctx := t.Context()
	k := kube(t)

	labelled := privateNetwork(t, f, shoot)
	// The network the Infrastructure's providerStatus names wins over the label lookup (which stays
	// the fallback for statuses without networkID, as in TestWorkerWithMCM).
	sn, err := f.Editor.Network.AllocateNetworkContext(ctx, networkops.NewAllocateNetworkParams().WithBody(&wire.NetworkAllocateRequest{
		ProjectID: f.Project, PartitionID: infratest.Partition}), nil)
	check(t, err)
	networkID := sn.Payload.ID
	if networkID == labelled {
		t.Fatalf("metal-api returned network %s twice", networkID)
	}
	infraStatus, err := json.Marshal(map[string]any{"apiVersion": "metal.provider.extensions.gardener.cloud/v1alpha1",
		"kind": "InfrastructureStatus", "firewall": map[string]any{"machineID": "fw"}, "networkID": networkID})
	check(t, err)

	createShoot(t, k, f, shoot, "#cloud-config\nhostname: x\n")
	workerConfig, err := json.Marshal(map[string]any{"apiVersion": "metal.provider.extensions.gardener.cloud/v1alpha1",
		"kind": "WorkerConfig", "additionalNetworks": []string{infratest.Internet}})
	check(t, err)
	taint := corev1.Taint{Key: "dedicated", Value: "db", Effect: corev1.TaintEffectNoSchedule}
	threshold := "0.4"
	w := &extensionsv1alpha1.Worker{
		ObjectMeta: metav1.ObjectMeta{Name: "worker", Namespace: ns,
			Annotations: map[string]string{v1beta1constants.GardenerOperation: v1beta1constants.GardenerOperationReconcile}},
		Spec: extensionsv1alpha1.WorkerSpec{
			DefaultSpec:                  extensionsv1alpha1.DefaultSpec{Type: infrastructure.Type},
			Region:                       "fra",
			SecretRef:                    corev1.SecretReference{Name: "cloudprovider", Namespace: ns},
			SSHPublicKey:                 []byte(sshKey),
			InfrastructureProviderStatus: &runtime.RawExtension{Raw: infraStatus},
			Pools: []extensionsv1alpha1.WorkerPool{
				{
					Name: "db", MachineType: infratest.Size, Minimum: 1, Maximum: 3,
					MaxSurge: intstr.FromInt32(1), MaxUnavailable: intstr.FromInt32(0),
					MachineImage:        extensionsv1alpha1.MachineImage{Name: infratest.ImageName, Version: infratest.ImageVersion},
					UserDataSecretRef:   corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "user-data"}, Key: "cloud-config"},
					NodeAgentSecretName: new("gardener-node-agent-db-1a2b3"),
					Zones:               []string{infratest.Partition},
					Labels:              map[string]string{"pool": "db"},
					Taints:              []corev1.Taint{taint},
					ProviderConfig:      &runtime.RawExtension{Raw: workerConfig},
					ClusterAutoscaler:   &extensionsv1alpha1.ClusterAutoscalerOptions{ScaleDownUtilizationThreshold: &threshold},
				},
				{
					// No zones: the infrastructure's partition; min 0 so the autoscaler scales from zero.
					Name: "batch", MachineType: infratest.Size, Minimum: 0, Maximum: 2,
					MaxSurge: intstr.FromString("50%"), MaxUnavailable: intstr.FromInt32(0),
					MachineImage:        extensionsv1alpha1.MachineImage{Name: infratest.ImageName, Version: infratest.ImageVersion},
					UserDataSecretRef:   corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "user-data"}, Key: "cloud-config"},
					NodeAgentSecretName: new("gardener-node-agent-batch-4c5d6"),
				},
			},
		},
	}
	check(t, k.Create(ctx, w))

	startManager(t)

	var mds machinev1alpha1.MachineDeploymentList
	clienttest.WaitFor(t, 60*time.Second, "machine deployments", func() (bool, error) {
		err := k.List(ctx, &mds, client.InNamespace(ns))
		return err == nil && len(mds.Items) == 2, err
	})
	var classes machinev1alpha1.MachineClassList
	check(t, k.List(ctx, &classes, client.InNamespace(ns)))
	byPrefix := map[string]machinev1alpha1.MachineClass{}
	for _, c := range classes.Items {
		byPrefix[c.Name[:strings.LastIndexByte(c.Name, '-')]] = c
	}
	gib := func(n int64) resource.Quantity { return *resource.NewQuantity(n<<30, resource.BinarySI) }
	arch := "amd64"
	template := &machinev1alpha1.NodeTemplate{
		Capacity: corev1.ResourceList{
			corev1.ResourceCPU: *resource.NewQuantity(2, resource.DecimalSI), corev1.ResourceMemory: gib(4),
			corev1.ResourceEphemeralStorage: gib(10), "gpu": *resource.NewQuantity(0, resource.DecimalSI),
		},
		InstanceType: infratest.Size, Region: "fra", Zone: infratest.Partition, Architecture: &arch,
	}
	for _, tc := range []struct {
		pool     string
		networks []string
		min, max int32
		surge    intstr.IntOrString
		labels   map[string]string
		taints   []corev1.Taint
		caAnno   string
	}{
		{pool: "db", networks: []string{networkID, infratest.Internet}, min: 1, max: 3, surge: intstr.FromInt32(1),
			labels: map[string]string{"pool": "db"}, taints: []corev1.Taint{taint}, caAnno: "0.4"},
		{pool: "batch", networks: []string{networkID}, min: 0, max: 2, surge: intstr.FromString("50%")},
	} {
		t.Run(tc.pool, func(t *testing.T) {
			name := ns + "-" + tc.pool + "-z1"
			mc, ok := byPrefix[name]
			if !ok {
				t.Fatalf("no machine class %s-<hash> among %d", name, len(classes.Items))
			}
			var spec mcm.ProviderSpec
			check(t, json.Unmarshal(mc.ProviderSpec.Raw, &spec))
			want := mcm.ProviderSpec{Partition: infratest.Partition, Size: infratest.Size, Image: infratest.ImageName + "-" + infratest.ImageVersion,
				Project: f.Project, Networks: tc.networks, ClusterID: shoot.UID, Tags: []string{worker.TagPool + tc.pool}, SSHKeys: []string{sshKey}}
			if d := cmp.Diff(want, spec); d != "" {
				t.Errorf("providerSpec (-want +got):\n%s", d)
			}
			check(t, spec.Validate())
			if mc.Provider != mcm.ProviderName || mc.SecretRef == nil || mc.SecretRef.Name != mc.Name ||
				mc.CredentialsSecretRef == nil || mc.CredentialsSecretRef.Name != "cloudprovider" {
				t.Errorf("machine class %s: provider %q secretRef %v credentialsSecretRef %v", mc.Name, mc.Provider, mc.SecretRef, mc.CredentialsSecretRef)
			}
			if d := cmp.Diff(template, mc.NodeTemplate); d != "" {
				t.Errorf("nodeTemplate (-want +got):\n%s", d)
			}
			var sec corev1.Secret
			check(t, k.Get(ctx, client.ObjectKey{Namespace: ns, Name: mc.Name}, &sec))
			if d := cmp.Diff(map[string]string{mcm.SecretUserData: "#cloud-config\nhostname: x\n", mcm.SecretMetalAPIURL: f.API.URL,
				mcm.SecretMetalAPIToken: f.Token}, stringMap(sec.Data)); d != "" {
				t.Errorf("machine class secret (-want +got):\n%s", d)
			}
			if sec.Labels[v1beta1constants.GardenerPurpose] != v1beta1constants.GardenPurposeMachineClass {
				t.Errorf("secret labels = %v", sec.Labels)
			}

			var md machinev1alpha1.MachineDeployment
			check(t, k.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &md))
			if md.Spec.Replicas != tc.min || md.Spec.Template.Spec.Class.Name != mc.Name {
				t.Errorf("machine deployment %s: replicas %d class %s, want %d and %s", name, md.Spec.Replicas, md.Spec.Template.Spec.Class.Name, tc.min, mc.Name)
			}
			zero := intstr.FromInt32(0)
			if d := cmp.Diff(machinev1alpha1.MachineDeploymentStrategy{Type: machinev1alpha1.RollingUpdateMachineDeploymentStrategyType,
				RollingUpdate: &machinev1alpha1.RollingUpdateMachineDeployment{UpdateConfiguration: machinev1alpha1.UpdateConfiguration{
					MaxSurge: &tc.surge, MaxUnavailable: &zero}}}, md.Spec.Strategy); d != "" {
				t.Errorf("strategy (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tc.labels, md.Spec.Template.Spec.NodeTemplateSpec.Labels); d != "" {
				t.Errorf("node labels (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tc.taints, md.Spec.Template.Spec.NodeTemplateSpec.Spec.Taints); d != "" {
				t.Errorf("node taints (-want +got):\n%s", d)
			}
			if got := md.Annotations[extensionsv1alpha1.ScaleDownUtilizationThresholdAnnotation]; got != tc.caAnno {
				t.Errorf("annotation %s = %q, want %q", extensionsv1alpha1.ScaleDownUtilizationThresholdAnnotation, got, tc.caAnno)
			}
			if md.Labels[v1beta1constants.LabelWorkerPool] != tc.pool {
				t.Errorf("machine deployment labels = %v", md.Labels)
			}
		})
	}

	// The worker's status: the machine deployments with min/max and the images in providerStatus.
	clienttest.WaitFor(t, 30*time.Second, "worker status", func() (bool, error) {
		check(t, k.Get(ctx, client.ObjectKeyFromObject(w), w))
		return len(w.Status.MachineDeployments) == 2 && w.Status.ProviderStatus != nil, nil
	})
	ws := &metal.WorkerStatus{}
	check(t, helper.Decode(w.Status.ProviderStatus.Raw, ws))
	if d := cmp.Diff([]metal.MachineImage{{Name: infratest.ImageName, Version: infratest.ImageVersion, Image: infratest.ImageName + "-" + infratest.ImageVersion}}, ws.MachineImages); d != "" {
		t.Errorf("providerStatus machineImages (-want +got):\n%s", d)
	}
	for _, md := range w.Status.MachineDeployments {
		if md.Name == ns+"-db-z1" && (md.Minimum != 1 || md.Maximum != 3) {
			t.Errorf("status machine deployment %+v, want min 1 max 3", md)
		}
	}
}

func stringMap(m map[string][]byte) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = string(v)
	}
	return out
}
