package ccm_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/klog/v2"

	"github.com/metalforge/metalforge/pkg/ccm"
	"github.com/metalforge/metalforge/pkg/client/clienttest"
	"github.com/metalforge/metalforge/pkg/client/metalapi"
	ipops "github.com/metalforge/metalforge/pkg/client/metalapi/ip"
	machineops "github.com/metalforge/metalforge/pkg/client/metalapi/machine"
	"github.com/metalforge/metalforge/pkg/client/wire"
	"github.com/metalforge/metalforge/pkg/kubetest"
)

// env is the package's control plane: set once by TestMain, only read by the tests. The tests run
// one after the other; each starts its own metal-api and metal-ccm and cleans up its objects.
var env *kubetest.Env

func TestMain(m *testing.M) {
	// The upstream controllers log through klog; METALFORGE_KLOG=1 shows it.
	if os.Getenv("METALFORGE_KLOG") == "" {
		klog.SetLogger(logr.Discard())
	}
	os.Exit(kubetest.Main(m, kubetest.Options{CRDDirs: []string{"testdata/crds"}}, &env))
}

// The metal-api fixture.
const (
	part      = "fra-equ01"
	region    = "fra"
	sizeID    = "s1"
	img       = "debian-12"
	layout    = "default"
	internet  = "internet"
	internet2 = "internet-2"
	lbNS      = "metallb-system"
)

// fixture is one metal-api with a project, its editor token and a running metal-ccm.
type fixture struct {
	t       testing.TB
	api     *clienttest.API
	admin   *metalapi.MetalAPI
	editor  *metalapi.MetalAPI
	project string
	other   string // another project
	token   string
	cluster string
	cloud   *ccm.Cloud
	cfg     ccm.Config
}

func check(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// newFixture starts metal-api with the catalogue, two projects and the networks, and metal-ccm for
// a cluster in the first project with the given load balancer backend (mods adjust its config).
func newFixture(t testing.TB, backend string, mods ...func(*ccm.Config)) *fixture {
	t.Helper()
	f := &fixture{t: t, api: clienttest.Start(t)}
	f.admin = f.api.Client(clienttest.AdminToken)
	f.api.Seed(clienttest.Catalogue{Partition: part,
		Sizes:   []*wire.Size{clienttest.Size(sizeID)},
		Images:  []*wire.Image{clienttest.Image(img, "debian", "12", "machine")},
		Layouts: []*wire.FilesystemLayout{clienttest.Layout(layout, sizeID)},
		Networks: []*wire.Network{clienttest.SuperNetwork("tenant-super", part), clienttest.Internet(internet),
			{ID: internet2, Type: "external", Prefixes: []string{"100.72.0.0/24"}, DestinationPrefixes: []string{"0.0.0.0/0"}, VRF: 104010}}})
	f.project, f.other = f.api.Project("tenant"), f.api.Project("tenant")
	f.token = f.api.Token("metal-ccm", "editor", f.project)
	f.editor = f.api.Client(f.token)
	f.cluster = "c-" + strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(f.cluster) > 40 {
		f.cluster = f.cluster[:40]
	}
	f.cfg = ccm.Config{MetalAPIURL: f.api.URL, MetalAPIToken: f.token, ProjectID: f.project, ClusterID: f.cluster,
		DefaultExternalNetwork: internet, LoadBalancer: backend, Namespace: lbNS,
		// Long enough that the tests see the event-driven paths, not the periodic repair.
		HousekeepingInterval: time.Minute}
	for _, m := range mods {
		m(&f.cfg)
	}
	var err error
	f.cloud, err = ccm.New(f.cfg, logr.Discard())
	check(t, err)
	f.startCCM()
	return f
}

// startCCM runs metal-ccm until the test ends, then removes what the test left in Kubernetes.
func (f *fixture) startCCM() {
	ensureNamespace(f.t, lbNS)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- f.cloud.Run(ctx, env.Config, ccm.RunOptions{NodeMonitorPeriod: time.Second, NodeStatusUpdateFrequency: 5 * time.Second})
	}()
	f.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			f.t.Errorf("metal-ccm: %v", err)
		}
		cleanupKube(f.t)
	})
}

// machine registers a machine, lets it wait and allocates it to the project as hostname, tagged for
// the cluster plus extra tags. The editor allocates by partition and size, as a cluster's machine
// controller does; the new machine is the only waiting one.
func (f *fixture) machine(i int, hostname, rack string, tags ...string) *wire.Machine {
	f.t.Helper()
	m := clienttest.Machine(part, i)
	m.RackID = rack
	f.api.RegisterWaiting(m)
	r, err := f.editor.Machine.AllocateMachineContext(f.t.Context(), machineops.NewAllocateMachineParams().WithBody(&wire.MachineAllocateRequest{
		ProjectID: f.project, PartitionID: part, SizeID: sizeID, ImageID: img, FilesystemLayoutID: layout,
		Hostname: hostname, AutoNetwork: true, Tags: append([]string{ccm.TagCluster + f.cluster}, tags...)}), nil)
	check(f.t, err)
	if r.Payload.ID != m.ID {
		f.t.Fatalf("allocated machine %s, want the new machine %s", r.Payload.ID, m.ID)
	}
	return r.Payload
}

