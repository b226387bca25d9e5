package metal

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// InfrastructureConfig is the provider config of a Shoot's infrastructure: where the cluster
// lives in metal-api and the firewall machine that guards its private network.
type InfrastructureConfig struct {
	metav1.TypeMeta

	// Firewall describes the cluster's firewall machine.
	Firewall Firewall
	// PartitionID is the metal-api partition (and Kubernetes zone) the cluster runs in.
	PartitionID string
	// ProjectID is the metal-api project that owns the cluster's machines, networks and IPs.
	ProjectID string
}

// Firewall describes the firewall machine of a cluster.
type Firewall struct {
	// Size is the metal-api size (machine type) of the firewall.
	Size string
	// Image is the metal-api image the firewall is installed with (feature "firewall").
	Image string
	// Networks are the external networks the firewall connects the cluster to, in order of
	// preference; the cluster's private network is added by the actuator.
	Networks []string
	// RateLimits limit the ingress bandwidth per network.
	RateLimits []RateLimit
	// EgressRules pin the SNAT source addresses per network.
	EgressRules []EgressRule
	// LogAcceptedConnections also logs accepted connections, not only dropped ones.
	LogAcceptedConnections bool
	// ControllerVersion selects the firewall-controller version; empty means the newest
	// supported one of the cloud profile.
	ControllerVersion string
	// AutoUpdateMachineImage rolls the firewall to the newest image of the same OS line.
	AutoUpdateMachineImage bool
	// FirewallHealthTimeout is how long a created firewall may stay unhealthy before it is
	// considered dead. Zero disables the timeout.
	FirewallHealthTimeout *metav1.Duration
	// FirewallCreateTimeout is how long a firewall may stay in creation before it is recreated.
	FirewallCreateTimeout *metav1.Duration
}

// RateLimit limits the traffic of one network, in Mbit/s.
type RateLimit struct {
	NetworkID string
	RateLimit uint32
}

// EgressRule makes traffic leaving through NetworkID use one of IPs as source address.
type EgressRule struct {
	NetworkID string
	IPs       []string
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// InfrastructureStatus is what the infrastructure actuator reports back.
type InfrastructureStatus struct {
	metav1.TypeMeta

	// Firewall is the state of the cluster's firewall.
	Firewall FirewallStatus
	// NetworkID is the metal-api ID of the cluster's private network; empty in statuses written
	// before the field existed.
	NetworkID string
	// EgressIPs are the firewall's SNAT source addresses, one or more per external network.
	EgressIPs []EgressIP
}

// EgressIP is an egress address of the firewall in an external network.
type EgressIP struct {
	// NetworkID is the external network.
	NetworkID string
	// IP is the address.
	IP string
}

// FirewallStatus is the observed state of a cluster's firewall.
type FirewallStatus struct {
	// MachineID is the metal-api machine ID of the firewall.
	MachineID string
}
