// Package nft is the dataplane engine of the per-cluster firewall: a small
// ruleset model (tenant networks, egress SNAT, ingress/egress policy rules,
// FQDN sets, service ingress, rate limits, logged drops), a renderer of that
// model in `nft -f` syntax, and an applier that installs it as
// `table inet firewall` with github.com/google/nftables in one atomic batch,
// rewriting only the sets and chains that changed (each policy has its own
// chain), with named counters per policy and service and for dropped packets.
//
// Addresses and prefixes may be IPv4 or IPv6 (the kernel wants one family per
// set, so a rule naming both becomes one rule per family); egress SNAT is
// IPv4 only, IPv6 is routed without translation.
package nft

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strings"
)

// TableName is the name of the inet table the package owns.
const TableName = "firewall"

// Protocol is a transport protocol a rule or service port matches.
type Protocol string

// Supported protocols.
const (
	TCP Protocol = "tcp"
	UDP Protocol = "udp"
)

// Network is a tenant network behind the firewall.
type Network struct {
	Name      string         // identifier, e.g. "private"
	Interface string         // interface towards the tenant network
	Prefixes  []netip.Prefix // prefixes of the network; the ipv4 ones are SNATed to Ruleset.SNAT
	RateLimit uint32         // packets/second from this network before drops; 0 = none
}

// Rule is one flattened policy rule: one peer list and one port (range).
// In Ingress rules CIDRs are sources, in Egress rules destinations.
type Rule struct {
	Policy   string         // policy name; a named counter per policy
	CIDRs    []netip.Prefix // peers; empty with FQDN set = only the FQDN set
	Except   []netip.Prefix // peers excluded from CIDRs
	FQDN     string         // egress only: name of an FQDNSet as peer
	Protocol Protocol       // tcp or udp; empty = any protocol (then no port)
	Port     uint16         // 0 = any port
	EndPort  uint16         // 0 = single port
}

// FQDNSet is the resolved IPs of an allowed DNS name (pattern).
type FQDNSet struct {
	Name string
	IPs  []netip.Addr
}

// ServicePort is one port of a service.
type ServicePort struct {
	Protocol Protocol
	Port     uint16
}

// Service opens ingress to a load balancer IP and its ports.
type Service struct {
	Name         string
	IP           netip.Addr
	Ports        []ServicePort
	SourceRanges []netip.Prefix // empty = from anywhere; those of the other family than IP are ignored
}

// Ruleset is the whole firewall configuration the package turns into
// `table inet firewall`.
type Ruleset struct {
	External  string       // interface towards the internet
	Networks  []Network    // tenant networks
	SNAT      []netip.Addr // egress ipv4 SNAT IPs (a contiguous range); empty = masquerade
	Ingress   []Rule
	Egress    []Rule
	FQDNSets  []FQDNSet
	Services  []Service
	ICMPRate  uint32 // ICMP packets/second forwarded before drops; 0 = no limit
	LogRate   uint32 // logged drops per second; 0 = no drop logging
	LogPrefix string // prefix of drop log lines; default "firewall drop: "
}

