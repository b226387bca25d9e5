package firewall

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"

	"github.com/metalforge/metalforge/pkg/nft"
)

// counterReader reads the named nft counters (nft.Applier in production).
type counterReader interface {
	Counters() (map[string]nft.Counter, error)
}

// metrics are the controller's Prometheus metrics. The per-policy and per-service counters are
// read from the kernel at scrape time and labelled with the objects of the last applied plan.
type metrics struct {
	applies       *prometheus.CounterVec
	applyDuration prometheus.Histogram
	rules         prometheus.Gauge
	setElements   prometheus.Gauge
	services      prometheus.Gauge
	fqdnAddrs     prometheus.Gauge
	collector     *counterCollector
}

func newMetrics(reg prometheus.Registerer, counters counterReader) (*metrics, error) {
	m := &metrics{
		applies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "firewall_applies_total",
			Help: "Ruleset applies by result: full (table replaced), incremental (sets/chains updated), unchanged, error.",
		}, []string{"result"}),
		applyDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "firewall_apply_duration_seconds",
			Help:    "Time to build and apply the ruleset.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		rules: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "firewall_ruleset_rules",
			Help: "Policy rules (ingress + egress, flattened per peer and port) in the applied ruleset.",
		}),
		setElements: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "firewall_ruleset_set_elements",
			Help: "Elements of the applied ruleset's sets: prefixes, service addresses/ports, FQDN addresses.",
		}),
		services: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "firewall_ruleset_services",
			Help: "Service addresses opened by the applied ruleset.",
		}),
		fqdnAddrs: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "firewall_fqdn_addresses",
			Help: "Addresses in the FQDN sets of the applied ruleset.",
		}),
		collector: &counterCollector{
			reader: counters,
			policyPackets: prometheus.NewDesc("firewall_policy_accepted_packets_total",
				"Packets accepted by the rules of a ClusterwideNetworkPolicy.", []string{"namespace", "policy"}, nil),
			policyBytes: prometheus.NewDesc("firewall_policy_accepted_bytes_total",
				"Bytes accepted by the rules of a ClusterwideNetworkPolicy.", []string{"namespace", "policy"}, nil),
			servicePackets: prometheus.NewDesc("firewall_service_accepted_packets_total",
				"Packets accepted towards a Service.", []string{"namespace", "service"}, nil),
			serviceBytes: prometheus.NewDesc("firewall_service_accepted_bytes_total",
				"Bytes accepted towards a Service.", []string{"namespace", "service"}, nil),
			dropPackets: prometheus.NewDesc("firewall_dropped_packets_total",
				"Packets dropped by the forward chain's policy (rate-limit drops not included).", nil, nil),
			dropBytes: prometheus.NewDesc("firewall_dropped_bytes_total",
				"Bytes dropped by the forward chain's policy.", nil, nil),
			errors: prometheus.NewDesc("firewall_counter_read_errors_total",
				"Failed reads of the nftables counters at scrape time.", nil, nil),
		},
	}
	for _, c := range []prometheus.Collector{m.applies, m.applyDuration, m.rules, m.setElements, m.services, m.fqdnAddrs, m.collector} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, r := range []string{"full", "incremental", "unchanged", "error"} {
		m.applies.WithLabelValues(r)
	}
	return m, nil
}

// applied records the size of a ruleset that is now in the kernel and the object names of its
// counters.
func (m *metrics) applied(p *Plan) {
	rs := p.Ruleset
	m.rules.Set(float64(len(rs.Ingress) + len(rs.Egress)))
	m.services.Set(float64(len(rs.Services)))
	elems, fqdn := 0, 0
	for _, n := range rs.Networks {
		elems += len(n.Prefixes)
	}
	for _, rules := range [][]nft.Rule{rs.Ingress, rs.Egress} {
		for _, r := range rules {
			elems += len(r.CIDRs) + len(r.Except)
		}
	}
	for _, s := range rs.Services {
		elems += len(s.Ports) + len(s.SourceRanges)
	}
	for _, f := range rs.FQDNSets {
		fqdn += len(f.IPs)
	}
	m.setElements.Set(float64(elems + fqdn))
	m.fqdnAddrs.Set(float64(fqdn))
	m.collector.setNames(p.PolicyCounters, p.ServiceCounters)
}

type counterCollector struct {
	reader                                                   counterReader
	policyPackets, policyBytes, servicePackets, serviceBytes *prometheus.Desc
	dropPackets, dropBytes, errors                           *prometheus.Desc

	mu       sync.Mutex
	policies map[string]types.NamespacedName
	services map[string]types.NamespacedName
	failed   float64
}

func (c *counterCollector) setNames(policies, services map[string]types.NamespacedName) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.policies, c.services = policies, services
}

func (c *counterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.policyPackets, c.policyBytes, c.servicePackets, c.serviceBytes, c.dropPackets, c.dropBytes, c.errors} {
		ch <- d
	}
}

func (c *counterCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.policies == nil && c.services == nil {
		ch <- prometheus.MustNewConstMetric(c.errors, prometheus.CounterValue, c.failed)
		return // nothing applied yet
	}
	counters, err := c.reader.Counters()
	if err != nil {
		c.failed++
		ch <- prometheus.MustNewConstMetric(c.errors, prometheus.CounterValue, c.failed)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.errors, prometheus.CounterValue, c.failed)
	if d, ok := counters[nft.DropCounter]; ok {
		ch <- prometheus.MustNewConstMetric(c.dropPackets, prometheus.CounterValue, float64(d.Packets))
		ch <- prometheus.MustNewConstMetric(c.dropBytes, prometheus.CounterValue, float64(d.Bytes))
	}
	// A policy has one counter; a Service may have several (one per address), summed.
	emit := func(names map[string]types.NamespacedName, packets, bytes *prometheus.Desc) {
		sum := map[types.NamespacedName]nft.Counter{}
		for n, k := range names {
			v, ok := counters[n]
			if !ok {
				continue
			}
			s := sum[k]
			s.Packets += v.Packets
			s.Bytes += v.Bytes
			sum[k] = s
		}
		for k, v := range sum {
			ch <- prometheus.MustNewConstMetric(packets, prometheus.CounterValue, float64(v.Packets), k.Namespace, k.Name)
			ch <- prometheus.MustNewConstMetric(bytes, prometheus.CounterValue, float64(v.Bytes), k.Namespace, k.Name)
		}
	}
	emit(c.policies, c.policyPackets, c.policyBytes)
	emit(c.services, c.servicePackets, c.serviceBytes)
}
