package gardener_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	extensionsv1alpha1 "github.com/gardener/gardener/pkg/apis/extensions/v1alpha1"
	resourcesv1alpha1 "github.com/gardener/gardener/pkg/apis/resources/v1alpha1"
	"github.com/gardener/gardener/pkg/utils/managedresources"
	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	yamlserializer "k8s.io/apimachinery/pkg/runtime/serializer/yaml"
	cloudprovider "k8s.io/cloud-provider"
	cpapp "k8s.io/cloud-provider/app"
	"k8s.io/cloud-provider/app/config"
	ccmnames "k8s.io/cloud-provider/names"
	"k8s.io/cloud-provider/options"
	cliflag "k8s.io/component-base/cli/flag"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/metalforge/metalforge/controllers/controlplane"
	"github.com/metalforge/metalforge/pkg/apis/metal"
	"github.com/metalforge/metalforge/pkg/apis/metal/helper"
	"github.com/metalforge/metalforge/pkg/ccm"
	"github.com/metalforge/metalforge/pkg/client/clienttest"
	"github.com/metalforge/metalforge/pkg/lab/gardener"
)

// Names of the control plane actuator's ManagedResources (gardener's generic actuator names them
// after the charts).
const (
	mrSeed      = "extension-controlplane-seed"
	mrShoot     = "extension-controlplane-shoot"
	mrShootCRDs = "extension-controlplane-shoot-crds"
)

// controlPlaneWant is what the ControlPlane's ManagedResources must say about the shoot.
type controlPlaneWant struct {
	metalAPIURL, token string
	firewallMachineID  string
}

