package firewall

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/metalforge/metalforge/pkg/api"
	fwv1 "github.com/metalforge/metalforge/pkg/apis/firewall/v1"
	"github.com/metalforge/metalforge/pkg/dnsproxy"
	"github.com/metalforge/metalforge/pkg/nft"
)

// Input is everything the ruleset is built from.
type Input struct {
	Firewall api.FirewallConfig
	// Policies are all ClusterwideNetworkPolicies of the cluster (any namespace).
	Policies []fwv1.ClusterwideNetworkPolicy
	// Services are all Services; Nodes are needed for exposed NodePort Services.
	Services []corev1.Service
	Nodes    []corev1.Node
	// FQDN are the addresses the DNS proxy learned, per set name (Plan.Selectors).
	FQDN map[string][]netip.Addr
	// LastGood are the last applied versions of the policies: a policy that can no longer be
	// translated keeps the rules of its last good version (same UID), so an invalid update never
	// removes rules that were in force.
	LastGood map[types.NamespacedName]fwv1.ClusterwideNetworkPolicy
}

// Plan is the outcome of Build: the ruleset and what became of each object.
type Plan struct {
	Ruleset *nft.Ruleset
	// Policies maps every policy to its outcome (Applied, Error or Ignored, as far as Build can
	// tell: an Applied policy is only applied once the ruleset is).
	Policies map[types.NamespacedName]Outcome
	// Selectors are the DNS proxy selectors of all toFQDNs of applied policies.
	Selectors []dnsproxy.Selector
	// PolicyCounters and ServiceCounters map nft counter names back to the objects.
	PolicyCounters  map[string]types.NamespacedName
	ServiceCounters map[string]types.NamespacedName
}

// Outcome is what Build made of one policy.
type Outcome struct {
	State   fwv1.State
	Message string
	// Kept is the last good version whose rules stand in for a policy in Error, if any.
	Kept *fwv1.ClusterwideNetworkPolicy
}

// Build turns the input into a ruleset. It is a pure function: the same input gives the same
// ruleset, in a stable order. A policy that cannot be translated is left out (Error outcome); the
// base configuration must be valid or Build fails.
func Build(in Input) (*Plan, error) {
	base, err := baseRuleset(in.Firewall)
	if err != nil {
		return nil, err
	}
	p := &Plan{
		Ruleset:         base,
		Policies:        map[types.NamespacedName]Outcome{},
		PolicyCounters:  map[string]types.NamespacedName{},
		ServiceCounters: map[string]types.NamespacedName{},
	}
	names := newNamer()
	fqdn := newNamer()
	selectors := map[string]dnsproxy.Selector{}

	pols := append([]fwv1.ClusterwideNetworkPolicy(nil), in.Policies...)
	sort.Slice(pols, func(i, j int) bool { return key(&pols[i]).String() < key(&pols[j]).String() })
	for i := range pols {
		pol := &pols[i]
		k := key(pol)
		if pol.Namespace != fwv1.Namespace {
			p.Policies[k] = Outcome{State: fwv1.StateIgnored, Message: fmt.Sprintf("only policies in namespace %s take effect", fwv1.Namespace)}
			continue
		}
		name := names.name("p", pol.Name)
		ingress, egress, sels, err := translate(name, pol, fqdn)
		var kept *fwv1.ClusterwideNetworkPolicy
		if err != nil {
			prev, ok := in.LastGood[k]
			if !ok || prev.UID != pol.UID {
				p.Policies[k] = Outcome{State: fwv1.StateError, Message: err.Error()}
				continue
			}
			var err2 error
			if ingress, egress, sels, err2 = translate(name, &prev, fqdn); err2 != nil {
				p.Policies[k] = Outcome{State: fwv1.StateError, Message: err.Error()}
				continue
			}
			kept = &prev
		}
		p.Ruleset.Ingress = append(p.Ruleset.Ingress, ingress...)
		p.Ruleset.Egress = append(p.Ruleset.Egress, egress...)
		for _, s := range sels {
			selectors[s.Set] = s
		}
		p.PolicyCounters[nft.PolicyCounter(name)] = k
		msg := ""
		if len(sels) > 0 && in.Firewall.DNSListen == "" {
			msg = "toFQDNs have no effect: the firewall runs no DNS proxy"
		}
		if kept != nil {
			p.Policies[k] = Outcome{State: fwv1.StateError, Kept: kept,
				Message: fmt.Sprintf("%v; the firewall keeps the rules of generation %d", err, kept.Generation)}
			continue
		}
		p.Policies[k] = Outcome{State: fwv1.StateApplied, Message: msg}
	}

	setNames := make([]string, 0, len(selectors))
	for n := range selectors {
		setNames = append(setNames, n)
	}
	sort.Strings(setNames)
	for _, n := range setNames {
		p.Selectors = append(p.Selectors, selectors[n])
		p.Ruleset.FQDNSets = append(p.Ruleset.FQDNSets, nft.FQDNSet{Name: n, IPs: addrs(in.FQDN[n])})
	}

	svcs := append([]corev1.Service(nil), in.Services...)
	sort.Slice(svcs, func(i, j int) bool {
		return svcs[i].Namespace+"/"+svcs[i].Name < svcs[j].Namespace+"/"+svcs[j].Name
	})
	for i := range svcs {
		for _, s := range services(&svcs[i], in.Nodes, names) {
			p.Ruleset.Services = append(p.Ruleset.Services, s)
			p.ServiceCounters[nft.ServiceCounter(s.Name)] = types.NamespacedName{Namespace: svcs[i].Namespace, Name: svcs[i].Name}
		}
	}
	return p, nil
}

