package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// ControlPlaneConfig is the provider config of a Shoot's control plane.
type ControlPlaneConfig struct {
	metav1.TypeMeta `json:",inline"`

	// CloudControllerManager configures metal-ccm.
	// +optional
	CloudControllerManager *CloudControllerManagerConfig `json:"cloudControllerManager,omitempty"`
	// FeatureGates switch optional control plane features.
	// +optional
	FeatureGates ControlPlaneFeatures `json:"featureGates,omitempty"`
	// CustomDefaultStorageClass replaces the default storage class; nil keeps ours.
	// +optional
	CustomDefaultStorageClass *CustomDefaultStorageClass `json:"customDefaultStorageClass,omitempty"`
	// NetworkAccessType is how the cluster may reach external networks (default baseline).
	// +optional
	NetworkAccessType *NetworkAccessType `json:"networkAccessType,omitempty"`
}

// CloudControllerManagerConfig configures the cloud-controller-manager (metal-ccm).
type CloudControllerManagerConfig struct {
	// FeatureGates are Kubernetes feature gates passed to the cloud-controller-manager.
	// +optional
	FeatureGates map[string]bool `json:"featureGates,omitempty"`
	// DefaultExternalNetwork is the network LoadBalancer IPs are allocated from; nil means the
	// first external network of the firewall.
	// +optional
	DefaultExternalNetwork *string `json:"defaultExternalNetwork,omitempty"`
}

// ControlPlaneFeatures are optional control plane features.
type ControlPlaneFeatures struct {
	// MachineControllerManagerOOT is accepted for compatibility; the out-of-tree MCM is always on.
	// +optional
	MachineControllerManagerOOT *bool `json:"machineControllerManagerOOT,omitempty"`
	// ClusterAudit deploys a non-empty audit policy and forwards audit events into the cluster.
	// +optional
	ClusterAudit *bool `json:"clusterAudit,omitempty"`
	// AuditToSplunk forwards audit events to Splunk as well (needs ClusterAudit).
	// +optional
	AuditToSplunk *bool `json:"auditToSplunk,omitempty"`
	// DurosStorageEncryption deploys encrypted storage classes for the duros storage driver.
	// +optional
	DurosStorageEncryption *bool `json:"durosStorageEncryption,omitempty"`
	// RestrictEgress limits the cluster's egress to the API server and required dependencies.
	// +optional
	RestrictEgress *bool `json:"restrictEgress,omitempty"`
}

// CustomDefaultStorageClass names the storage class to mark as default; "" marks none.
type CustomDefaultStorageClass struct {
	ClassName string `json:"className"`
}

// NetworkAccessType defines how a cluster may reach external networks.
type NetworkAccessType string

const (
	// NetworkAccessBaseline lets the cluster reach external networks freely (the default).
	NetworkAccessBaseline NetworkAccessType = "baseline"
	// NetworkAccessRestricted defaults egress to the partition's registries, DNS and NTP
	// servers; users may still add their own egress rules.
	NetworkAccessRestricted NetworkAccessType = "restricted"
	// NetworkAccessForbidden allows only the partition's allowed networks, enforced by the
	// firewall, for egress and for LoadBalancer ingress.
	NetworkAccessForbidden NetworkAccessType = "forbidden"
)