// checkControlPlane checks the ManagedResources of a ready ControlPlane as gardener-resource-manager
// would apply them: in the seed metal-ccm's Deployment (its partition, every secret it mounts
// present in the shoot namespace, its cloud config accepted by metal-ccm's own loader) and in the
// shoot the ClusterwideNetworkPolicy CRD and the default policies of the shoot's networkAccessType,
// which the API server accepts against that CRD. It returns metal-ccm's config.
func checkControlPlane(t *testing.T, k client.Client, g *gardener.Gardenlet, want controlPlaneWant) ccm.Config {
	t.Helper()
	ctx := t.Context()
	ns := g.Namespace()
	infraCfg, cpCfg, profile := &metal.InfrastructureConfig{}, &metal.ControlPlaneConfig{}, &metal.CloudProfileConfig{}
	check(t, helper.Decode(g.Shoot.Spec.Provider.InfrastructureConfig.Raw, infraCfg))
	check(t, helper.Decode(g.Shoot.Spec.Provider.ControlPlaneConfig.Raw, cpCfg))
	check(t, helper.Decode(g.CloudProfile.Spec.ProviderConfig.Raw, profile))

	// Seed MR for the seed's resource manager, shoot MRs for the shoot's.
	var mrs resourcesv1alpha1.ManagedResourceList
	check(t, k.List(ctx, &mrs, client.InNamespace(ns)))
	classes := map[string]string{}
	for _, mr := range mrs.Items {
		classes[mr.Name] = ptrString(mr.Spec.Class)
	}
	if diff := cmp.Diff(map[string]string{mrSeed: "seed", mrShoot: "", mrShootCRDs: ""}, classes); diff != "" {
		t.Errorf("managed resources and their classes (-want +got):\n%s", diff)
	}

	// metal-ccm in the seed.
	seed := mrObjects(t, k, ns, mrSeed)
	dep := find(seed, "Deployment", controlplane.CloudControllerManagerName)
	if dep == nil {
		t.Fatalf("seed managed resource has no metal-ccm Deployment: %v", names(seed))
	}
	d := &appsv1.Deployment{}
	check(t, runtime.DefaultUnstructuredConverter.FromUnstructured(dep.Object, d))
	pod := d.Spec.Template
	ctr := pod.Spec.Containers[0]
	if ctr.Image != controlplane.DefaultMetalCCMImage {
		t.Errorf("metal-ccm image %s, want the extension's default %s", ctr.Image, controlplane.DefaultMetalCCMImage)
	}
	if got := pod.Labels["metal.metalforge.io/partition"]; got != infraCfg.PartitionID {
		t.Errorf("metal-ccm partition label %q, want the shoot's partition %q", got, infraCfg.PartitionID)
	}
	// The command parses with the upstream cloud-controller-manager flags cmd/metal-ccm uses.
	opts := ccmFlags(t, ctr.Command)
	if cp := opts.KubeCloudShared.CloudProvider; cp.Name != ccm.ProviderName || opts.KubeCloudShared.ClusterName != ns {
		t.Errorf("metal-ccm flags: cloud provider %q, cluster name %q; want %q, %q", cp.Name, opts.KubeCloudShared.ClusterName, ccm.ProviderName, ns)
	}
	if got := pod.Annotations["metalforge.io/firewall-machine"]; got != want.firewallMachineID {
		t.Errorf("metal-ccm firewall annotation %q, want the infrastructure status' %q", got, want.firewallMachineID)
	}
	// Every secret the pod mounts exists in the shoot namespace: the cloudprovider credentials
	// (gardenlet's), the generic token kubeconfig (gardenlet's), the shoot access secret and the
	// server certificate (the actuator's).
	var mounted []string
	for _, v := range pod.Spec.Volumes {
		switch {
		case v.Secret != nil:
			mounted = append(mounted, v.Secret.SecretName)
		case v.Projected != nil:
			for _, src := range v.Projected.Sources {
				if src.Secret != nil {
					mounted = append(mounted, src.Secret.Name)
				}
			}
		}
	}
	for _, name := range mounted {
		if err := k.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &corev1.Secret{}); err != nil {
			t.Errorf("metal-ccm mounts secret %s: %v", name, err)
		}
	}
	for _, name := range []string{gardener.CloudProviderSecretName, g.GenericTokenKubeconfigSecretName(), controlplane.AccessSecretName} {
		if !slices.Contains(mounted, name) {
			t.Errorf("metal-ccm mounts %v, not %s", mounted, name)
		}
	}

	// The cloud config, with the pod's volumes laid out in a directory, loads with metal-ccm's
	// LoadConfig (strict) as the binary would.
	cc := cloudConfig(t, k, ns, seed, pod, opts.KubeCloudShared.CloudProvider.CloudConfigFile)
	if cc.MetalAPIURL != want.metalAPIURL || cc.MetalAPIToken != want.token || cc.ProjectID != infraCfg.ProjectID ||
		cc.ClusterID != g.UID || cc.DefaultExternalNetwork != *cpCfg.CloudControllerManager.DefaultExternalNetwork {
		t.Errorf("metal-ccm config: url %s project %s cluster %s external network %s token ok %v; want %s %s %s %s",
			cc.MetalAPIURL, cc.ProjectID, cc.ClusterID, cc.DefaultExternalNetwork, cc.MetalAPIToken == want.token,
			want.metalAPIURL, infraCfg.ProjectID, g.UID, *cpCfg.CloudControllerManager.DefaultExternalNetwork)
	}

	// Shoot: the CRD, then the firewall namespace and the default policies of the access type.
	crds := mrObjects(t, k, ns, mrShootCRDs)
	if len(crds) != 1 || crds[0].GetKind() != "CustomResourceDefinition" || crds[0].GetName() != "clusterwidenetworkpolicies.metal-stack.io" {
		t.Fatalf("shoot CRDs %v, want the ClusterwideNetworkPolicy CRD", names(crds))
	}
	access := metal.NetworkAccessBaseline
	if cpCfg.NetworkAccessType != nil && *cpCfg.NetworkAccessType != "" {
		access = *cpCfg.NetworkAccessType
	}
	var iso *metal.NetworkIsolation
	if _, _, p, ok := helper.FindPartition(profile, infraCfg.PartitionID); ok {
		iso = p.NetworkIsolation
	}
	policies, err := controlplane.DefaultPolicies(access, iso)
	check(t, err)
	wantSpecs := map[string]any{}
	for _, p := range policies {
		spec := viaJSON(t, p).(map[string]any)
		delete(spec, "name")
		wantSpecs[p.Name] = spec
	}
	shoot := mrObjects(t, k, ns, mrShoot)
	gotSpecs := map[string]any{}
	for _, o := range shoot {
		if o.GetKind() == "ClusterwideNetworkPolicy" {
			if o.GetNamespace() != controlplane.FirewallNamespace {
				t.Errorf("policy %s in namespace %q, want %s", o.GetName(), o.GetNamespace(), controlplane.FirewallNamespace)
			}
			gotSpecs[o.GetName()] = viaJSON(t, o.Object["spec"])
		}
	}
	if diff := cmp.Diff(wantSpecs, gotSpecs); diff != "" {
		t.Errorf("default policies for network access type %s (-want +got):\n%s", access, diff)
	}
	if find(shoot, "Namespace", controlplane.FirewallNamespace) == nil {
		t.Errorf("shoot managed resource lacks the namespace %s: %v", controlplane.FirewallNamespace, names(shoot))
	}

	// The API server (playing the shoot) accepts the CRD and then the policies against it.
	if err := k.Create(ctx, crds[0]); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create CRD: %v", err)
	}
	clienttest.WaitFor(t, 30*time.Second, "ClusterwideNetworkPolicy CRD served", func() (bool, error) {
		l := &unstructured.UnstructuredList{}
		l.SetAPIVersion("metal-stack.io/v1")
		l.SetKind("ClusterwideNetworkPolicyList")
		err := k.List(ctx, l, client.InNamespace(controlplane.FirewallNamespace))
		return err == nil, err
	})
	for _, o := range shoot {
		if o.GetKind() != "Namespace" && o.GetKind() != "ClusterwideNetworkPolicy" {
			continue // RBAC is not the question here
		}
		if err := k.Create(ctx, o.DeepCopy()); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Errorf("shoot object %s %s refused: %v", o.GetKind(), o.GetName(), err)
		}
	}
	return cc
}

