package ccm

import (
	"context"
	"errors"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/record"
	cloudprovider "k8s.io/cloud-provider"

	"github.com/metalforge/metalforge/pkg/client/wire"
)

// TagAllocated marks the IPs metal-ccm allocated itself: only those are released when their Service
// goes; an address the project brought (spec.loadBalancerIP) is only untagged.
const TagAllocated = "lb.metalforge.io/allocated-by=metal-ccm"

// Event reasons on Services.
const (
	ReasonIPNotOwned = "LoadBalancerIPNotOwned"
	ReasonIPInUse    = "LoadBalancerIPInUse"
	ReasonNoNetwork  = "LoadBalancerNoNetwork"
)

// loadBalancer implements cloudprovider.LoadBalancer: one metal-api IP per Service, announced by the
// configured backend.
type loadBalancer struct{ c *Cloud }

func serviceKey(svc *corev1.Service) string { return svc.Namespace + "/" + svc.Name }

func status(ips []*wire.IP) *corev1.LoadBalancerStatus {
	st := &corev1.LoadBalancerStatus{}
	for _, ip := range ips {
		st.Ingress = append(st.Ingress, corev1.LoadBalancerIngress{IP: ip.Address})
	}
	return st
}

// GetLoadBalancer reports the Service's IP, if it has one.
func (lb *loadBalancer) GetLoadBalancer(ctx context.Context, _ string, svc *corev1.Service) (*corev1.LoadBalancerStatus, bool, error) {
	ips, err := lb.c.metal.serviceIPs(ctx, TagService+serviceKey(svc))
	if err != nil || len(ips) == 0 {
		return nil, false, err
	}
	return status(ips), true, nil
}

// GetLoadBalancerName is the upstream default (a, plus the Service's UID without dashes).
func (lb *loadBalancer) GetLoadBalancerName(_ context.Context, _ string, svc *corev1.Service) string {
	return cloudprovider.DefaultLoadBalancerName(svc)
}

// EnsureLoadBalancer gives the Service an IP (its own from before, the requested one if the project
// owns it, or a new one) and returns once the announcement config lists it.
func (lb *loadBalancer) EnsureLoadBalancer(ctx context.Context, _ string, svc *corev1.Service, _ []*corev1.Node) (*corev1.LoadBalancerStatus, error) {
	_, recorder, lc, err := lb.c.clients()
	if err != nil {
		return nil, err
	}
	ip, err := lb.ensureIP(ctx, svc, recorder, lc)
	if err != nil {
		return nil, fmt.Errorf("service %s: %w", serviceKey(svc), err)
	}
	if err := lc.sync(ctx); err != nil {
		return nil, fmt.Errorf("service %s: %w", serviceKey(svc), err)
	}
	return status([]*wire.IP{ip}), nil
}

// UpdateLoadBalancer runs when the set of nodes changes: the per-node BGP peers follow.
func (lb *loadBalancer) UpdateLoadBalancer(ctx context.Context, _ string, _ *corev1.Service, _ []*corev1.Node) error {
	_, _, lc, err := lb.c.clients()
	if err != nil {
		return err
	}
	return lc.sync(ctx)
}

// EnsureLoadBalancerDeleted releases the addresses metal-ccm allocated for the Service and untags the
// ones the project brought.
func (lb *loadBalancer) EnsureLoadBalancerDeleted(ctx context.Context, _ string, svc *corev1.Service) error {
	_, _, lc, err := lb.c.clients()
	if err != nil {
		return err
	}
	ips, err := lb.c.metal.serviceIPs(ctx, TagService+serviceKey(svc))
	if err != nil {
		return err
	}
	for _, ip := range ips {
		if err := lb.letGo(ctx, ip, lc); err != nil {
			return fmt.Errorf("service %s: %w", serviceKey(svc), err)
		}
	}
	return lc.sync(ctx)
}

// letGo releases an IP metal-ccm allocated, or takes the service tag off one the project brought.
func (lb *loadBalancer) letGo(ctx context.Context, ip *wire.IP, lc *lbConfig) error {
	var err error
	if slices.Contains(ip.Tags, TagAllocated) {
		lb.c.log.V(1).Info("releasing ip", "ip", ip.Address, "service", serviceOf(ip))
		err = lb.c.metal.releaseIP(ctx, ip.Address)
	} else {
		untagged := *ip
		untagged.Tags = slices.DeleteFunc(slices.Clone(ip.Tags), func(t string) bool { return t == TagService+serviceOf(ip) })
		_, err = lb.c.metal.updateIP(ctx, &untagged)
	}
	if err == nil {
		lc.forgot(ip)
	}
	return err
}