func key(pol *fwv1.ClusterwideNetworkPolicy) types.NamespacedName {
	return types.NamespacedName{Namespace: pol.Namespace, Name: pol.Name}
}

// baseRuleset is the part that comes from the firewall's allocation.
func baseRuleset(fw api.FirewallConfig) (*nft.Ruleset, error) {
	rs := &nft.Ruleset{External: fw.ExternalInterface, ICMPRate: fw.ICMPRate, LogRate: fw.LogRate}
	names := newNamer()
	for _, n := range fw.Networks {
		net := nft.Network{Name: names.name("n", n.NetworkID), Interface: n.Interface, RateLimit: n.RateLimit}
		for _, s := range n.Prefixes {
			pfx, err := prefix(s)
			if err != nil {
				return nil, fmt.Errorf("firewall config: network %s: %w", n.NetworkID, err)
			}
			net.Prefixes = append(net.Prefixes, pfx)
		}
		rs.Networks = append(rs.Networks, net)
	}
	for _, s := range fw.EgressIPs {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("firewall config: egress ip: %w", err)
		}
		rs.SNAT = append(rs.SNAT, ip)
	}
	if err := rs.Validate(); err != nil {
		return nil, fmt.Errorf("firewall config: %w", err)
	}
	return rs, nil
}

// translate flattens one policy into nft rules.
func translate(name string, pol *fwv1.ClusterwideNetworkPolicy, fqdn *namer) (ingress, egress []nft.Rule, sels []dnsproxy.Selector, err error) {
	for i, r := range pol.Spec.Ingress {
		rules, err := peerRules(name, r.From, r.Ports)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("ingress[%d]: %w", i, err)
		}
		ingress = append(ingress, rules...)
	}
	for i, r := range pol.Spec.Egress {
		if len(r.To) > 0 && len(r.ToFQDNs) > 0 {
			return nil, nil, nil, fmt.Errorf("egress[%d]: both to and toFQDNs", i)
		}
		if len(r.ToFQDNs) == 0 {
			rules, err := peerRules(name, r.To, r.Ports)
			if err != nil {
				return nil, nil, nil, fmt.Errorf("egress[%d]: %w", i, err)
			}
			egress = append(egress, rules...)
			continue
		}
		ports, err := portRanges(r.Ports)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("egress[%d]: %w", i, err)
		}
		for j, f := range r.ToFQDNs {
			s, err := selector(f, fqdn)
			if err != nil {
				return nil, nil, nil, fmt.Errorf("egress[%d].toFQDNs[%d]: %w", i, j, err)
			}
			sels = append(sels, s)
			for _, pr := range ports {
				egress = append(egress, nft.Rule{Policy: name, FQDN: s.Set, Protocol: pr.proto, Port: pr.port, EndPort: pr.end})
			}
		}
	}
	return ingress, egress, sels, nil
}

