package firewall

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	fwv1 "github.com/metalforge/metalforge/pkg/apis/firewall/v1"
	"github.com/metalforge/metalforge/pkg/nft"
)

// Controller keeps the firewall's nftables in step with the cluster. Create it with New.
type Controller struct {
	cfg     Config
	log     *slog.Logger
	applier *nft.Applier
	metrics *metrics
	fqdn    *fqdn // nil without a DNS proxy
	ready   atomic.Bool

	metricsAddr, healthAddr atomic.Pointer[net.Addr]

	mu   sync.Mutex // serialises apply
	last *Plan      // the plan in the kernel; nil before the first successful apply
	// good are the policy versions whose rules are in the kernel (Input.LastGood).
	good map[types.NamespacedName]fwv1.ClusterwideNetworkPolicy
}

// Run creates a controller for cfg and runs it until ctx is done.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	c, err := New(cfg, log)
	if err != nil {
		return err
	}
	return c.Run(ctx)
}

// New validates cfg and prepares a controller (nothing runs yet).
func New(cfg Config, log *slog.Logger) (*Controller, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Controller{cfg: cfg, log: log, applier: nft.NewApplier(nft.Config{NetNSFd: cfg.NetNSFd})}
	m, err := newMetrics(cfg.Registry, c.applier)
	if err != nil {
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	c.metrics = m
	if cfg.Firewall.DNSListen != "" {
		if c.fqdn, err = newFQDN(cfg, log); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Run serves metrics and health probes, runs the DNS proxy and keeps the ruleset applied until
// ctx is done. Without a cluster it applies the base ruleset only.
func (c *Controller) Run(ctx context.Context) error {
	defer c.applier.Close()
	kube, err := c.cfg.kubeConfig()
	if err != nil {
		return err
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return serveHTTP(ctx, c.cfg.MetricsBindAddress, c.metricsHandler(), c.log, &c.metricsAddr)
	})
	g.Go(func() error {
		return serveHTTP(ctx, c.cfg.HealthProbeBindAddress, c.healthHandler(), c.log, &c.healthAddr)
	})
	if c.fqdn != nil {
		g.Go(func() error { return c.fqdn.proxy.Run(ctx) })
	}
	if kube == nil {
		c.log.Info("no kubeconfig, applying the base ruleset only")
		g.Go(func() error { return c.runBase(ctx) })
	} else {
		g.Go(func() error { return c.runCluster(ctx, kube) })
	}
	return g.Wait()
}

// runCluster runs the manager, and a new one with backoff whenever it fails (e.g. the cluster
// was unreachable for longer than the cache sync timeout), until ctx is done. If no ruleset was
// applied within BaseTimeout and the kernel holds no firewall table (a fresh boot), it applies
// the base ruleset meanwhile; a table left by an earlier run stays untouched until the cluster
// answers.
func (c *Controller) runCluster(ctx context.Context, kube *rest.Config) error {
	go c.baseFallback(ctx)
	delay := c.cfg.RetryMin
	for {
		err := c.runManager(ctx, kube)
		if ctx.Err() != nil {
			return nil
		}
		c.log.Error("run controller, retrying", "err", err, "retryIn", delay)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		delay = min(2*delay, c.cfg.RetryMax)
	}
}

func (c *Controller) baseFallback(ctx context.Context) {
	t := time.NewTimer(c.cfg.BaseTimeout)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return
	case <-t.C:
	}
	c.mu.Lock()
	applied := c.last != nil
	c.mu.Unlock()
	if applied {
		return
	}
	// Every table of ours has the drop counter; no counters means no table.
	if counters, err := c.applier.Counters(); err == nil && len(counters) > 0 {
		c.log.Warn("cluster not synced yet, keeping the ruleset in the kernel", "after", c.cfg.BaseTimeout)
		return
	}
	c.log.Warn("cluster not synced yet, applying the base ruleset", "after", c.cfg.BaseTimeout)
	if _, err := c.applyIfFirst(Input{Firewall: c.cfg.Firewall}); err != nil {
		c.log.Error("apply base ruleset", "err", err)
	}
}

// runBase applies the base ruleset (and FQDN sets) and re-applies it on resync, retrying failures
// with backoff.
func (c *Controller) runBase(ctx context.Context) error {
	var changed <-chan struct{}
	if c.fqdn != nil {
		changed = c.fqdn.proxy.Changed()
	}
	delay := c.cfg.RetryMin
	for {
		next := c.cfg.Resync
		if _, err := c.apply(Input{Firewall: c.cfg.Firewall}); err != nil {
			c.log.Error("apply base ruleset", "err", err, "retryIn", delay)
			next, delay = delay, min(2*delay, c.cfg.RetryMax)
		} else {
			delay = c.cfg.RetryMin
		}
		t := time.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-changed:
		case <-t.C:
		}
		t.Stop()
	}
}

