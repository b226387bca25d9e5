// Package ccm is metalforge's cloud provider for Kubernetes (k8s.io/cloud-provider): the
// metal-ccm of a tenant cluster. InstancesV2 maps Nodes to metal-api machines (providerID
// metal://<partition>/<machine-id>, zone = partition, instance type = size, addresses from the
// allocation's networks); LoadBalancer allocates Service IPs from metal-api in the cluster's project
// and writes the BGP announcement config for MetalLB or Cilium; housekeeping keeps node labels in
// step with the machines and the machines' tags in step with the nodes.
//
// The upstream service, node and node-lifecycle controllers drive the interfaces: cmd/metal-ccm
// runs them through k8s.io/cloud-provider/app (flags, leader election, /metrics), Run starts them
// in-process for tests and the lab.
package ccm

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	cloudprovider "k8s.io/cloud-provider"

	"github.com/metalforge/metalforge/pkg/providerid"
)

// ProviderName is the name of the cloud provider (--cloud-provider) and the scheme of provider IDs.
const ProviderName = providerid.Provider

// Load balancer config backends.
const (
	BackendMetalLB = "metallb"
	BackendCilium  = "cilium"
	BackendNone    = "none"
)

// Tags on metal-api IPs, labels and annotations on Kubernetes objects.
const (
	// TagCluster prefixes the cluster tag of IPs (and machines): cluster.metalforge.io/id=<cluster>.
	TagCluster = "cluster.metalforge.io/id="
	// TagService prefixes the service tag of IPs: service=<namespace>/<name>.
	TagService = "service="
	// AnnotationNetwork on a Service names the metal-api network its IP comes from.
	AnnotationNetwork = "lb.metalforge.io/network"
	// Node labels kept in step with the machine.
	LabelASN       = "machine.metalforge.io/asn"
	LabelRack      = "machine.metalforge.io/rack"
	LabelSize      = "machine.metalforge.io/size"
	LabelPartition = "machine.metalforge.io/partition"
	// DefaultNodeTagPrefix starts the node labels that become machine tags (Config.NodeTagPrefix).
	DefaultNodeTagPrefix = "tag.metalforge.io/"
	// LabelManagedBy marks the load balancer config objects metal-ccm owns (and prunes).
	LabelManagedBy = "app.kubernetes.io/managed-by"
	managedBy      = "metal-ccm"
)

// Cloud implements cloudprovider.Interface (with InstancesV2 and LoadBalancer) and
// cloudprovider.InformerUser.
type Cloud struct {
	cfg   Config
	log   logr.Logger
	metal *metal

	// Set by Initialize and SetInformers, once, before the controllers start.
	mu       sync.Mutex
	kube     kubernetes.Interface
	recorder record.EventRecorder
	informer informers.SharedInformerFactory
	lbconfig *lbConfig
}

var (
	_ cloudprovider.Interface    = (*Cloud)(nil)
	_ cloudprovider.InformerUser = (*Cloud)(nil)
)

// New returns the cloud provider; Initialize connects it to Kubernetes.
func New(cfg Config, log logr.Logger) (*Cloud, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("metal-ccm config: %w", err)
	}
	m, err := newMetal(cfg)
	if err != nil {
		return nil, err
	}
	return &Cloud{cfg: cfg, log: log, metal: m}, nil
}

// Initialize is called by the controller manager once it leads: it builds the Kubernetes clients
// and starts the writer of the load balancer config.
func (c *Cloud) Initialize(cb cloudprovider.ControllerClientBuilder, stop <-chan struct{}) {
	restCfg, err := cb.Config("metal-ccm")
	if err != nil {
		c.log.Error(err, "no kubernetes client config; metal-ccm can't work")
		return
	}
	kube, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		c.log.Error(err, "no kubernetes client; metal-ccm can't work")
		return
	}
	dyn, err := dynamic.NewForConfig(restCfg)
	if err != nil {
		c.log.Error(err, "no dynamic kubernetes client; metal-ccm can't work")
		return
	}
	c.connect(kube, dyn, stop)
}

