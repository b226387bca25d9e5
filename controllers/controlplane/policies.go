package controlplane

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/metalforge/metalforge/pkg/apis/metal"
)

// Policy is one ClusterwideNetworkPolicy (metal-stack.io/v1) in the firewall namespace, in the
// shape of its spec; the shoot chart renders it.
type Policy struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Egress      []Rule `json:"egress,omitempty"`
	Ingress     []Rule `json:"ingress,omitempty"`
}

// Rule is an egress (To) or ingress (From) rule.
type Rule struct {
	To    []IPBlock `json:"to,omitempty"`
	From  []IPBlock `json:"from,omitempty"`
	Ports []Port    `json:"ports,omitempty"`
}

// IPBlock is a CIDR.
type IPBlock struct {
	CIDR string `json:"cidr"`
}

// Port is a protocol and port.
type Port struct {
	Protocol string `json:"protocol"`
	Port     int32  `json:"port"`
}

var (
	anyIPv4 = []IPBlock{{CIDR: "0.0.0.0/0"}}
	dnsPort = []Port{{Protocol: "UDP", Port: 53}, {Protocol: "TCP", Port: 53}}
	ntpPort = []Port{{Protocol: "UDP", Port: 123}}
)

// DefaultPolicies are the ClusterwideNetworkPolicies the control plane puts into the shoot's
// firewall namespace. The firewall drops what no policy allows, so these decide what the nodes
// reach outside the cluster:
//
//   - baseline: DNS, NTP, HTTP and HTTPS to anywhere (tenants add their own policies);
//   - restricted and forbidden: only the partition's networkIsolation — DNS to dnsServers, NTP to
//     ntpServers, HTTPS to each registry mirror, everything to allowedNetworks.egress, and
//     ingress from allowedNetworks.ingress. Without networkIsolation in the cloud profile these
//     access types are refused. (forbidden differs from restricted in that tenants may not widen it;
//     that is enforced by admission, not by these policies.)
func DefaultPolicies(access metal.NetworkAccessType, iso *metal.NetworkIsolation) ([]Policy, error) {
	switch access {
	case "", metal.NetworkAccessBaseline:
		return []Policy{
			{Name: "egress-allow-dns", Description: "allow DNS to anywhere", Egress: []Rule{{To: anyIPv4, Ports: dnsPort}}},
			{Name: "egress-allow-ntp", Description: "allow NTP to anywhere", Egress: []Rule{{To: anyIPv4, Ports: ntpPort}}},
			{Name: "egress-allow-http", Description: "allow HTTP to anywhere", Egress: []Rule{{To: anyIPv4, Ports: []Port{{Protocol: "TCP", Port: 80}}}}},
			{Name: "egress-allow-https", Description: "allow HTTPS to anywhere", Egress: []Rule{{To: anyIPv4, Ports: []Port{{Protocol: "TCP", Port: 443}}}}},
		}, nil
	case metal.NetworkAccessRestricted, metal.NetworkAccessForbidden:
	default:
		return nil, fmt.Errorf("unknown network access type %q", access)
	}
	if iso == nil {
		return nil, fmt.Errorf("network access type %s needs networkIsolation for the partition in the cloud profile", access)
	}
	var out []Policy
	add := func(name, desc string, addrs []string, ports []Port) error {
		blocks, err := ipBlocks(addrs)
		if err != nil {
			return fmt.Errorf("policy %s: %w", name, err)
		}
		if len(blocks) > 0 {
			out = append(out, Policy{Name: name, Description: desc, Egress: []Rule{{To: blocks, Ports: ports}}})
		}
		return nil
	}
	if err := add("egress-allow-dns", "allow DNS to the partition's DNS servers", iso.DNSServers, dnsPort); err != nil {
		return nil, err
	}
	if err := add("egress-allow-ntp", "allow NTP to the partition's NTP servers", iso.NTPServers, ntpPort); err != nil {
		return nil, err
	}
	for i, m := range iso.RegistryMirrors {
		port := m.Port
		if port == 0 {
			port = 443
		}
		if err := add(fmt.Sprintf("egress-allow-registry-mirror-%d", i), "allow the registry mirror "+m.Name,
			[]string{m.IP}, []Port{{Protocol: "TCP", Port: port}}); err != nil {
			return nil, err
		}
	}
	if err := add("egress-allow-networks", "allow the partition's allowed egress networks", iso.AllowedNetworks.Egress, nil); err != nil {
		return nil, err
	}
	if len(iso.AllowedNetworks.Ingress) > 0 {
		blocks, err := ipBlocks(iso.AllowedNetworks.Ingress)
		if err != nil {
			return nil, fmt.Errorf("policy ingress-allow-networks: %w", err)
		}
		out = append(out, Policy{Name: "ingress-allow-networks", Description: "allow the partition's allowed ingress networks",
			Ingress: []Rule{{From: blocks}}})
	}
	return out, nil
}

// ipBlocks turns addresses and prefixes into sorted, de-duplicated CIDRs (an address becomes /32
// or /128).
func ipBlocks(addrs []string) ([]IPBlock, error) {
	var cidrs []string
	for _, a := range addrs {
		p, err := netip.ParsePrefix(a)
		if err != nil {
			ip, err2 := netip.ParseAddr(a)
			if err2 != nil {
				return nil, fmt.Errorf("parse %q: neither an address nor a prefix", a)
			}
			p = netip.PrefixFrom(ip, ip.BitLen())
		}
		cidrs = append(cidrs, p.Masked().String())
	}
	slices.Sort(cidrs)
	cidrs = slices.Compact(cidrs)
	out := make([]IPBlock, 0, len(cidrs))
	for _, c := range cidrs {
		out = append(out, IPBlock{CIDR: c})
	}
	return out, nil
}
