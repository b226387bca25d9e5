package healthcheck_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	gardencorev1beta1 "github.com/gardener/gardener/pkg/apis/core/v1beta1"
	extensionsv1alpha1 "github.com/gardener/gardener/pkg/apis/extensions/v1alpha1"
	resourcesv1alpha1 "github.com/gardener/gardener/pkg/apis/resources/v1alpha1"
	machinev1alpha1 "github.com/gardener/machine-controller-manager/pkg/apis/machine/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/metalforge/metalforge/controllers/healthcheck"
	"github.com/metalforge/metalforge/controllers/internal/extensiontest"
	"github.com/metalforge/metalforge/pkg/client/clienttest"
	"github.com/metalforge/metalforge/pkg/kubetest"
)

var env *kubetest.Env

func TestMain(m *testing.M) {
	gardener, err := extensiontest.ModuleFiles("github.com/gardener/gardener",
		"pkg/component/extensions/crds/assets/crd-extensions.gardener.cloud_clusters.yaml",
		"pkg/component/extensions/crds/assets/crd-extensions.gardener.cloud_controlplanes.yaml",
		"pkg/component/extensions/crds/assets/crd-extensions.gardener.cloud_workers.yaml",
		"pkg/component/gardener/resourcemanager/assets/crd-resources.gardener.cloud_managedresources.yaml")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	mcm, err := extensiontest.ModuleFiles("github.com/gardener/machine-controller-manager",
		"kubernetes/crds/machine.sapcloud.io_machinedeployments.yaml",
		"kubernetes/crds/machine.sapcloud.io_machines.yaml")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(kubetest.Main(m, kubetest.Options{CRDDirs: append(gardener, mcm...)}, &env))
}

func check(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func newScheme(t testing.TB) *runtime.Scheme {
	return extensiontest.Scheme(t, extensionsv1alpha1.AddToScheme, resourcesv1alpha1.AddToScheme, machinev1alpha1.AddToScheme)
}

func mustJSON(t testing.TB, v any) []byte {
	b, err := json.Marshal(v)
	check(t, err)
	return b
}

// condition waits until the extension object carries condition typ with status want and returns it.
func condition(t *testing.T, c client.Client, obj extensionsv1alpha1.Object, typ gardencorev1beta1.ConditionType, want gardencorev1beta1.ConditionStatus) gardencorev1beta1.Condition {
	t.Helper()
	var last gardencorev1beta1.Condition
	clienttest.WaitFor(t, 30*time.Second, fmt.Sprintf("condition %s becomes %s", typ, want), func() (bool, error) {
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
			return false, err
		}
		for _, cond := range obj.GetExtensionStatus().GetConditions() {
			if cond.Type == typ {
				last = cond
				return cond.Status == want, fmt.Errorf("last: %+v", cond)
			}
		}
		return false, fmt.Errorf("no condition %s", typ)
	})
	return last
}

// createCluster creates the namespace and the Cluster of a shoot of type metal.
func createCluster(t *testing.T, c client.Client, ns string) {
	t.Helper()
	ctx := context.Background()
	check(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	shoot := &gardencorev1beta1.Shoot{
		TypeMeta:   metav1.TypeMeta{APIVersion: "core.gardener.cloud/v1beta1", Kind: "Shoot"},
		ObjectMeta: metav1.ObjectMeta{Name: ns, Namespace: "garden-test"},
		Spec: gardencorev1beta1.ShootSpec{Kubernetes: gardencorev1beta1.Kubernetes{Version: "1.36.3"},
			Provider: gardencorev1beta1.Provider{Type: "metal"}},
	}
	check(t, c.Create(ctx, &extensionsv1alpha1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: ns},
		Spec: extensionsv1alpha1.ClusterSpec{
			Shoot:        runtime.RawExtension{Raw: mustJSON(t, shoot)},
			CloudProfile: runtime.RawExtension{Raw: []byte(`{"apiVersion":"core.gardener.cloud/v1beta1","kind":"CloudProfile","metadata":{"name":"metal"}}`)},
			Seed:         &runtime.RawExtension{Raw: []byte(`{"apiVersion":"core.gardener.cloud/v1beta1","kind":"Seed","metadata":{"name":"seed"}}`)},
		},
	}))
}

// startManager runs the health check controllers (ControlPlane and Worker, every second) until
// the test ends.
func startManager(t *testing.T) {
	t.Helper()
	extensiontest.StartManager(t, env.Config, newScheme(t), func(ctx context.Context, mgr manager.Manager) error {
		return healthcheck.AddToManager(ctx, mgr, healthcheck.AddOptions{SyncPeriod: time.Second})
	})
}