// peerRules are the rules of one rule's IP blocks: the blocks without exceptions share one rule
// per port, each block with exceptions gets its own.
func peerRules(policy string, blocks []fwv1.IPBlock, ports []fwv1.PolicyPort) ([]nft.Rule, error) {
	prs, err := portRanges(ports)
	if err != nil {
		return nil, err
	}
	var plain []netip.Prefix
	type excepted struct{ cidr, except []netip.Prefix }
	var withExcept []excepted
	for i, b := range blocks {
		cidr, err := prefix(b.CIDR)
		if err != nil {
			return nil, fmt.Errorf("cidr %d: %w", i, err)
		}
		if len(b.Except) == 0 {
			if !slices.Contains(plain, cidr) {
				plain = append(plain, cidr)
			}
			continue
		}
		var except []netip.Prefix
		for _, e := range b.Except {
			x, err := prefix(e)
			if err != nil {
				return nil, fmt.Errorf("except of cidr %d: %w", i, err)
			}
			if x.Addr().Is4() != cidr.Addr().Is4() || !cidr.Contains(x.Addr()) || x.Bits() < cidr.Bits() {
				return nil, fmt.Errorf("except %s is not inside %s", x, cidr)
			}
			except = append(except, x)
		}
		withExcept = append(withExcept, excepted{[]netip.Prefix{cidr}, except})
	}
	var out []nft.Rule
	for _, pr := range prs {
		if len(plain) > 0 {
			out = append(out, nft.Rule{Policy: policy, CIDRs: plain, Protocol: pr.proto, Port: pr.port, EndPort: pr.end})
		}
		for _, w := range withExcept {
			out = append(out, nft.Rule{Policy: policy, CIDRs: w.cidr, Except: w.except, Protocol: pr.proto, Port: pr.port, EndPort: pr.end})
		}
	}
	return out, nil
}

