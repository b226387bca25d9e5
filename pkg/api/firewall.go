package api

// FirewallConfigPath is where metal-osinit writes a firewall machine's FirewallConfig and where
// firewall-controller reads it.
const FirewallConfigPath = "/etc/metalforge/firewall.json"

// FirewallConfig is what a firewall machine's controller needs to know from its allocation: which
// interface faces the internet, the tenant networks behind it and the egress (SNAT) addresses.
// metal-osinit derives it from the allocation at first boot; firewall-controller turns it, the
// cluster's ClusterwideNetworkPolicies and its Services into nftables.
type FirewallConfig struct {
	MachineID string `json:"machineID"`
	ProjectID string `json:"projectID"`
	// ExternalInterface is the interface towards the internet (the external network's side).
	ExternalInterface string `json:"externalInterface"`
	// ExternalVRF is the VNI of the external network (0: routed in the default VRF). A packet
	// forwarded into a VRF shows the VRF device (vrf<VNI>) as its input interface in the forward
	// hook, while it leaves by the network's interface (vlan<VNI>); see pkg/phonehome/osinit.
	ExternalVRF uint32 `json:"externalVRF,omitempty"`
	// Networks are the tenant (private) networks behind the firewall.
	Networks []FirewallNetwork `json:"networks"`
	// EgressIPs are the addresses the tenant networks are SNATed to (a contiguous range); empty means
	// masquerade to the external interface's address.
	EgressIPs []string `json:"egressIPs,omitempty"`
	// ICMPRate limits forwarded ICMP packets per second (0: no limit).
	ICMPRate uint32 `json:"icmpRate,omitempty"`
	// LogRate limits logged drops per second (0: drops are not logged).
	LogRate uint32 `json:"logRate,omitempty"`
	// DNSListen is where the firewall's DNS proxy listens for tenant queries (host:port, on the
	// firewall's address in the private network); empty disables FQDN egress rules.
	DNSListen string `json:"dnsListen,omitempty"`
	// DNSUpstream is the resolver the DNS proxy forwards to (host:port).
	DNSUpstream string `json:"dnsUpstream,omitempty"`
	// Kubeconfig is the path of the kubeconfig for the tenant cluster whose policies and Services
	// apply; empty means the firewall runs with its base ruleset only.
	Kubeconfig string `json:"kubeconfig,omitempty"`
}

// FirewallNetwork is one tenant network behind a firewall.
type FirewallNetwork struct {
	NetworkID string   `json:"networkID"`
	Interface string   `json:"interface"`
	Prefixes  []string `json:"prefixes"`
	// VRF is the network's VNI on the firewall (0: routed in the default VRF), see ExternalVRF.
	VRF uint32 `json:"vrf,omitempty"`
	// RateLimit limits packets per second from this network (0: no limit).
	RateLimit uint32 `json:"rateLimit,omitempty"`
}