// healthyManagedResource creates a ManagedResource that gardener-resource-manager reports as
// applied and healthy.
func healthyManagedResource(t *testing.T, c client.Client, ns, name string) {
	t.Helper()
	ctx := context.Background()
	mr := &resourcesv1alpha1.ManagedResource{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: resourcesv1alpha1.ManagedResourceSpec{SecretRefs: []corev1.LocalObjectReference{{Name: name}}}}
	check(t, c.Create(ctx, mr))
	now := metav1.Now()
	mr.Status = resourcesv1alpha1.ManagedResourceStatus{ObservedGeneration: mr.Generation, Conditions: []gardencorev1beta1.Condition{
		{Type: resourcesv1alpha1.ResourcesApplied, Status: gardencorev1beta1.ConditionTrue, Reason: "ApplySucceeded", LastTransitionTime: now, LastUpdateTime: now},
		{Type: resourcesv1alpha1.ResourcesHealthy, Status: gardencorev1beta1.ConditionTrue, Reason: "ResourcesHealthy", LastTransitionTime: now, LastUpdateTime: now},
		{Type: resourcesv1alpha1.ResourcesProgressing, Status: gardencorev1beta1.ConditionFalse, Reason: "ResourcesRolledOut", LastTransitionTime: now, LastUpdateTime: now},
	}}
	check(t, c.Status().Update(ctx, mr))
}

// TestControlPlaneConditions runs the health check controller on a ControlPlane whose metal-ccm
// Deployment and shoot ManagedResources go from unhealthy to healthy, as the real controllers in
// the seed would report them, and checks the conditions follow.
func TestControlPlaneConditions(t *testing.T) {
	ctx := context.Background()
	c := extensiontest.Client(t, env.Config, newScheme(t))
	ns := "shoot--test--hc"
	createCluster(t, c, ns)
	cp := &extensionsv1alpha1.ControlPlane{
		ObjectMeta: metav1.ObjectMeta{Name: "hc", Namespace: ns},
		Spec: extensionsv1alpha1.ControlPlaneSpec{DefaultSpec: extensionsv1alpha1.DefaultSpec{Type: "metal"},
			SecretRef: corev1.SecretReference{Name: "cloudprovider", Namespace: ns}},
	}
	check(t, c.Create(ctx, cp))

	labels := map[string]string{"app": "kubernetes", "role": "cloud-controller-manager"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "cloud-controller-manager", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "ccm", Image: "metal-ccm"}}}},
		},
	}
	check(t, c.Create(ctx, dep))
	// Unhealthy: rolled out but not available (e.g. metal-ccm crash-looping).
	dep.Status = appsv1.DeploymentStatus{ObservedGeneration: dep.Generation, Replicas: 1, UpdatedReplicas: 1, UnavailableReplicas: 1,
		Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionFalse, Reason: "MinimumReplicasUnavailable",
			Message: "Deployment does not have minimum availability.", LastUpdateTime: metav1.Now(), LastTransitionTime: metav1.Now()}}}
	check(t, c.Status().Update(ctx, dep))

	healthyManagedResource(t, c, ns, "extension-controlplane-seed")

	startManager(t)

	got := condition(t, c, cp, gardencorev1beta1.ShootControlPlaneHealthy, gardencorev1beta1.ConditionFalse)
	if !strings.Contains(got.Message, "cloud-controller-manager") {
		t.Errorf("unhealthy message does not name the deployment: %q", got.Message)
	}
	got = condition(t, c, cp, gardencorev1beta1.ShootSystemComponentsHealthy, gardencorev1beta1.ConditionFalse)
	t.Logf("without managed resources: %s", got.Message)

	// Healthy: available.
	check(t, c.Get(ctx, client.ObjectKeyFromObject(dep), dep))
	dep.Status = appsv1.DeploymentStatus{ObservedGeneration: dep.Generation, Replicas: 1, UpdatedReplicas: 1, ReadyReplicas: 1, AvailableReplicas: 1,
		Conditions: []appsv1.DeploymentCondition{
			{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue, Reason: "MinimumReplicasAvailable", LastUpdateTime: metav1.Now(), LastTransitionTime: metav1.Now()},
			{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionTrue, Reason: "NewReplicaSetAvailable", LastUpdateTime: metav1.Now(), LastTransitionTime: metav1.Now()},
		}}
	check(t, c.Status().Update(ctx, dep))
	condition(t, c, cp, gardencorev1beta1.ShootControlPlaneHealthy, gardencorev1beta1.ConditionTrue)

	// The shoot's managed resources, applied and healthy as gardener-resource-manager reports.
	healthyManagedResource(t, c, ns, "extension-controlplane-shoot")
	healthyManagedResource(t, c, ns, "extension-controlplane-shoot-crds")
	condition(t, c, cp, gardencorev1beta1.ShootSystemComponentsHealthy, gardencorev1beta1.ConditionTrue)

	// And back: metal-ccm loses its replicas.
	check(t, c.Get(ctx, client.ObjectKeyFromObject(dep), dep))
	dep.Status.AvailableReplicas, dep.Status.ReadyReplicas, dep.Status.UnavailableReplicas = 0, 0, 1
	dep.Status.Conditions[0].Status = corev1.ConditionFalse
	dep.Status.Conditions[0].Reason = "MinimumReplicasUnavailable"
	check(t, c.Status().Update(ctx, dep))
	condition(t, c, cp, gardencorev1beta1.ShootControlPlaneHealthy, gardencorev1beta1.ConditionFalse)
}

