// Package fabric computes the desired network state of a leaf switch from metal-api's store — per
// front port the PXE bridge, a tenant VRF (the VNI of the connected machine's private network) with
// the machine's ASN and the prefixes it may announce, or a firewall's EVPN peering limited to its
// tenant and external VNIs — and records what the switch agent reports back: sync time, duration and
// error, port and BGP states, and the machine NICs it saw on its ports by LLDP.
//
// The types here are the wire format of GET /v1/switch/{id}/desired and POST /v1/switch/{id}/sync;
// they import only the standard library and pkg/api, so the switch agent can use them.
package fabric

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"time"
)

// Port states of the desired state.
const (
	// PortPXE: no allocated machine is connected; the port sits in the PXE bridge so that machines
	// can boot and register.
	PortPXE = "pxe"
	// PortTenant: an allocated machine; the port is routed in the VRF of its private network.
	PortTenant = "tenant"
	// PortFirewall: an allocated firewall; the port stays in the underlay and the firewall peers
	// for EVPN, limited to its tenant and external VNIs.
	PortFirewall = "firewall"
)

// SwitchDesired is what one switch must look like.
type SwitchDesired struct {
	SwitchID    string              `json:"switchID"`
	PartitionID string              `json:"partitionID"`
	Ports       []SwitchPortDesired `json:"ports"`
	// VRFs are the tenant VRFs with at least one port on this switch, ordered by VNI.
	VRFs []SwitchVRF `json:"vrfs"`
	// Revision is a hash of Ports and VRFs: the agent skips re-applying an unchanged revision.
	Revision string `json:"revision"`
}

// SwitchPortDesired is the desired state of one front port.
type SwitchPortDesired struct {
	Name      string `json:"name"`
	State     string `json:"state"`
	MachineID string `json:"machineID,omitempty"`
	// VRF is the tenant VRF name ("vrf" + VNI) of a tenant port.
	VRF string `json:"vrf,omitempty"`
	VNI uint32 `json:"vni,omitempty"`
	// ASN is the machine's (or firewall's) own AS; the leaf only accepts a session from it.
	ASN uint32 `json:"asn,omitempty"`
	// Prefixes the machine may announce, each also in longer form (prefix-list "le 32/128").
	Prefixes []string `json:"prefixes,omitempty"`
	// VNIs a firewall may exchange EVPN routes of: its tenant VNI and the external networks'.
	VNIs []uint32 `json:"vnis,omitempty"`
}

// SwitchVRF is a tenant VRF with its VNI (L3VNI of EVPN type-5 routes).
type SwitchVRF struct {
	Name string `json:"name"`
	VNI  uint32 `json:"vni"`
}

// SwitchSyncReport is what the switch agent reports after each apply (or failed apply).
type SwitchSyncReport struct {
	Time     time.Time     `json:"time"`
	Duration time.Duration `json:"duration"`
	Error    string        `json:"error,omitempty"`
	// Revision is the desired revision the agent applied (or tried to).
	Revision  string             `json:"revision,omitempty"`
	Ports     []SwitchPortReport `json:"ports,omitempty"`
	Neighbors []SwitchNeighbor   `json:"neighbors,omitempty"`
}

// SwitchPortReport is the observed state of one port.
type SwitchPortReport struct {
	Name string `json:"name"`
	// ActualState is the state the port is in (pxe, tenant, firewall) and "down" when its link is
	// down.
	ActualState string `json:"actualState"`
	// VRF the port is in ("" for the default VRF).
	VRF string `json:"vrf,omitempty"`
	// BGPState is the state of the BGP session on the port (Established, Idle, ...), "" if none.
	BGPState string `json:"bgpState,omitempty"`
}

// SwitchNeighbor is an LLDP neighbour seen on a switch port (a machine NIC).
type SwitchNeighbor struct {
	Port       string `json:"port"`
	ChassisID  string `json:"chassisID"`
	PortID     string `json:"portID"`
	SystemName string `json:"systemName,omitempty"`
}

// VRFName names the VRF of a VNI.
func VRFName(vni uint32) string { return "vrf" + strconv.FormatUint(uint64(vni), 10) }

// revision hashes the ports and VRFs of a desired state.
func revision(d *SwitchDesired) string {
	b, _ := json.Marshal(struct {
		P []SwitchPortDesired
		V []SwitchVRF
	}{d.Ports, d.VRFs}) // plain structs of strings and numbers: Marshal cannot fail
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}