// cloudConfig loads metal-ccm's cloud config from the seed managed resource's ConfigMap with
// ccm.LoadConfig, after laying out the pod's cloud-config and credentials mounts under a temporary
// directory (the token comes from the cloudprovider secret through the volume's items).
func cloudConfig(t *testing.T, k client.Client, ns string, seed []*unstructured.Unstructured, pod corev1.PodTemplateSpec, file string) ccm.Config {
	t.Helper()
	cm := find(seed, "ConfigMap", "cloud-controller-manager-config")
	if cm == nil {
		t.Fatalf("seed managed resource has no cloud config: %v", names(seed))
	}
	data, _, _ := unstructured.NestedStringMap(cm.Object, "data")
	root := t.TempDir()
	mounts := map[string]string{}
	for _, m := range pod.Spec.Containers[0].VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	if file == "" {
		t.Fatalf("metal-ccm command %v has no --cloud-config", pod.Spec.Containers[0].Command)
	}
	cloudFile := filepath.Join(root, file)
	for _, v := range pod.Spec.Volumes {
		dir := filepath.Join(root, mounts[v.Name])
		switch {
		case v.ConfigMap != nil && v.ConfigMap.Name == cm.GetName():
			check(t, os.MkdirAll(dir, 0o755))
			for key, val := range data {
				check(t, os.WriteFile(filepath.Join(dir, key), []byte(val), 0o600))
			}
		case v.Secret != nil && v.Name == "credentials":
			s := &corev1.Secret{}
			check(t, k.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: v.Secret.SecretName}, s))
			check(t, os.MkdirAll(dir, 0o755))
			for _, it := range v.Secret.Items {
				check(t, os.WriteFile(filepath.Join(dir, it.Path), s.Data[it.Key], 0o600))
			}
		}
	}
	raw, err := os.ReadFile(cloudFile)
	check(t, err)
	// Absolute paths in the config (the token file) point into the pod's filesystem: root them.
	check(t, os.WriteFile(cloudFile, []byte(strings.ReplaceAll(string(raw), `"@/`, `"@`+root+"/")), 0o600))
	cc, err := ccm.LoadConfig(cloudFile, func(string) string { return "" })
	if err != nil {
		t.Fatalf("metal-ccm refuses its cloud config:\n%s\n%v", raw, err)
	}
	return cc
}

