package ccm_test

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/metalforge/metalforge/pkg/ccm"
	"github.com/metalforge/metalforge/pkg/client"
	"github.com/metalforge/metalforge/pkg/client/clienttest"
	ipops "github.com/metalforge/metalforge/pkg/client/metalapi/ip"
	"github.com/metalforge/metalforge/pkg/client/wire"
)

// readyNode allocates a machine and creates its Node, and waits until metal-ccm labelled it.
func readyNode(t testing.TB, f *fixture, i int, name string) *wire.Machine {
	t.Helper()
	m := f.machine(i, name, "rack-1")
	newNode(t, name, ccm.ProviderID(part, m.ID))
	clienttest.WaitFor(t, 30*time.Second, "asn label on "+name, func() (bool, error) {
		return getNode(t, name).Labels[ccm.LabelASN] != "", nil
	})
	return m
}

func createService(t testing.TB, s *corev1.Service) {
	t.Helper()
	_, err := env.Kube.CoreV1().Services(s.Namespace).Create(t.Context(), s, metav1.CreateOptions{})
	check(t, err)
}

// deleteService deletes a Service and waits until metal-ccm dropped its finalizer.
func deleteService(t testing.TB, ns, name string) {
	t.Helper()
	check(t, env.Kube.CoreV1().Services(ns).Delete(t.Context(), name, metav1.DeleteOptions{}))
	clienttest.WaitFor(t, 30*time.Second, "service "+ns+"/"+name+" gone", func() (bool, error) {
		_, err := env.Kube.CoreV1().Services(ns).Get(t.Context(), name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
}

func poolAddresses(t testing.TB, pool unstructured.Unstructured) []string {
	t.Helper()
	addrs, _, err := unstructured.NestedStringSlice(pool.Object, "spec", "addresses")
	check(t, err)
	return addrs
}

func getIP(t testing.TB, f *fixture, addr string) (*wire.IP, error) {
	t.Helper()
	r, err := f.admin.IP.GetIPContext(t.Context(), ipops.NewGetIPParams().WithID(addr), nil)
	if err != nil {
		return nil, err
	}
	return r.Payload, nil
}

func TestLoadBalancer(t *testing.T) {
	f := newFixture(t, ccm.BackendMetalLB)
	m := readyNode(t, f, 1, "node-a")
	ns := newNamespace(t)

	createService(t, lbService(ns, "web"))
	addr := ingress(t, ns, "web")
	ips := f.clusterIPs()
	if len(ips) != 1 || ips[0].Address != addr || ips[0].NetworkID != internet || ips[0].ProjectID != f.project {
		t.Fatalf("cluster ips %+v; want one in %s with address %s", ips, internet, addr)
	}
	for _, tag := range []string{ccm.TagCluster + f.cluster, ccm.TagService + ns + "/web", ccm.TagAllocated} {
		if !slices.Contains(ips[0].Tags, tag) {
			t.Errorf("ip %s has tags %v, want %s", addr, ips[0].Tags, tag)
		}
	}

	// MetalLB: the pool of the network, the advertisement, a peer per node in the node's ASN.
	pools := lbObjects(t, poolGVR, lbNS)
	if got := poolAddresses(t, pools["metal-internet"]); !slices.Equal(got, []string{addr + "/32"}) {
		t.Errorf("pool metal-internet addresses %v, want [%s/32] (pools %v)", got, addr, slices.Collect(maps.Keys(pools)))
	}
	if auto, _, _ := unstructured.NestedBool(pools["metal-internet"].Object, "spec", "autoAssign"); auto {
		t.Error("pool metal-internet assigns automatically")
	}
	if _, ok := lbObjects(t, advGVR, lbNS)["metal-ccm"]; !ok {
		t.Error("no BGPAdvertisement metal-ccm")
	}
	// The peer follows the node's ASN label through the node informer: wait for it.
	clienttest.WaitFor(t, 10*time.Second, "BGPPeer of node-a", func() (bool, error) {
		_, ok := lbObjects(t, peerGVR, lbNS)["node-node-a"]
		return ok, nil
	})
	peer := lbObjects(t, peerGVR, lbNS)["node-node-a"]
	myASN, _, _ := unstructured.NestedInt64(peer.Object, "spec", "myASN")
	peerAddr, _, _ := unstructured.NestedString(peer.Object, "spec", "peerAddress")
	if want := int64(privateNet(m).ASN); myASN != want || peerAddr != "127.0.0.1" {
		t.Errorf("BGPPeer node-node-a: myASN %d peerAddress %s; want %d 127.0.0.1", myASN, peerAddr, want)
	}

	// A network named by annotation.
	createService(t, lbService(ns, "api", func(s *corev1.Service) {
		s.Annotations = map[string]string{ccm.AnnotationNetwork: internet2}
	}))
	addr2 := ingress(t, ns, "api")
	if !strings.HasPrefix(addr2, "100.72.0.") {
		t.Errorf("service api got %s, want an address of %s (100.72.0.0/24)", addr2, internet2)
	}
	clienttest.WaitFor(t, 10*time.Second, "pool metal-internet-2", func() (bool, error) {
		p, ok := lbObjects(t, poolGVR, lbNS)["metal-internet-2"]
		return ok && slices.Equal(poolAddresses(t, p), []string{addr2 + "/32"}), nil
	})

	// Delete: the address goes back to metal-api, the pool goes when it is empty.
	deleteService(t, ns, "web")
	if _, err := getIP(t, f, addr); !client.IsStatus(err, http.StatusNotFound) {
		t.Errorf("ip %s after its service was deleted: %v, want 404", addr, err)
	}
	if _, ok := lbObjects(t, poolGVR, lbNS)["metal-internet"]; ok {
		t.Error("pool metal-internet still there without addresses")
	}
	deleteService(t, ns, "api")
	if ips := f.clusterIPs(); len(ips) != 0 {
		t.Errorf("ips left after deleting every service: %+v", ips)
	}
	if pools := lbObjects(t, poolGVR, lbNS); len(pools) != 0 {
		t.Errorf("pools left: %v", slices.Collect(maps.Keys(pools)))
	}
}

func TestLoadBalancerIP(t *testing.T) {
	f := newFixture(t, ccm.BackendMetalLB)
	ctx := t.Context()
	ns := newNamespace(t)
	own, err := f.editor.IP.AllocateIPContext(ctx, ipops.NewAllocateIPParams().WithBody(&wire.IPAllocateRequest{
		NetworkID: internet, ProjectID: f.project, Type: "static", Name: "ingress"}), nil)
	check(t, err)
	foreign, err := f.admin.IP.AllocateIPContext(ctx, ipops.NewAllocateIPParams().WithBody(&wire.IPAllocateRequest{
		NetworkID: internet, ProjectID: f.other, Type: "static", Tags: []string{"theirs"}}), nil)
	check(t, err)

	// The project's own address is honoured, and kept (untagged) when the service goes.
	createService(t, lbService(ns, "mine", func(s *corev1.Service) { s.Spec.LoadBalancerIP = own.Payload.Address }))
	if got := ingress(t, ns, "mine"); got != own.Payload.Address {
		t.Errorf("service mine got %s, want its loadBalancerIP %s", got, own.Payload.Address)
	}

	// Another project's address: an Event, no IP.
	createService(t, lbService(ns, "theirs", func(s *corev1.Service) { s.Spec.LoadBalancerIP = foreign.Payload.Address }))
	clienttest.WaitFor(t, 30*time.Second, "event "+ccm.ReasonIPNotOwned, func() (bool, error) {
		evs, err := env.Kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=theirs"})
		if err != nil {
			return false, err
		}
		return slices.ContainsFunc(evs.Items, func(e corev1.Event) bool {
			return e.Reason == ccm.ReasonIPNotOwned && e.Type == corev1.EventTypeWarning && strings.Contains(e.Message, foreign.Payload.Address)
		}), nil
	})
	s, err := env.Kube.CoreV1().Services(ns).Get(ctx, "theirs", metav1.GetOptions{})
	check(t, err)
	if len(s.Status.LoadBalancer.Ingress) != 0 {
		t.Errorf("service theirs has ingress %+v", s.Status.LoadBalancer.Ingress)
	}
	for _, ip := range f.clusterIPs() {
		if slices.Contains(ip.Tags, ccm.TagService+ns+"/theirs") {
			t.Errorf("ip %s is tagged for service theirs", ip.Address)
		}
	}
	if ip, err := getIP(t, f, foreign.Payload.Address); err != nil || !slices.Equal(ip.Tags, []string{"theirs"}) {
		t.Errorf("the other project's ip: %+v, %v; want it untouched", ip, err)
	}

	deleteService(t, ns, "mine")
	ip, err := getIP(t, f, own.Payload.Address)
	if err != nil {
		t.Fatalf("the project's own ip after its service was deleted: %v", err)
	}
	if slices.Contains(ip.Tags, ccm.TagService+ns+"/mine") {
		t.Errorf("the project's own ip still has the service tag: %v", ip.Tags)
	}
	deleteService(t, ns, "theirs")
}

func TestLoadBalancerCilium(t *testing.T) {
	f := newFixture(t, ccm.BackendCilium)
	m := readyNode(t, f, 1, "node-a")
	ns := newNamespace(t)
	createService(t, lbService(ns, "web"))
	addr := ingress(t, ns, "web")

	pools := lbObjects(t, ciliumPool, "")
	blocks, _, _ := unstructured.NestedSlice(pools["metal-internet"].Object, "spec", "blocks")
	if len(blocks) != 1 || blocks[0].(map[string]any)["cidr"] != addr+"/32" {
		t.Errorf("CiliumLoadBalancerIPPool metal-internet blocks %v, want [{cidr: %s/32}]", blocks, addr)
	}
	clienttest.WaitFor(t, 10*time.Second, "CiliumBGPClusterConfig of node-a", func() (bool, error) {
		_, ok := lbObjects(t, ciliumBGP, "")["node-node-a"]
		return ok, nil
	})
	bgp := lbObjects(t, ciliumBGP, "")["node-node-a"]
	inst, _, _ := unstructured.NestedSlice(bgp.Object, "spec", "bgpInstances")
	if len(inst) != 1 || inst[0].(map[string]any)["localASN"] != int64(privateNet(m).ASN) {
		t.Errorf("bgp instances %v, want one with localASN %d", inst, privateNet(m).ASN)
	}
	if _, ok := lbObjects(t, ciliumPeer, "")["metal-ccm"]; !ok {
		t.Error("no CiliumBGPPeerConfig metal-ccm")
	}
	if _, ok := lbObjects(t, ciliumAdv, "")["metal-ccm"]; !ok {
		t.Error("no CiliumBGPAdvertisement metal-ccm")
	}
	deleteService(t, ns, "web")
	if pools := lbObjects(t, ciliumPool, ""); len(pools) != 0 {
		t.Errorf("pools left: %v", slices.Collect(maps.Keys(pools)))
	}
	if ips := f.clusterIPs(); len(ips) != 0 {
		t.Errorf("ips left: %+v", ips)
	}
}

func TestServiceStorm(t *testing.T) {
	f := newFixture(t, ccm.BackendMetalLB)
	readyNode(t, f, 1, "node-a")
	ns := newNamespace(t)
	const n = 200
	r := storm(t, ns, n)
	seen := map[string]string{}
	for name, ip := range r.ips {
		if other, dup := seen[ip]; dup {
			t.Errorf("services %s and %s share %s", other, name, ip)
		}
		seen[ip] = name
	}
	if len(seen) != n {
		t.Errorf("%d distinct ips, want %d", len(seen), n)
	}
	if ips := f.clusterIPs(); len(ips) != n {
		t.Errorf("metal-api holds %d ips of the cluster, want %d", len(ips), n)
	}
	clienttest.WaitFor(t, 10*time.Second, fmt.Sprintf("%d addresses in the pool", n), func() (bool, error) {
		return len(poolAddresses(t, lbObjects(t, poolGVR, lbNS)["metal-internet"])) == n, nil
	})
	t.Logf("%d services: create → ingress p50 %v, p99 %v, max %v; %d config writes",
		n, r.percentile(50), r.percentile(99), r.percentile(100), f.cloud.ConfigWrites())

	r.deleteAll(t, ns)
	if ips := f.clusterIPs(); len(ips) != 0 {
		t.Errorf("%d ips leaked after deleting every service: %v", len(ips), ips[0].Address)
	}
	if used := usedIPs(t, f, internet); used != 0 {
		t.Errorf("network %s uses %d addresses after deleting every service, want 0", internet, used)
	}
	if pools := lbObjects(t, poolGVR, lbNS); len(pools) != 0 {
		t.Errorf("pools left: %v", slices.Collect(maps.Keys(pools)))
	}
}

func TestLoadBalancerConfigRepaired(t *testing.T) {
	f := newFixture(t, ccm.BackendMetalLB, func(c *ccm.Config) { c.HousekeepingInterval = time.Second })
	ns := newNamespace(t)
	createService(t, lbService(ns, "web"))
	addr := ingress(t, ns, "web")
	ctx := t.Context()

	// Someone deletes the pool and leaves a stray object with metal-ccm's label: the periodic full
	// write puts the pool back and prunes the stray.
	check(t, env.Dynamic.Resource(poolGVR).Namespace(lbNS).Delete(ctx, "metal-internet", metav1.DeleteOptions{}))
	stray := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
		"metadata": map[string]any{"name": "stray", "namespace": lbNS, "labels": map[string]any{ccm.LabelManagedBy: "metal-ccm"}},
		"spec":     map[string]any{"addresses": []any{"192.0.2.1/32"}},
	}}
	_, err := env.Dynamic.Resource(poolGVR).Namespace(lbNS).Create(ctx, stray, metav1.CreateOptions{})
	check(t, err)
	clienttest.WaitFor(t, 10*time.Second, "pool repaired, stray pruned", func() (bool, error) {
		pools := lbObjects(t, poolGVR, lbNS)
		p, ok := pools["metal-internet"]
		_, strayLeft := pools["stray"]
		return ok && !strayLeft && slices.Equal(poolAddresses(t, p), []string{addr + "/32"}), nil
	})

	// An IP tagged for the cluster behind metal-ccm's back (a restart lost nothing): the full write
	// re-reads metal-api and announces it too.
	extra, err := f.editor.IP.AllocateIPContext(ctx, ipops.NewAllocateIPParams().WithBody(&wire.IPAllocateRequest{
		NetworkID: internet, ProjectID: f.project, Tags: []string{ccm.TagCluster + f.cluster, ccm.TagService + ns + "/other"}}), nil)
	check(t, err)
	clienttest.WaitFor(t, 10*time.Second, "ip allocated elsewhere in the pool", func() (bool, error) {
		p := lbObjects(t, poolGVR, lbNS)["metal-internet"]
		return slices.Contains(poolAddresses(t, p), extra.Payload.Address+"/32"), nil
	})
	// The counter moves after the objects are written, so the test may see the pool a moment
	// before the write is counted.
	clienttest.WaitFor(t, 5*time.Second, "the periodic writes counted", func() (bool, error) {
		return f.cloud.ConfigWrites() >= 3, nil
	})
}
