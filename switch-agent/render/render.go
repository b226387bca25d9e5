// Package render turns the desired state of a leaf switch (pkg/fabric) into configuration for one
// target layout. Both targets share the FRR part (frr.go): BGP unnumbered peer-groups for the fabric,
// the firewalls and the machines, l2vpn evpn, one VRF with an L3VNI and a BGP instance with
// explicit route targets per tenant network, and prefix-lists and route-maps so that a machine may
// only announce its own prefixes and a firewall only exchange its tenant and external VNIs. They
// differ in how VRFs and ports are built:
//
//   - Lab (lab.go): a network namespace plays each VRF (the kernel has no VRF device); the
//     interface state is a netlink plan (Links) that switch-agent/netns applies.
//   - Cumulus (cumulus.go): a NOS with VRF devices and ifupdown2; the interface state is
//     /etc/network/interfaces with a VLAN-aware bridge, one VXLAN device and SVI per L3VNI.
//
// Rendering is pure and deterministic, so golden files in testdata pin it.
package render

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/metalforge/metalforge/pkg/fabric"
)

// Switch is the switch's own part of the configuration, from the agent's config rather than from
// metal-api.
type Switch struct {
	ASN uint32
	// Loopback is the router ID and the VTEP address.
	Loopback netip.Addr
	// Uplinks are the fabric ports towards the spines.
	Uplinks []string
	// Keepalive and Hold are the BGP timers; zero keeps the datacenter defaults (3, 9).
	Keepalive, Hold int
	// ConnectRetry is the BGP connect retry timer in seconds; zero keeps the default (10): a
	// session whose first attempt fails (the peer not up yet) waits that long for the next.
	ConnectRetry int
	// RAInterval is the router advertisement interval in seconds on machine and firewall ports;
	// zero keeps FRR's 10s. BGP unnumbered learns the peer's address from these, so a machine
	// that misses the first advertisement waits up to this long for its session.
	RAInterval int
}

// Input is everything a renderer needs.
type Input struct {
	Switch  Switch
	Desired *fabric.SwitchDesired
}

// File is a file a target writes, with its absolute path on the switch.
type File struct {
	Path string
	Data []byte
}

// Config is a rendered configuration.
type Config struct {
	// Revision is the desired state's revision it was rendered from.
	Revision string
	// FRR is the integrated frr.conf.
	FRR []byte
	// Files are further files of file-based targets (Cumulus: /etc/network/interfaces).
	Files []File
	// Links is the interface plan of the lab target; nil for file-based targets.
	Links *Links
}

// check rejects inputs no target can render.
func (in Input) check() error {
	if in.Desired == nil {
		return errors.New("no desired state")
	}
	if in.Switch.ASN == 0 {
		return errors.New("switch has no asn")
	}
	if !in.Switch.Loopback.IsValid() || !in.Switch.Loopback.Is4() {
		return fmt.Errorf("switch loopback %q is not an ipv4 address", in.Switch.Loopback)
	}
	vrfs := map[string]bool{}
	for _, v := range in.Desired.VRFs {
		if v.VNI == 0 || v.Name != fabric.VRFName(v.VNI) {
			return fmt.Errorf("vrf %q with vni %d: name must be %s", v.Name, v.VNI, fabric.VRFName(v.VNI))
		}
		vrfs[v.Name] = true
	}
	for _, p := range in.Desired.Ports {
		if !validName(p.Name) {
			return fmt.Errorf("port name %q is not a plain interface name", p.Name)
		}
		switch p.State {
		case fabric.PortPXE:
		case fabric.PortTenant:
			if !vrfs[p.VRF] {
				return fmt.Errorf("port %s: vrf %q is not among the switch's vrfs", p.Name, p.VRF)
			}
			if p.ASN == 0 {
				return fmt.Errorf("port %s: machine has no asn", p.Name)
			}
		case fabric.PortFirewall:
			if p.ASN == 0 {
				return fmt.Errorf("port %s: firewall has no asn", p.Name)
			}
		default:
			return fmt.Errorf("port %s: unknown state %q", p.Name, p.State)
		}
		for _, s := range p.Prefixes {
			if _, err := netip.ParsePrefix(s); err != nil {
				return fmt.Errorf("port %s: %w", p.Name, err)
			}
		}
	}
	for _, u := range in.Switch.Uplinks {
		if !validName(u) {
			return fmt.Errorf("uplink name %q is not a plain interface name", u)
		}
	}
	return nil
}

// validName accepts Linux interface names that are safe inside config files: 1-15 characters of
// letters, digits, '-', '_' and '.'.
func validName(s string) bool {
	if s == "" || len(s) > 15 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}