// network is the metal-api network a Service's IP comes from.
func (lb *loadBalancer) network(svc *corev1.Service) string {
	if n := svc.Annotations[AnnotationNetwork]; n != "" {
		return n
	}
	return lb.c.cfg.DefaultExternalNetwork
}

// ensureIP returns the Service's IP, after dropping the ones it no longer wants. It is idempotent:
// the service tag finds what an earlier (maybe interrupted) call allocated.
func (lb *loadBalancer) ensureIP(ctx context.Context, svc *corev1.Service, recorder record.EventRecorder, lc *lbConfig) (*wire.IP, error) {
	key := serviceKey(svc)
	held, err := lb.c.metal.serviceIPs(ctx, TagService+key)
	if err != nil {
		return nil, err
	}
	var keep *wire.IP
	if want := svc.Spec.LoadBalancerIP; want != "" {
		if i := slices.IndexFunc(held, func(ip *wire.IP) bool { return ip.Address == want }); i >= 0 {
			keep = held[i]
		} else if keep, err = lb.adopt(ctx, svc, want, recorder); err != nil {
			return nil, err
		}
	} else {
		network := lb.network(svc)
		if network == "" {
			recorder.Event(svc, corev1.EventTypeWarning, ReasonNoNetwork,
				"No network for the load balancer IP: set the "+AnnotationNetwork+" annotation or metal-ccm's default external network")
			return nil, errors.New("no network for the load balancer ip")
		}
		if i := slices.IndexFunc(held, func(ip *wire.IP) bool { return ip.NetworkID == network }); i >= 0 {
			keep = held[i]
		} else {
			tags := []string{lb.c.metal.clusterTag(), TagService + key, TagAllocated}
			if keep, err = lb.c.metal.allocateIP(ctx, network, ipName(lb.c.cfg.ClusterID, svc), tags); err != nil {
				return nil, err
			}
			lb.c.log.V(1).Info("allocated ip", "ip", keep.Address, "service", key, "network", network)
		}
	}
	lc.noted(keep)
	for _, ip := range held {
		if ip.Address != keep.Address {
			if err := lb.letGo(ctx, ip, lc); err != nil {
				return nil, err
			}
		}
	}
	return keep, nil
}

// adopt tags an address the project owns for the Service. Addresses of other projects (which
// metal-api does not even show) and ones another Service or a machine uses are refused with an Event.
func (lb *loadBalancer) adopt(ctx context.Context, svc *corev1.Service, addr string, recorder record.EventRecorder) (*wire.IP, error) {
	ip, err := lb.c.metal.ownedIP(ctx, addr)
	if errors.Is(err, errNotFound) {
		recorder.Eventf(svc, corev1.EventTypeWarning, ReasonIPNotOwned,
			"loadBalancerIP %s is not an address of project %s: allocate it in metal-api first", addr, lb.c.cfg.ProjectID)
		return nil, fmt.Errorf("load balancer ip %s is not owned by project %s", addr, lb.c.cfg.ProjectID)
	}
	if err != nil {
		return nil, err
	}
	if other := serviceOf(ip); other != "" && (other != serviceKey(svc) || !slices.Contains(ip.Tags, lb.c.metal.clusterTag())) {
		recorder.Eventf(svc, corev1.EventTypeWarning, ReasonIPInUse, "loadBalancerIP %s is used by service %s", addr, other)
		return nil, fmt.Errorf("load balancer ip %s is used by service %s", addr, other)
	}
	if ip.MachineID != "" {
		recorder.Eventf(svc, corev1.EventTypeWarning, ReasonIPInUse, "loadBalancerIP %s is an address of machine %s", addr, ip.MachineID)
		return nil, fmt.Errorf("load balancer ip %s belongs to machine %s", addr, ip.MachineID)
	}
	for _, t := range []string{lb.c.metal.clusterTag(), TagService + serviceKey(svc)} {
		if !slices.Contains(ip.Tags, t) {
			ip.Tags = append(ip.Tags, t)
		}
	}
	return lb.c.metal.updateIP(ctx, ip)
}

// ipName names an IP after its cluster and Service, within metal-api's name limit.
func ipName(cluster string, svc *corev1.Service) string {
	n := cluster + "-" + svc.Namespace + "-" + svc.Name
	if len(n) > 128 {
		n = n[:128]
	}
	return n
}
