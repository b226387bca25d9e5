package ccm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/metalforge/metalforge/pkg/client/wire"
)

// lbState is what the announcement config is rendered from: the cluster's Service IPs per network
// and the nodes with their ASNs.
type lbState struct {
	// Pools maps a metal-api network to its addresses, sorted.
	Pools map[string][]netip.Addr
	// Peers are the nodes that announce, sorted by name.
	Peers []peer
}

type peer struct {
	Node     string // Node name
	Hostname string // value of the node's kubernetes.io/hostname label
	ASN      uint32
}

// kind is one resource type a backend writes.
type kind struct {
	gvr        schema.GroupVersionResource
	kind       string
	namespaced bool
}

// backend renders the desired objects of a load balancer implementation.
type backend struct {
	kinds  []kind
	render func(cfg Config, st lbState) []*unstructured.Unstructured
}

func backendFor(name string) (backend, bool) {
	switch name {
	case BackendMetalLB:
		return metalLBBackend(), true
	case BackendCilium:
		return ciliumBackend(), true
	}
	return backend{}, false
}

// lbConfig writes the backend's objects from one goroutine. sync asks for a write that starts after
// the call and waits for it: concurrent service workers share writes, and every write renders the
// whole current state, so no worker's change is lost to another's.
type lbConfig struct {
	cfg   Config
	dyn   dynamic.Interface
	metal *metal
	log   logr.Logger
	be    backend
	on    bool
	cache *ipCache
	nodes func(context.Context) ([]*corev1.Node, error)

	kick chan struct{}

	mu      sync.Mutex
	want    uint64        // generation last asked for
	done    uint64        // generation last written (or failed)
	lastErr error         // result of the write of generation done
	changed chan struct{} // closed and replaced after every write
	writes  int

	// Owned by the writer goroutine: what the last successful write applied, by resource/namespace/name.
	written map[string]applied
}

// applied is an object as last written.
type applied struct {
	gvr       schema.GroupVersionResource
	namespace string
	name      string
	content   string
}

func newLBConfig(cfg Config, dyn dynamic.Interface, m *metal,
	nodes func(context.Context) ([]*corev1.Node, error), log logr.Logger) *lbConfig {
	be, on := backendFor(cfg.LoadBalancer)
	return &lbConfig{cfg: cfg, dyn: dyn, metal: m, nodes: nodes, log: log, be: be, on: on,
		cache: newIPCache(), kick: make(chan struct{}, 1), changed: make(chan struct{})}
}

// noted records an IP the load balancer gave a Service, forgot one it let go.
func (l *lbConfig) noted(ip *wire.IP) {
	if a, err := netip.ParseAddr(ip.Address); err == nil {
		l.cache.set(a, ip.NetworkID)
	}
}

func (l *lbConfig) forgot(ip *wire.IP) {
	if a, err := netip.ParseAddr(ip.Address); err == nil {
		l.cache.drop(a)
	}
}

// request asks for a write and returns its generation without waiting.
func (l *lbConfig) request() uint64 {
	l.mu.Lock()
	l.want++
	gen := l.want
	l.mu.Unlock()
	select {
	case l.kick <- struct{}{}:
	default:
	}
	return gen
}

// sync returns once a write that started after the call finished, with its error.
func (l *lbConfig) sync(ctx context.Context) error {
	if !l.on {
		return nil
	}
	gen := l.request()
	for {
		l.mu.Lock()
		done, err, ch := l.done, l.lastErr, l.changed
		l.mu.Unlock()
		if done >= gen {
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for the load balancer config: %w", ctx.Err())
		}
	}
}

// run writes on demand and every HousekeepingInterval (to repair drift) until stop.
func (l *lbConfig) run(stop <-chan struct{}) {
	if !l.on {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-stop
		cancel()
	}()
	tick := time.NewTicker(l.cfg.HousekeepingInterval)
	defer tick.Stop()
	for {
		full := false
		select {
		case <-ctx.Done():
			return
		case <-l.kick:
		case <-tick.C:
			full = true
		}
		l.mu.Lock()
		gen := l.want
		l.mu.Unlock()
		wctx, wcancel := context.WithTimeout(ctx, time.Minute)
		err := l.write(wctx, full)
		wcancel()
		if err != nil {
			l.log.Error(err, "writing the load balancer config failed")
		}
		l.mu.Lock()
		l.done, l.lastErr = gen, err
		l.writes++
		close(l.changed)
		l.changed = make(chan struct{})
		l.mu.Unlock()
	}
}

// Writes is the number of config writes so far (for tests and benchmarks).
func (l *lbConfig) Writes() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.writes
}

// state is the cluster's Service IPs (from the cache, refreshed from metal-api when full or never
// loaded) and the nodes with an ASN label.
func (l *lbConfig) state(ctx context.Context, full bool) (lbState, error) {
	st := lbState{}
	if _, loaded := l.cache.pools(); full || !loaded {
		start := l.cache.begin()
		ips, err := l.metal.clusterIPs(ctx)
		if err != nil {
			return st, err
		}
		listed := map[netip.Addr]string{}
		for _, ip := range ips {
			a, err := netip.ParseAddr(ip.Address)
			if err != nil {
				return st, fmt.Errorf("ip %q of metal-api: %w", ip.Address, err)
			}
			listed[a] = ip.NetworkID
		}
		l.cache.replace(start, listed)
	}
	st.Pools, _ = l.cache.pools()
	for _, as := range st.Pools {
		slices.SortFunc(as, func(a, b netip.Addr) int { return a.Compare(b) })
	}
	nodes, err := l.nodes(ctx)
	if err != nil {
		return st, fmt.Errorf("list nodes: %w", err)
	}
	for _, n := range nodes {
		if p, ok := peerOf(n); ok {
			st.Peers = append(st.Peers, p)
		}
	}
	slices.SortFunc(st.Peers, func(a, b peer) int { return strings.Compare(a.Node, b.Node) })
	return st, nil
}