func prefix(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil || p.Addr().Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("invalid cidr %q", s)
	}
	if p.Addr().Is4In6() {
		if p.Bits() < 96 {
			return netip.Prefix{}, fmt.Errorf("invalid cidr %q", s)
		}
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

type portRange struct {
	proto     nft.Protocol
	port, end uint16
}

// portRanges translates a rule's ports; no ports means any protocol and port.
func portRanges(ports []fwv1.PolicyPort) ([]portRange, error) {
	if len(ports) == 0 {
		return []portRange{{}}, nil
	}
	out := make([]portRange, 0, len(ports))
	for i, p := range ports {
		pr := portRange{proto: nft.TCP}
		if p.Protocol != nil {
			switch *p.Protocol {
			case corev1.ProtocolTCP:
			case corev1.ProtocolUDP:
				pr.proto = nft.UDP
			default:
				return nil, fmt.Errorf("port %d: unsupported protocol %s", i, *p.Protocol)
			}
		}
		if p.Port != nil {
			if p.Port.Type != 0 {
				return nil, fmt.Errorf("port %d: named port %q is not supported on the firewall", i, p.Port.StrVal)
			}
			if p.Port.IntVal < 1 || p.Port.IntVal > 65535 {
				return nil, fmt.Errorf("port %d: %d out of range", i, p.Port.IntVal)
			}
			pr.port = uint16(p.Port.IntVal)
		}
		if p.EndPort != nil {
			if pr.port == 0 || *p.EndPort < int32(pr.port) || *p.EndPort > 65535 {
				return nil, fmt.Errorf("port %d: invalid range %d-%d", i, pr.port, *p.EndPort)
			}
			if *p.EndPort != int32(pr.port) {
				pr.end = uint16(*p.EndPort)
			}
		}
		out = append(out, pr)
	}
	return out, nil
}

// selector maps a toFQDNs entry to a DNS proxy selector whose set is named after it.
func selector(f fwv1.FQDNSelector, fqdn *namer) (dnsproxy.Selector, error) {
	s := dnsproxy.Selector{MatchName: strings.TrimSuffix(strings.ToLower(f.MatchName), "."), MatchPattern: strings.TrimSuffix(strings.ToLower(f.MatchPattern), ".")}
	switch {
	case s.MatchName != "" && s.MatchPattern == "":
		s.Set = fqdn.name("n", s.MatchName)
	case s.MatchPattern != "" && s.MatchName == "":
		s.Set = fqdn.name("p", strings.ReplaceAll(s.MatchPattern, "*", "x"))
	default:
		return s, errors.New("exactly one of matchName and matchPattern")
	}
	if err := s.Validate(); err != nil {
		return s, fmt.Errorf("invalid fqdn selector: %w", err)
	}
	return s, nil
}

// services opens a Service: LoadBalancer IPs, or node IPs for exposed NodePort Services.
func services(svc *corev1.Service, nodes []corev1.Node, names *namer) []nft.Service {
	var src []netip.Prefix
	for _, r := range svc.Spec.LoadBalancerSourceRanges {
		if p, err := prefix(r); err == nil {
			src = append(src, p)
		}
	}
	var out []nft.Service
	base := svc.Namespace + "." + svc.Name
	switch svc.Spec.Type {
	case corev1.ServiceTypeLoadBalancer:
		var ports []nft.ServicePort
		for _, p := range svc.Spec.Ports {
			if sp, ok := servicePort(p.Protocol, p.Port); ok {
				ports = append(ports, sp)
			}
		}
		if len(ports) == 0 {
			return nil
		}
		for i, ing := range svc.Status.LoadBalancer.Ingress {
			ip, ok := addr(ing.IP)
			if !ok {
				continue
			}
			n := base
			if i > 0 {
				n = fmt.Sprintf("%s.%d", base, i)
			}
			out = append(out, nft.Service{Name: names.name("s", n), IP: ip, Ports: ports, SourceRanges: src})
		}
	case corev1.ServiceTypeNodePort:
		if svc.Annotations[ExposeAnnotation] != "true" {
			return nil
		}
		var ports []nft.ServicePort
		for _, p := range svc.Spec.Ports {
			if sp, ok := servicePort(p.Protocol, p.NodePort); ok {
				ports = append(ports, sp)
			}
		}
		if len(ports) == 0 {
			return nil
		}
		ns := append([]corev1.Node(nil), nodes...)
		sort.Slice(ns, func(i, j int) bool { return ns[i].Name < ns[j].Name })
		for _, node := range ns {
			for _, a := range node.Status.Addresses {
				ip, ok := addr(a.Address)
				if a.Type != corev1.NodeInternalIP || !ok {
					continue
				}
				out = append(out, nft.Service{Name: names.name("s", base+"."+node.Name), IP: ip, Ports: ports, SourceRanges: src})
			}
		}
	}
	return out
}

func servicePort(proto corev1.Protocol, port int32) (nft.ServicePort, bool) {
	if port < 1 || port > 65535 {
		return nft.ServicePort{}, false
	}
	switch proto {
	case corev1.ProtocolTCP, "":
		return nft.ServicePort{Protocol: nft.TCP, Port: uint16(port)}, true
	case corev1.ProtocolUDP:
		return nft.ServicePort{Protocol: nft.UDP, Port: uint16(port)}, true
	}
	return nft.ServicePort{}, false // SCTP: not filtered by the firewall's model
}

func addr(s string) (netip.Addr, bool) {
	ip, err := netip.ParseAddr(s)
	if err != nil || ip.Zone() != "" {
		return netip.Addr{}, false
	}
	return ip.Unmap(), true
}

// addrs are the valid addresses of a DNS set, sorted and deduplicated.
func addrs(ips []netip.Addr) []netip.Addr {
	var out []netip.Addr
	for _, ip := range ips {
		if ip.IsValid() && ip.Zone() == "" {
			out = append(out, ip.Unmap())
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

const maxName = 63

var badChars = regexp.MustCompile(`[^a-zA-Z0-9_.-]`)

// namer turns Kubernetes names into unique nft object names: letters, digits, '_', '.', '-', at
// most 63 characters, starting with a letter, and unique after nft's mapping of '-' and '.' to
// '_' (so "a-b" and "a.b" can't collide). A name that had to be shortened or would collide gets a
// hash suffix of the original. The same input always gets the same name.
type namer struct {
	seen map[string]bool
	memo map[string]string
}

func newNamer() *namer { return &namer{seen: map[string]bool{}, memo: map[string]string{}} }

func (n *namer) name(kind, s string) string {
	if out, ok := n.memo[kind+"/"+s]; ok {
		return out
	}
	out := n.newName(kind, s)
	n.memo[kind+"/"+s] = out
	return out
}

func (n *namer) newName(kind, s string) string {
	out := badChars.ReplaceAllString(s, "_")
	if out == "" || !isLetter(out[0]) {
		out = kind + "-" + out
	}
	id := func(x string) string { return strings.NewReplacer("-", "_", ".", "_").Replace(x) }
	if len(out) > maxName || out != s && out != kind+"-"+s || n.seen[id(out)] {
		sum := sha256.Sum256([]byte(kind + "/" + s))
		h := hex.EncodeToString(sum[:])[:10]
		if len(out) > maxName-11 {
			out = out[:maxName-11]
		}
		out = out + "-" + h
	}
	n.seen[id(out)] = true
	return out
}

func isLetter(b byte) bool { return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' }