// shootKubeconfig is the secret gardener keeps in the shoot namespace for clients of the shoot;
// here the shoot is the test's own API server.
func shootKubeconfig(t *testing.T, ns string) *corev1.Secret {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["shoot"] = &clientcmdapi.Cluster{Server: env.Config.Host, CertificateAuthorityData: env.Config.CAData}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: env.Config.CertData, ClientKeyData: env.Config.KeyData, Token: env.Config.BearerToken}
	cfg.Contexts["shoot"] = &clientcmdapi.Context{Cluster: "shoot", AuthInfo: "admin"}
	cfg.CurrentContext = "shoot"
	b, err := clientcmd.Write(*cfg)
	check(t, err)
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "gardener", Namespace: ns}, Data: map[string][]byte{"kubeconfig": b}}
}

// TestWorkerConditions: ShootEveryNodeReady follows the MachineDeployments in the seed and the
// Nodes in the shoot.
func TestWorkerConditions(t *testing.T) {
	ctx := context.Background()
	c := extensiontest.Client(t, env.Config, newScheme(t))
	ns := "shoot--test--wk"
	createCluster(t, c, ns)
	check(t, c.Create(ctx, shootKubeconfig(t, ns)))
	w := &extensionsv1alpha1.Worker{
		ObjectMeta: metav1.ObjectMeta{Name: "wk", Namespace: ns},
		Spec: extensionsv1alpha1.WorkerSpec{DefaultSpec: extensionsv1alpha1.DefaultSpec{Type: "metal"}, Region: "lab",
			SecretRef: corev1.SecretReference{Name: "cloudprovider", Namespace: ns},
			Pools: []extensionsv1alpha1.WorkerPool{{Name: "small", MachineType: "v1-small-x86", Minimum: 1, Maximum: 1,
				MachineImage: extensionsv1alpha1.MachineImage{Name: "debian", Version: "12"}, Zones: []string{"lab"}}}},
	}
	check(t, c.Create(ctx, w))
	md := &machinev1alpha1.MachineDeployment{
		ObjectMeta: metav1.ObjectMeta{Name: "wk-small-z1", Namespace: ns},
		Spec: machinev1alpha1.MachineDeploymentSpec{Replicas: 1,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"pool": "small"}},
			Template: machinev1alpha1.MachineTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"pool": "small"}}}},
	}
	check(t, c.Create(ctx, md))
	startManager(t)

	// No node yet, the MachineDeployment has not reported.
	got := condition(t, c, w, gardencorev1beta1.ShootEveryNodeReady, gardencorev1beta1.ConditionFalse)
	t.Logf("before the machine joined: %s", got.Message)

	// The machine joined and is ready, the MachineDeployment is available.
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "shoot--test--wk-small-z1-abc"}}
	check(t, c.Create(ctx, node))
	now := metav1.Now()
	node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", LastHeartbeatTime: now, LastTransitionTime: now}}
	check(t, c.Status().Update(ctx, node))
	t.Cleanup(func() { _ = c.Delete(ctx, node) })
	check(t, c.Get(ctx, client.ObjectKeyFromObject(md), md))
	md.Status = machinev1alpha1.MachineDeploymentStatus{ObservedGeneration: md.Generation, Replicas: 1, UpdatedReplicas: 1, ReadyReplicas: 1, AvailableReplicas: 1,
		Conditions: []machinev1alpha1.MachineDeploymentCondition{{Type: machinev1alpha1.MachineDeploymentAvailable, Status: machinev1alpha1.ConditionTrue,
			Reason: "MinimumReplicasAvailable", LastUpdateTime: now, LastTransitionTime: now}}}
	check(t, c.Status().Update(ctx, md))
	condition(t, c, w, gardencorev1beta1.ShootEveryNodeReady, gardencorev1beta1.ConditionTrue)

	// A machine failed.
	check(t, c.Get(ctx, client.ObjectKeyFromObject(md), md))
	md.Status.FailedMachines = []*machinev1alpha1.MachineSummary{{Name: "wk-small-z1-def", LastOperation: machinev1alpha1.LastOperation{
		Description: "allocate machine: no machine of size v1-small-x86 available", State: machinev1alpha1.MachineStateFailed, Type: machinev1alpha1.MachineOperationCreate, LastUpdateTime: now}}}
	check(t, c.Status().Update(ctx, md))
	got = condition(t, c, w, gardencorev1beta1.ShootEveryNodeReady, gardencorev1beta1.ConditionFalse)
	if !strings.Contains(got.Message, "no machine of size v1-small-x86 available") {
		t.Errorf("failed machine not reported: %q", got.Message)
	}
}
