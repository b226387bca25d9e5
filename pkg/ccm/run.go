package ccm

import (
	"context"
	"fmt"
	"sync"
	"time"

	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	nodecontroller "k8s.io/cloud-provider/controllers/node"
	lifecyclecontroller "k8s.io/cloud-provider/controllers/nodelifecycle"
	servicecontroller "k8s.io/cloud-provider/controllers/service"
	controllersmetrics "k8s.io/component-base/metrics/prometheus/controllers"
)

// RunOptions tune the controllers Run starts. Zero values take the defaults.
type RunOptions struct {
	// ServiceWorkers is the number of Services synced at once (default 4).
	ServiceWorkers int
	// NodeWorkers is the number of Nodes initialized at once (default 2).
	NodeWorkers int32
	// NodeStatusUpdateFrequency is how often node addresses are refreshed (default 5m).
	NodeStatusUpdateFrequency time.Duration
	// NodeMonitorPeriod is how often not-ready nodes are checked against metal-api (default 5s).
	NodeMonitorPeriod time.Duration
}

func (o *RunOptions) defaults() {
	if o.ServiceWorkers == 0 {
		o.ServiceWorkers = 4
	}
	if o.NodeWorkers == 0 {
		o.NodeWorkers = 2
	}
	if o.NodeStatusUpdateFrequency == 0 {
		o.NodeStatusUpdateFrequency = 5 * time.Minute
	}
	if o.NodeMonitorPeriod == 0 {
		o.NodeMonitorPeriod = 5 * time.Second
	}
}

// Run drives the cloud in-process, without leader election, until ctx ends: the upstream service,
// cloud node and node lifecycle controllers plus housekeeping. The lab and the tests use it;
// cmd/metal-ccm gets the same controllers (and flags, leader election, /metrics) from
// k8s.io/cloud-provider/app.
func (c *Cloud) Run(ctx context.Context, restCfg *rest.Config, o RunOptions) error {
	o.defaults()
	restCfg = rest.CopyConfig(restCfg)
	if restCfg.QPS == 0 {
		// The cloud-controller-manager's defaults (--kube-api-qps, --kube-api-burst).
		restCfg.QPS, restCfg.Burst = 20, 30
	}
	kube, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(restCfg)
	if err != nil {
		return fmt.Errorf("dynamic kubernetes client: %w", err)
	}
	c.connect(kube, dyn, ctx.Done())
	f := informers.NewSharedInformerFactory(kube, 10*time.Minute)
	c.SetInformers(f)
	nodes := f.Core().V1().Nodes()
	svc, err := servicecontroller.New(c, kube, f.Core().V1().Services(), nodes, c.cfg.ClusterID, utilfeature.DefaultFeatureGate)
	if err != nil {
		return fmt.Errorf("service controller: %w", err)
	}
	node, err := nodecontroller.NewCloudNodeController(nodes, kube, c, o.NodeStatusUpdateFrequency, o.NodeWorkers, o.NodeWorkers)
	if err != nil {
		return fmt.Errorf("cloud node controller: %w", err)
	}
	life, err := lifecyclecontroller.NewCloudNodeLifecycleController(nodes, kube, c, o.NodeMonitorPeriod)
	if err != nil {
		return fmt.Errorf("node lifecycle controller: %w", err)
	}
	_, recorder, _, err := c.clients()
	if err != nil {
		return err
	}
	hk, err := c.Housekeeping(kube, nodes, recorder)
	if err != nil {
		return err
	}
	f.Start(ctx.Done())
	metrics := controllersmetrics.NewControllerManagerMetrics("metal-ccm")
	var wg sync.WaitGroup
	wg.Go(func() { svc.Run(ctx, o.ServiceWorkers, metrics) })
	wg.Go(func() { node.RunWithContext(ctx, metrics) })
	wg.Go(func() { life.Run(ctx, metrics) })
	wg.Go(func() { hk.Run(ctx) })
	c.log.Info("metal-ccm controllers started", "project", c.cfg.ProjectID, "cluster", c.cfg.ClusterID, "loadBalancer", c.cfg.LoadBalancer)
	<-ctx.Done()
	wg.Wait()
	f.Shutdown()
	return nil
}

// ConfigWrites is how many times the load balancer config was written (0 before Initialize).
func (c *Cloud) ConfigWrites() int {
	c.mu.Lock()
	lc := c.lbconfig
	c.mu.Unlock()
	if lc == nil {
		return 0
	}
	return lc.Writes()
}