// peerOf: nodes announce when they carry an ASN, are not being deleted and are not excluded from
// load balancers.
func peerOf(n *corev1.Node) (peer, bool) {
	if n.DeletionTimestamp != nil {
		return peer{}, false
	}
	if v, ok := n.Labels[corev1.LabelNodeExcludeBalancers]; ok {
		if excluded, err := strconv.ParseBool(v); err != nil || excluded {
			return peer{}, false
		}
	}
	asn, err := strconv.ParseUint(n.Labels[LabelASN], 10, 32)
	if err != nil || asn == 0 {
		return peer{}, false
	}
	host := n.Labels[corev1.LabelHostname]
	if host == "" {
		host = n.Name
	}
	return peer{Node: n.Name, Hostname: host, ASN: uint32(asn)}, true
}

// write applies the rendered objects with server-side apply and deletes the ones metal-ccm wrote
// before that are no longer wanted. A quick write (after a Service changed) skips the objects that
// are as last written and deletes only what it wrote itself; a full one (periodic) re-reads
// metal-api, applies everything and prunes by label, which repairs any drift.
func (l *lbConfig) write(ctx context.Context, full bool) error {
	st, err := l.state(ctx, full)
	if err != nil {
		return fmt.Errorf("load balancer config: %w", err)
	}
	last := l.written
	l.written = nil // until this write succeeds: the next one applies everything
	want := map[string]applied{}
	for _, o := range l.be.render(l.cfg, st) {
		gvr, ns, err := l.resourceOf(o)
		if err != nil {
			return err
		}
		content, err := json.Marshal(o.Object)
		if err != nil {
			return fmt.Errorf("encode %s %s: %w", o.GetKind(), o.GetName(), err)
		}
		key := gvr.Resource + "/" + ns + "/" + o.GetName()
		a := applied{gvr: gvr, namespace: ns, name: o.GetName(), content: string(content)}
		want[key] = a
		if prev, ok := last[key]; ok && !full && prev.content == a.content {
			continue
		}
		if _, err := l.dyn.Resource(gvr).Namespace(ns).Apply(ctx, o.GetName(), o,
			metav1.ApplyOptions{FieldManager: managedBy, Force: true}); err != nil {
			return fmt.Errorf("apply %s %s: %w", o.GetKind(), o.GetName(), err)
		}
	}
	stale := map[string]applied{}
	if full || last == nil {
		if err := l.listManaged(ctx, stale); err != nil {
			return err
		}
	} else {
		maps.Copy(stale, last)
	}
	var errs []error
	for key, a := range stale {
		if _, ok := want[key]; ok {
			continue
		}
		err := l.dyn.Resource(a.gvr).Namespace(a.namespace).Delete(ctx, a.name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete %s %s: %w", a.gvr.Resource, a.name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	l.written = want
	return nil
}

// listManaged adds every object of the backend's kinds that carries metal-ccm's label.
func (l *lbConfig) listManaged(ctx context.Context, into map[string]applied) error {
	for _, k := range l.be.kinds {
		ns := ""
		if k.namespaced {
			ns = l.cfg.Namespace
		}
		list, err := l.dyn.Resource(k.gvr).Namespace(ns).List(ctx, metav1.ListOptions{LabelSelector: LabelManagedBy + "=" + managedBy})
		if err != nil {
			return fmt.Errorf("list %s: %w", k.gvr.Resource, err)
		}
		for _, o := range list.Items {
			into[k.gvr.Resource+"/"+ns+"/"+o.GetName()] = applied{gvr: k.gvr, namespace: ns, name: o.GetName()}
		}
	}
	return nil
}

func (l *lbConfig) resourceOf(o *unstructured.Unstructured) (schema.GroupVersionResource, string, error) {
	gv, err := schema.ParseGroupVersion(o.GetAPIVersion())
	if err != nil {
		return schema.GroupVersionResource{}, "", fmt.Errorf("object %s: %w", o.GetName(), err)
	}
	for _, k := range l.be.kinds {
		if k.gvr.GroupVersion() == gv && k.kind == o.GetKind() {
			return k.gvr, o.GetNamespace(), nil
		}
	}
	return schema.GroupVersionResource{}, "", fmt.Errorf("object %s: kind %s %s is not one the backend writes", o.GetName(), o.GetAPIVersion(), o.GetKind())
}

// objectName makes a Kubernetes object name from a prefix and a free-form ID (network, node): the
// lower-cased ID when it is a valid DNS label, otherwise a hash of it.
func objectName(prefix, id string) string {
	clean := strings.ToLower(id)
	valid := len(prefix)+len(clean) <= 63 && clean != ""
	for _, r := range clean {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			valid = false
			break
		}
	}
	if valid && !strings.HasSuffix(clean, "-") {
		return prefix + clean
	}
	sum := sha256.Sum256([]byte(id))
	return prefix + hex.EncodeToString(sum[:])[:16]
}

// hostPrefix is an address as a host route: /32 or /128.
func hostPrefix(a netip.Addr) string { return netip.PrefixFrom(a, a.BitLen()).String() }

// obj builds an unstructured object with the managed-by label.
func obj(apiVersion, kindName, namespace, name string, labels map[string]any, spec map[string]any) *unstructured.Unstructured {
	l := map[string]any{LabelManagedBy: managedBy}
	for k, v := range labels {
		l[k] = v
	}
	meta := map[string]any{"name": name, "labels": l}
	if namespace != "" {
		meta["namespace"] = namespace
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": apiVersion, "kind": kindName, "metadata": meta, "spec": spec,
	}}
}