// clusterIPs are the project's IPs that carry the cluster tag (all pages of the list: find returns
// at most 100).
func (f *fixture) clusterIPs() []*wire.IP {
	f.t.Helper()
	var out []*wire.IP
	var cursor *string
	limit := int64(100)
	for range 1000 {
		r, err := f.editor.IP.ListIPsContext(f.t.Context(), ipops.NewListIPsParams().WithLimit(&limit).WithCursor(cursor), nil)
		check(f.t, err)
		for _, ip := range r.Payload.Items {
			if slices.Contains(ip.Tags, ccm.TagCluster+f.cluster) {
				out = append(out, ip)
			}
		}
		if r.Payload.Next == "" {
			return out
		}
		cursor = &r.Payload.Next
	}
	f.t.Fatal("more than 1000 pages of ips")
	return nil
}

func ensureNamespace(t testing.TB, name string) {
	t.Helper()
	_, err := env.Kube.CoreV1().Namespaces().Get(t.Context(), name, metav1.GetOptions{})
	if err == nil {
		return
	}
	_, err = env.Kube.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	check(t, err)
}

// testNamespace labels the namespaces tests create for their Services.
const testNamespace = "test.metalforge.io/ccm"

// newNamespace creates a namespace for the test's Services.
func newNamespace(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d", time.Now().UnixNano())
	_, err := env.Kube.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: name, Labels: map[string]string{testNamespace: "true"}}}, metav1.CreateOptions{})
	check(t, err)
	return name
}

// The backends' objects, for assertions and cleanup.
var (
	poolGVR    = schema.GroupVersionResource{Group: "metallb.io", Version: "v1beta1", Resource: "ipaddresspools"}
	peerGVR    = schema.GroupVersionResource{Group: "metallb.io", Version: "v1beta2", Resource: "bgppeers"}
	advGVR     = schema.GroupVersionResource{Group: "metallb.io", Version: "v1beta1", Resource: "bgpadvertisements"}
	ciliumPool = schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumloadbalancerippools"}
	ciliumBGP  = schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumbgpclusterconfigs"}
	ciliumPeer = schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumbgppeerconfigs"}
	ciliumAdv  = schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumbgpadvertisements"}
)

// cleanupKube deletes the nodes, the LB config objects and the test namespaces (Services in them
// lose their finalizer with them: metal-ccm is stopped by now).
func cleanupKube(t testing.TB) {
	ctx := context.Background()
	k := env.Kube.CoreV1()
	_ = k.Nodes().DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
	for _, gvr := range []schema.GroupVersionResource{poolGVR, peerGVR, advGVR} {
		_ = env.Dynamic.Resource(gvr).Namespace(lbNS).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
	}
	for _, gvr := range []schema.GroupVersionResource{ciliumPool, ciliumBGP, ciliumPeer, ciliumAdv} {
		_ = env.Dynamic.Resource(gvr).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
	}
	nss, err := k.Namespaces().List(ctx, metav1.ListOptions{LabelSelector: testNamespace})
	if err != nil {
		t.Errorf("list namespaces: %v", err)
		return
	}
	for _, ns := range nss.Items {
		svcs, err := k.Services(ns.Name).List(ctx, metav1.ListOptions{})
		if err == nil {
			for _, s := range svcs.Items {
				if len(s.Finalizers) > 0 {
					s.Finalizers = nil
					_, _ = k.Services(ns.Name).Update(ctx, &s, metav1.UpdateOptions{})
				}
			}
		}
		_ = k.Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{})
	}
}

// lbService is a Service of type LoadBalancer.
func lbService(ns, name string, mod ...func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}},
	}
	for _, m := range mod {
		m(s)
	}
	return s
}

// ingress waits for the Service's load balancer address.
func ingress(t testing.TB, ns, name string) string {
	t.Helper()
	var ip string
	clienttest.WaitFor(t, 30*time.Second, "ingress of "+ns+"/"+name, func() (bool, error) {
		s, err := env.Kube.CoreV1().Services(ns).Get(t.Context(), name, metav1.GetOptions{})
		if err != nil || len(s.Status.LoadBalancer.Ingress) == 0 {
			return false, err
		}
		ip = s.Status.LoadBalancer.Ingress[0].IP
		return true, nil
	})
	return ip
}

// lbObjects lists the objects metal-ccm wrote of one kind, by name.
func lbObjects(t testing.TB, gvr schema.GroupVersionResource, ns string) map[string]unstructured.Unstructured {
	t.Helper()
	l, err := env.Dynamic.Resource(gvr).Namespace(ns).List(t.Context(), metav1.ListOptions{LabelSelector: ccm.LabelManagedBy + "=metal-ccm"})
	check(t, err)
	out := map[string]unstructured.Unstructured{}
	for _, o := range l.Items {
		out[o.GetName()] = o
	}
	return out
}