// connect wires the clients (Initialize, and Run's in-process mode).
func (c *Cloud) connect(kube kubernetes.Interface, dyn dynamic.Interface, stop <-chan struct{}) {
	b := record.NewBroadcaster()
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	go func() {
		<-stop
		b.Shutdown()
	}()
	lc := newLBConfig(c.cfg, dyn, c.metal, c.listNodes, c.log.WithName("lbconfig"))
	c.mu.Lock()
	c.kube, c.lbconfig = kube, lc
	c.recorder = b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "metal-ccm"})
	c.mu.Unlock()
	go lc.run(stop)
}

// SetInformers receives the controller manager's shared informers (before they start). A node
// that starts or stops announcing (ASN label, hostname, exclusion, deletion) asks for a config write.
func (c *Cloud) SetInformers(f informers.SharedInformerFactory) {
	c.mu.Lock()
	c.informer = f
	lc := c.lbconfig
	c.mu.Unlock()
	if lc == nil {
		return
	}
	changed := func(old, cur any) {
		o, _ := old.(*corev1.Node)
		n, _ := cur.(*corev1.Node)
		var po, pn peer
		var oko, okn bool
		if o != nil {
			po, oko = peerOf(o)
		}
		if n != nil {
			pn, okn = peerOf(n)
		}
		if oko != okn || po != pn {
			lc.request()
		}
	}
	_, err := f.Core().V1().Nodes().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(cur any) { changed(nil, cur) },
		UpdateFunc: changed,
		DeleteFunc: func(old any) {
			if d, ok := old.(cache.DeletedFinalStateUnknown); ok {
				old = d.Obj
			}
			changed(old, nil)
		},
	})
	if err != nil {
		c.log.Error(err, "watching nodes for the load balancer config failed")
	}
}

// listNodes reads the nodes from the shared informer once it has synced, from the API before.
func (c *Cloud) listNodes(ctx context.Context) ([]*corev1.Node, error) {
	c.mu.Lock()
	f, kube := c.informer, c.kube
	c.mu.Unlock()
	if f != nil {
		if inf := f.Core().V1().Nodes(); inf.Informer().HasSynced() {
			return inf.Lister().List(labels.Everything())
		}
	}
	l, err := kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	out := make([]*corev1.Node, len(l.Items))
	for i := range l.Items {
		out[i] = &l.Items[i]
	}
	return out, nil
}

func (c *Cloud) clients() (kubernetes.Interface, record.EventRecorder, *lbConfig, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.kube == nil {
		return nil, nil, nil, errors.New("metal-ccm is not initialized")
	}
	return c.kube, c.recorder, c.lbconfig, nil
}

// LoadBalancer returns the Service load balancer implementation.
func (c *Cloud) LoadBalancer() (cloudprovider.LoadBalancer, bool) { return &loadBalancer{c}, true }

// InstancesV2 returns the node implementation.
func (c *Cloud) InstancesV2() (cloudprovider.InstancesV2, bool) { return &instances{c}, true }

// Instances is the legacy interface; InstancesV2 replaces it.
func (c *Cloud) Instances() (cloudprovider.Instances, bool) { return nil, false }

// Zones is deprecated in favour of InstancesV2's metadata.
func (c *Cloud) Zones() (cloudprovider.Zones, bool) { return nil, false }

// Clusters is not supported.
func (c *Cloud) Clusters() (cloudprovider.Clusters, bool) { return nil, false }

// Routes are not needed: every node routes its pod CIDR itself (BGP on the host).
func (c *Cloud) Routes() (cloudprovider.Routes, bool) { return nil, false }

// ProviderName is "metal".
func (c *Cloud) ProviderName() string { return ProviderName }

// HasClusterID is true: the cluster ID tags every IP.
func (c *Cloud) HasClusterID() bool { return c.cfg.ClusterID != "" }