var nameRE = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_.-]{0,62}$`)

// ident turns a validated name into an nft identifier.
func ident(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '-' || r == '.' {
			return '_'
		}
		return r
	}, s)
}

func validName(kind, n string) error {
	if !nameRE.MatchString(n) {
		return fmt.Errorf("invalid %s name %q", kind, n)
	}
	return nil
}

func validIface(n string) error {
	if n == "" || len(n) > 15 || strings.ContainsAny(n, "\" /\\\n") {
		return fmt.Errorf("invalid interface name %q", n)
	}
	return nil
}

// validAddr accepts IPv4 and IPv6 addresses, but not IPv4-mapped IPv6 ones
// (the kernel never sees those) nor zones.
func validAddr(a netip.Addr) bool {
	return a.IsValid() && !a.Is4In6() && a.Zone() == ""
}

func validPrefixes(ps []netip.Prefix) error {
	for _, p := range ps {
		if !p.IsValid() || !validAddr(p.Addr()) {
			return fmt.Errorf("invalid prefix %q", p)
		}
		if p.Masked() != p {
			return fmt.Errorf("prefix %s has host bits set", p)
		}
	}
	return nil
}

func validProto(p Protocol, port, end uint16) error {
	switch p {
	case TCP, UDP:
	case "":
		if port != 0 || end != 0 {
			return errors.New("port without protocol")
		}
	default:
		return fmt.Errorf("unsupported protocol %q", p)
	}
	if end != 0 && (port == 0 || end < port) {
		return fmt.Errorf("invalid port range %d-%d", port, end)
	}
	return nil
}

// Validate reports the first problem that would make the ruleset invalid;
// Apply and Render call it before anything is sent or written.
func (rs *Ruleset) Validate() error {
	if err := validIface(rs.External); err != nil {
		return fmt.Errorf("external: %w", err)
	}
	if len(rs.Networks) == 0 {
		return errors.New("no tenant network")
	}
	seen := map[string]bool{}
	for _, n := range rs.Networks {
		if err := validName("network", n.Name); err != nil {
			return err
		}
		if err := validIface(n.Interface); err != nil {
			return fmt.Errorf("network %s: %w", n.Name, err)
		}
		if err := validPrefixes(n.Prefixes); err != nil {
			return fmt.Errorf("network %s: %w", n.Name, err)
		}
		if seen["n"+n.Name] {
			return fmt.Errorf("duplicate network %q", n.Name)
		}
		seen["n"+n.Name] = true
	}
	if _, _, err := snatRange(rs.SNAT); err != nil {
		return err
	}
	for _, f := range rs.FQDNSets {
		if err := validName("fqdn set", f.Name); err != nil {
			return err
		}
		for _, ip := range f.IPs {
			if !validAddr(ip) {
				return fmt.Errorf("fqdn set %s: invalid address %q", f.Name, ip)
			}
		}
		if seen["f"+ident(f.Name)] {
			return fmt.Errorf("duplicate fqdn set %q", f.Name)
		}
		seen["f"+ident(f.Name)] = true
	}
	for dir, rules := range map[string][]Rule{"ingress": rs.Ingress, "egress": rs.Egress} {
		for i, r := range rules {
			if err := validRule(r, dir, seen); err != nil {
				return fmt.Errorf("%s rule %d: %w", dir, i, err)
			}
		}
	}
	for _, s := range rs.Services {
		if err := validName("service", s.Name); err != nil {
			return err
		}
		if !validAddr(s.IP) {
			return fmt.Errorf("service %s: invalid address %q", s.Name, s.IP)
		}
		if len(s.Ports) == 0 {
			return fmt.Errorf("service %s: no ports", s.Name)
		}
		for _, p := range s.Ports {
			if p.Port == 0 || (p.Protocol != TCP && p.Protocol != UDP) {
				return fmt.Errorf("service %s: invalid port %s/%d", s.Name, p.Protocol, p.Port)
			}
		}
		if err := validPrefixes(s.SourceRanges); err != nil {
			return fmt.Errorf("service %s: %w", s.Name, err)
		}
		if seen["s"+ident(s.Name)] {
			return fmt.Errorf("duplicate service %q", s.Name)
		}
		seen["s"+ident(s.Name)] = true
	}
	if strings.ContainsAny(rs.LogPrefix, "\"\n\\") || len(rs.LogPrefix) > 127 {
		return fmt.Errorf("invalid log prefix %q", rs.LogPrefix)
	}
	return nil
}

func validRule(r Rule, dir string, seen map[string]bool) error {
	if !seen["p"+r.Policy] { // thousands of rules share few policy names
		if err := validName("policy", r.Policy); err != nil {
			return err
		}
		seen["p"+r.Policy] = true
	}
	if err := validPrefixes(r.CIDRs); err != nil {
		return err
	}
	if err := validPrefixes(r.Except); err != nil {
		return err
	}
	if r.FQDN != "" {
		if dir != "egress" {
			return errors.New("fqdn peer in ingress rule")
		}
		if !seen["f"+ident(r.FQDN)] {
			return fmt.Errorf("unknown fqdn set %q", r.FQDN)
		}
		if len(r.CIDRs) > 0 {
			return errors.New("both fqdn and cidr peers")
		}
	} else if len(r.CIDRs) == 0 {
		return errors.New("no peer")
	}
	return validProto(r.Protocol, r.Port, r.EndPort)
}

// snatRange returns the first and last SNAT address; they must be contiguous.
func snatRange(ips []netip.Addr) (netip.Addr, netip.Addr, error) {
	if len(ips) == 0 {
		return netip.Addr{}, netip.Addr{}, nil
	}
	s := append([]netip.Addr(nil), ips...)
	sort.Slice(s, func(i, j int) bool { return s[i].Less(s[j]) })
	for i, ip := range s {
		if !ip.Is4() {
			return netip.Addr{}, netip.Addr{}, fmt.Errorf("invalid snat ipv4 address %q", ip)
		}
		if i > 0 && s[i-1].Next() != ip {
			return netip.Addr{}, netip.Addr{}, fmt.Errorf("snat addresses %s and %s are not contiguous", s[i-1], ip)
		}
	}
	return s[0], s[len(s)-1], nil
}
