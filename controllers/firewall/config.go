// Package firewall is the firewall-controller of a tenant cluster's firewall machine: it turns the
// firewall's allocation (pkg/api.FirewallConfig), the cluster's ClusterwideNetworkPolicies
// (metal-stack.io/v1, namespace firewall) and its Services of type LoadBalancer into one nftables
// ruleset (`table inet firewall`, pkg/nft) and keeps the kernel in step with the cluster:
//
//   - one reconciler rebuilds the whole desired ruleset from the informer caches on every change
//     (Build, a pure function that golden tests cover) and hands it to nft.Applier, which updates
//     only the sets and chains that differ, in one atomic batch;
//   - a ruleset the kernel rejects leaves the previous rules in place, marks the policies Error and
//     is retried with backoff; a policy that cannot be translated (it passed the CRD's CEL rules
//     but not the firewall's, e.g. an invalid DNS pattern) is Error and keeps the rules of its last
//     applied version (remembered in memory, so a restart drops them), the others apply;
//   - every policy gets a status (Applied with its generation, Error with the reason, Ignored when
//     it is not in namespace firewall, the latter with a Warning Event);
//   - egress rules to DNS names (toFQDNs) are served by pkg/dnsproxy: the proxy learns the
//     addresses of allowed names from the answers it relays and the controller re-applies the
//     FQDN sets whenever they change;
//   - Prometheus metrics: accepted packets/bytes per policy and service, drops, applies by result,
//     apply duration, ruleset size.
//
// Addresses are IPv4 or IPv6 (pkg/nft splits rules by family); SNAT is IPv4 only.
//
// Services: a Service of type LoadBalancer opens its status.loadBalancer.ingress IPs on its ports,
// from spec.loadBalancerSourceRanges (anywhere when empty). A Service of type NodePort is opened
// only when annotated ExposeAnnotation="true": its node ports on every node's InternalIP, from
// loadBalancerSourceRanges as well. The NodePorts of LoadBalancer Services stay closed.
//
// Without a kubeconfig the controller applies the base ruleset (tenant networks, SNAT, rate limits,
// logged drops) and keeps running.
package firewall

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/metalforge/metalforge/pkg/api"
)

// ExposeAnnotation on a Service of type NodePort opens its node ports on the firewall.
const ExposeAnnotation = "firewall.metalforge.io/expose"

// Config configures the controller. Zero values take the defaults in withDefaults.
type Config struct {
	// Firewall is the firewall's allocation, written by metal-osinit (api.FirewallConfigPath).
	Firewall api.FirewallConfig
	// Kube is the tenant cluster's API; nil means Firewall.Kubeconfig, and with that empty the
	// controller applies only the base ruleset.
	Kube *rest.Config
	// NetNSFd is the network namespace to program (0: the caller's).
	NetNSFd int
	// Registry receives the metrics; nil means a new registry (with Go and process collectors).
	Registry *prometheus.Registry
	// MetricsBindAddress serves /metrics ("" or "0": not served).
	MetricsBindAddress string
	// HealthProbeBindAddress serves /healthz and /readyz ("" or "0": not served).
	HealthProbeBindAddress string
	// DNS tunes the DNS proxy (its addresses come from Firewall.DNSListen/DNSUpstream).
	DNS DNSConfig
	// RetryMin and RetryMax bound the backoff after a failed apply (default 1s, 2m).
	RetryMin, RetryMax time.Duration
	// Resync re-applies the ruleset this often even without changes, repairing a table someone
	// else changed (default 10m).
	Resync time.Duration
	// BaseTimeout: when the cluster has not synced this long after the start and the kernel has
	// no firewall table, the base ruleset is applied meanwhile (default 30s).
	BaseTimeout time.Duration
}

// DNSConfig tunes the DNS proxy; zero values take pkg/dnsproxy's defaults.
type DNSConfig struct {
	Timeout        time.Duration
	MinTTL, MaxTTL time.Duration
}

func (c Config) withDefaults() Config {
	if c.RetryMin == 0 {
		c.RetryMin = time.Second
	}
	if c.RetryMax == 0 {
		c.RetryMax = 2 * time.Minute
	}
	if c.Resync == 0 {
		c.Resync = 10 * time.Minute
	}
	if c.BaseTimeout == 0 {
		c.BaseTimeout = 30 * time.Second
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
		c.Registry.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	}
	return c
}

// kubeConfig returns the cluster's rest.Config, or nil when the controller runs without one.
func (c Config) kubeConfig() (*rest.Config, error) {
	if c.Kube != nil {
		return c.Kube, nil
	}
	if c.Firewall.Kubeconfig == "" {
		return nil, nil
	}
	rc, err := clientcmd.BuildConfigFromFlags("", c.Firewall.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig %s: %w", c.Firewall.Kubeconfig, err)
	}
	return rc, nil
}

func (c Config) validate() error {
	if c.Firewall.ExternalInterface == "" {
		return errors.New("firewall config: no external interface")
	}
	// Everything else the base ruleset needs (tenant networks, prefixes, egress IPs, interface
	// names; nft.Ruleset.Validate checks them).
	if _, err := Build(Input{Firewall: c.Firewall}); err != nil {
		return err
	}
	return nil
}