// ccmFlags parses metal-ccm's command line (the binary first) with the flags of k8s.io/cloud-provider's
// command, which cmd/metal-ccm runs; an unknown flag or a bad value is an error.
func ccmFlags(t testing.TB, command []string) *options.CloudControllerManagerOptions {
	t.Helper()
	opts, err := options.NewCloudControllerManagerOptions()
	check(t, err)
	cmd := cpapp.NewCloudControllerManagerCommand(opts, func(*config.CompletedConfig) cloudprovider.Interface { return nil },
		cpapp.DefaultInitFuncConstructors, ccmnames.CCMControllerAliases(), cliflag.NamedFlagSets{}, nil)
	if len(command) == 0 {
		t.Fatal("metal-ccm has no command")
	}
	if err := cmd.ParseFlags(command[1:]); err != nil {
		t.Fatalf("metal-ccm command %v: %v", command, err)
	}
	if args := cmd.Flags().Args(); len(args) != 0 {
		t.Errorf("metal-ccm command has arguments %v", args)
	}
	return opts
}

// waitControlPlaneGone waits until the ControlPlane is deleted (its finalizer removed) and checks
// that its ManagedResources went with it.
func waitControlPlaneGone(t *testing.T, k client.Client, key client.ObjectKey) {
	t.Helper()
	ctx := t.Context()
	clienttest.WaitFor(t, 60*time.Second, "controlplane gone", func() (bool, error) {
		got := &extensionsv1alpha1.ControlPlane{}
		err := k.Get(ctx, key, got)
		return apierrors.IsNotFound(err), fmt.Errorf("controlplane still there (%v), finalizers %v", err, got.GetFinalizers())
	})
	var mrs resourcesv1alpha1.ManagedResourceList
	check(t, k.List(ctx, &mrs, client.InNamespace(key.Namespace)))
	if len(mrs.Items) != 0 {
		t.Errorf("managed resources left after the controlplane: %d", len(mrs.Items))
	}
}

// mrObjects decodes the objects of a ManagedResource as gardener-resource-manager would.
func mrObjects(t testing.TB, k client.Client, ns, name string) []*unstructured.Unstructured {
	t.Helper()
	mr := &resourcesv1alpha1.ManagedResource{}
	check(t, k.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, mr))
	dec := yamlserializer.NewDecodingSerializer(unstructured.UnstructuredJSONScheme)
	var out []*unstructured.Unstructured
	for _, ref := range mr.Spec.SecretRefs {
		s := &corev1.Secret{}
		check(t, k.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: ref.Name}, s))
		objs, err := managedresources.ExtractObjectsFromSecret(dec, s)
		check(t, err)
		for _, o := range objs {
			out = append(out, o.(*unstructured.Unstructured))
		}
	}
	return out
}

func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

func names(objs []*unstructured.Unstructured) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.GetKind()+"/"+o.GetName())
	}
	return out
}

// viaJSON makes plain JSON values of v, so typed and decoded YAML compare equal.
func viaJSON(t testing.TB, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	check(t, err)
	var out any
	check(t, json.Unmarshal(b, &out))
	return out
}

func ptrString(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
