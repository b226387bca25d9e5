package v1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// State is the outcome of the last reconcile of a policy.
type State string

// States of a policy.
const (
	// StateApplied: the policy is part of the ruleset installed on the firewall.
	StateApplied State = "Applied"
	// StateError: the ruleset containing the policy could not be built or installed; the firewall
	// keeps its previous rules.
	StateError State = "Error"
	// StateIgnored: the policy is not in namespace firewall and has no effect.
	StateIgnored State = "Ignored"
)

// ClusterwideNetworkPolicy allows traffic between the cluster's networks and the outside world
// through the cluster's firewall: ingress from CIDRs, egress to CIDRs or DNS names, on ports.
// Everything not allowed by some policy (or by a Service of type LoadBalancer) is dropped.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=cwnp,scope=Namespaced
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.state`
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.message`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ClusterwideNetworkPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   PolicySpec   `json:"spec,omitempty"`
	Status PolicyStatus `json:"status,omitempty"`
}

// ClusterwideNetworkPolicyList is a list of policies.
//
// +kubebuilder:object:root=true
type ClusterwideNetworkPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterwideNetworkPolicy `json:"items"`
}

// PolicySpec is what a policy allows.
type PolicySpec struct {
	// Description is free text for humans.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Description string `json:"description,omitempty"`
	// Ingress rules allow traffic from the outside into the cluster's networks.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	Ingress []IngressRule `json:"ingress,omitempty"`
	// Egress rules allow traffic from the cluster's networks to the outside.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	Egress []EgressRule `json:"egress,omitempty"`
}

// IngressRule allows traffic from any of From on any of Ports.
type IngressRule struct {
	// From are the allowed sources; empty allows none.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	From []IPBlock `json:"from,omitempty"`
	// Ports are the allowed destination ports; empty allows every port and protocol.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	Ports []PolicyPort `json:"ports,omitempty"`
}

// EgressRule allows traffic to any of To or ToFQDNs on any of Ports.
//
// +kubebuilder:validation:XValidation:rule="!(has(self.to) && size(self.to) > 0 && has(self.toFQDNs) && size(self.toFQDNs) > 0)",message="a rule has either to or toFQDNs, not both"
type EgressRule struct {
	// To are the allowed destinations.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	To []IPBlock `json:"to,omitempty"`
	// ToFQDNs are allowed destinations by DNS name: the firewall's DNS proxy learns their
	// addresses from the answers it relays (for as long as the answers' TTLs).
	// +optional
	// +kubebuilder:validation:MaxItems=64
	ToFQDNs []FQDNSelector `json:"toFQDNs,omitempty"`
	// Ports are the allowed destination ports; empty allows every port and protocol.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	Ports []PolicyPort `json:"ports,omitempty"`
}

// IPBlock is an IPv4 or IPv6 CIDR with exceptions (the shape of networking.k8s.io/v1 IPBlock).
//
// +kubebuilder:validation:XValidation:rule="!has(self.except) || !isCIDR(self.cidr) || self.except.all(e, !isCIDR(e) || (cidr(e).ip().family() == cidr(self.cidr).ip().family() && cidr(self.cidr).containsCIDR(cidr(e))))",message="every except must lie inside cidr"
type IPBlock struct {
	// CIDR is a prefix such as 192.0.2.0/24 or 2001:db8::/32.
	// +kubebuilder:validation:MaxLength=43
	// +kubebuilder:validation:XValidation:rule="isCIDR(self)",message="cidr must be a CIDR such as 192.0.2.0/24"
	CIDR string `json:"cidr"`
	// Except are prefixes inside CIDR that are not allowed.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=43
	// +kubebuilder:validation:XValidation:rule="self.all(e, isCIDR(e))",message="except must hold CIDRs"
	Except []string `json:"except,omitempty"`
}

// PolicyPort is a destination port or port range (the shape of networking.k8s.io/v1
// NetworkPolicyPort).
//
// +kubebuilder:validation:XValidation:rule="!has(self.port) || (type(self.port) == int && self.port >= 1 && self.port <= 65535)",message="port must be a number between 1 and 65535 (named ports are not supported)"
// +kubebuilder:validation:XValidation:rule="!has(self.endPort) || (has(self.port) && type(self.port) == int)",message="endPort needs a numeric port"
// +kubebuilder:validation:XValidation:rule="!has(self.endPort) || !has(self.port) || type(self.port) != int || self.endPort >= self.port",message="endPort must not be less than port"
type PolicyPort struct {
	// Protocol is TCP or UDP (default TCP).
	// +optional
	// +kubebuilder:validation:Enum=TCP;UDP
	Protocol *corev1.Protocol `json:"protocol,omitempty"`
	// Port is a port number (1-65535); absent means every port. Named ports are not supported
	// on the firewall.
	// +optional
	// +kubebuilder:validation:XIntOrString
	Port *intstr.IntOrString `json:"port,omitempty"`
	// EndPort makes Port..EndPort a range.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	EndPort *int32 `json:"endPort,omitempty"`
}

// FQDNSelector selects DNS names: exactly one of MatchName and MatchPattern.
//
// +kubebuilder:validation:XValidation:rule="has(self.matchName) != has(self.matchPattern)",message="exactly one of matchName and matchPattern"
type FQDNSelector struct {
	// MatchName is a DNS name such as example.com.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^([a-zA-Z0-9_]([a-zA-Z0-9_-]{0,61}[a-zA-Z0-9_])?\.)*[a-zA-Z0-9_]([a-zA-Z0-9_-]{0,61}[a-zA-Z0-9_])?\.?$`
	MatchName string `json:"matchName,omitempty"`
	// MatchPattern is a DNS name with * wildcards, such as *.example.com.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-zA-Z0-9_*.-]+$`
	MatchPattern string `json:"matchPattern,omitempty"`
}

// PolicyStatus is what the firewall-controller made of a policy.
type PolicyStatus struct {
	// State is Applied, Error or Ignored.
	// +optional
	State State `json:"state,omitempty"`
	// Message says why a policy is in Error or Ignored.
	// +optional
	Message string `json:"message,omitempty"`
	// ObservedGeneration is the generation the state refers to.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}
