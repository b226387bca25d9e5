package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// InfrastructureConfig is the provider config of a Shoot's infrastructure: where the cluster
// lives in metal-api and the firewall machine that guards its private network.
type InfrastructureConfig struct {
	metav1.TypeMeta `json:",inline"`

	// Firewall describes the cluster's firewall machine.
	Firewall Firewall `json:"firewall"`
	// PartitionID is the metal-api partition (and Kubernetes zone) the cluster runs in.
	PartitionID string `json:"partitionID"`
	// ProjectID is the metal-api project that owns the cluster's machines, networks and IPs.
	ProjectID string `json:"projectID"`
}

// Firewall describes the firewall machine of a cluster.
type Firewall struct {
	// Size is the metal-api size (machine type) of the firewall.
	Size string `json:"size"`
	// Image is the metal-api image the firewall is installed with (feature "firewall").
	Image string `json:"image"`
	// Networks are the external networks the firewall connects the cluster to, in order of
	// preference; the cluster's private network is added by the actuator.
	Networks []string `json:"networks"`
	// RateLimits limit the ingress bandwidth per network.
	// +optional
	RateLimits []RateLimit `json:"rateLimits,omitempty"`
	// EgressRules pin the SNAT source addresses per network.
	// +optional
	EgressRules []EgressRule `json:"egressRules,omitempty"`
	// LogAcceptedConnections also logs accepted connections, not only dropped ones.
	// +optional
	LogAcceptedConnections bool `json:"logAcceptedConnections,omitempty"`
	// ControllerVersion selects the firewall-controller version; empty or "auto" means the
	// newest supported one of the cloud profile.
	// +optional
	ControllerVersion string `json:"controllerVersion,omitempty"`
	// AutoUpdateMachineImage rolls the firewall to the newest image of the same OS line.
	// +optional
	AutoUpdateMachineImage bool `json:"autoUpdateMachineImage,omitempty"`
	// FirewallHealthTimeout is how long a created firewall may stay unhealthy before it is
	// considered dead. Zero disables the timeout.
	// +optional
	FirewallHealthTimeout *metav1.Duration `json:"firewallHealthTimeout,omitempty"`
	// FirewallCreateTimeout is how long a firewall may stay in creation before it is recreated.
	// +optional
	FirewallCreateTimeout *metav1.Duration `json:"firewallCreateTimeout,omitempty"`
}

// RateLimit limits the traffic of one network, in Mbit/s.
type RateLimit struct {
	NetworkID string `json:"networkID"`
	RateLimit uint32 `json:"rateLimit"`
}

// EgressRule makes traffic leaving through NetworkID use one of IPs as source address.
type EgressRule struct {
	NetworkID string   `json:"networkID"`
	IPs       []string `json:"ips"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// InfrastructureStatus is what the infrastructure actuator reports back.
type InfrastructureStatus struct {
	metav1.TypeMeta `json:",inline"`

	// Firewall is the state of the cluster's firewall.
	Firewall FirewallStatus `json:"firewall"`
	// NetworkID is the metal-api ID of the cluster's private network; empty in statuses written
	// before the field existed.
	// +optional
	NetworkID string `json:"networkID,omitempty"`
	// EgressIPs are the firewall's SNAT source addresses, one or more per external network.
	// +optional
	EgressIPs []EgressIP `json:"egressIPs,omitempty"`
}

// EgressIP is an egress address of the firewall in an external network.
type EgressIP struct {
	// NetworkID is the external network.
	NetworkID string `json:"networkID"`
	// IP is the address.
	IP string `json:"ip"`
}

// FirewallStatus is the observed state of a cluster's firewall.
type FirewallStatus struct {
	// MachineID is the metal-api machine ID of the firewall.
	MachineID string `json:"machineID"`
}