func (c *Controller) runManager(ctx context.Context, kube *rest.Config) error {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return fmt.Errorf("build scheme: %w", err)
	}
	if err := fwv1.AddToScheme(scheme); err != nil {
		return fmt.Errorf("build scheme: %w", err)
	}
	mgr, err := manager.New(kube, manager.Options{
		Scheme:                 scheme,
		Logger:                 logr.FromSlogHandler(c.log.Handler()),
		Metrics:                metricsserver.Options{BindAddress: "0"}, // served by serveHTTP
		HealthProbeBindAddress: "0",
	})
	if err != nil {
		return fmt.Errorf("create manager: %w", err)
	}
	r := &reconciler{c: c, client: mgr.GetClient(), events: mgr.GetEventRecorder("firewall-controller")}
	all := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{{}} // one work item: every change rebuilds the whole ruleset
	})
	b := ctrl.NewControllerManagedBy(mgr).
		Named("firewall").
		WithOptions(controller.Options{
			MaxConcurrentReconciles: 1,
			// Several controllers may run in one process (tests, the lab); the metric names
			// stay ours.
			SkipNameValidation: ptr(true),
			RateLimiter:        workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](c.cfg.RetryMin, c.cfg.RetryMax),
		}).
		// Status patches don't change the generation and need no rebuild.
		Watches(&fwv1.ClusterwideNetworkPolicy{}, all, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.Service{}, all).
		Watches(&corev1.Node{}, all, builder.WithPredicates(nodeAddressesChanged()))
	if c.fqdn != nil {
		ch := make(chan event.GenericEvent)
		go c.fqdn.forward(ctx, ch)
		b = b.WatchesRawSource(source.Channel(ch, all))
	}
	if err := b.Complete(r); err != nil {
		return fmt.Errorf("create controller: %w", err)
	}
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("run manager: %w", err)
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

// nodeAddressesChanged passes node events except updates that leave the addresses alone (node
// status heartbeats).
func nodeAddressesChanged() predicate.Predicate {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		o, ok1 := e.ObjectOld.(*corev1.Node)
		n, ok2 := e.ObjectNew.(*corev1.Node)
		if !ok1 || !ok2 || len(o.Status.Addresses) != len(n.Status.Addresses) {
			return true
		}
		for i := range o.Status.Addresses {
			if o.Status.Addresses[i] != n.Status.Addresses[i] {
				return true
			}
		}
		return false
	}}
}

// applyIfFirst applies in unless a ruleset was applied already (by the reconciler).
func (c *Controller) applyIfFirst(in Input) (*Plan, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last != nil {
		return c.last, nil
	}
	return c.applyLocked(in)
}

// apply builds the ruleset from in (plus the FQDN sets) and installs it. It returns the plan;
// on error the kernel keeps the previous ruleset.
func (c *Controller) apply(in Input) (*Plan, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.applyLocked(in)
}

func (c *Controller) applyLocked(in Input) (*Plan, error) {
	begin := time.Now()
	if c.fqdn != nil {
		in.FQDN = c.fqdn.proxy.Sets()
	}
	in.LastGood = c.good
	p, err := Build(in)
	if err != nil {
		c.metrics.applies.WithLabelValues("error").Inc()
		return nil, fmt.Errorf("build ruleset: %w", err)
	}
	if c.fqdn != nil {
		if err := c.fqdn.setSelectors(p.Selectors); err != nil {
			c.metrics.applies.WithLabelValues("error").Inc()
			return p, err
		}
	}
	res, err := c.applier.Apply(p.Ruleset)
	took := time.Since(begin)
	c.metrics.applyDuration.Observe(took.Seconds())
	if err != nil {
		c.metrics.applies.WithLabelValues("error").Inc()
		return p, fmt.Errorf("apply ruleset: %w", err)
	}
	result := "unchanged"
	switch {
	case res.Full:
		result = "full"
	case res.Sets > 0 || res.Chains > 0:
		result = "incremental"
	}
	c.metrics.applies.WithLabelValues(result).Inc()
	c.metrics.applied(p)
	c.last = p
	c.good = goodPolicies(in.Policies, p)
	c.ready.Store(true)
	if result != "unchanged" {
		c.log.Info("ruleset applied", "result", result, "sets", res.Sets, "chains", res.Chains,
			"rules", len(p.Ruleset.Ingress)+len(p.Ruleset.Egress), "services", len(p.Ruleset.Services), "took", took)
	}
	return p, nil
}

// goodPolicies are the versions of the policies whose rules are in the kernel after p is applied.
func goodPolicies(pols []fwv1.ClusterwideNetworkPolicy, p *Plan) map[types.NamespacedName]fwv1.ClusterwideNetworkPolicy {
	good := map[types.NamespacedName]fwv1.ClusterwideNetworkPolicy{}
	for i := range pols {
		k := key(&pols[i])
		switch o := p.Policies[k]; {
		case o.State == fwv1.StateApplied:
			good[k] = *pols[i].DeepCopy()
		case o.Kept != nil:
			good[k] = *o.Kept
		}
	}
	return good
}

// reconciler rebuilds the ruleset from the cache and writes the policies' statuses.
type reconciler struct {
	c      *Controller
	client client.Client
	events events.EventRecorder
}

func (r *reconciler) Reconcile(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
	in := Input{Firewall: r.c.cfg.Firewall}
	var pols fwv1.ClusterwideNetworkPolicyList
	if err := r.client.List(ctx, &pols); err != nil {
		return reconcile.Result{}, fmt.Errorf("list policies: %w", err)
	}
	var svcs corev1.ServiceList
	if err := r.client.List(ctx, &svcs); err != nil {
		return reconcile.Result{}, fmt.Errorf("list services: %w", err)
	}
	var nodes corev1.NodeList
	if err := r.client.List(ctx, &nodes); err != nil {
		return reconcile.Result{}, fmt.Errorf("list nodes: %w", err)
	}
	in.Policies, in.Services, in.Nodes = pols.Items, svcs.Items, nodes.Items

	p, applyErr := r.c.apply(in)
	statusErr := r.writeStatus(ctx, pols.Items, p, applyErr)
	if applyErr != nil {
		// controller-runtime logs the error and retries with backoff.
		return reconcile.Result{}, errors.Join(applyErr, statusErr)
	}
	if statusErr != nil {
		return reconcile.Result{}, statusErr
	}
	return reconcile.Result{RequeueAfter: r.c.cfg.Resync}, nil
}
