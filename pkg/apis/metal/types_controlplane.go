package metal

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// ControlPlaneConfig is the provider config of a Shoot's control plane.
type ControlPlaneConfig struct {
	metav1.TypeMeta

	// CloudControllerManager configures metal-ccm.
	CloudControllerManager *CloudControllerManagerConfig
	// FeatureGates switch optional control plane features.
	FeatureGates ControlPlaneFeatures
	// CustomDefaultStorageClass replaces the default storage class; nil keeps ours.
	CustomDefaultStorageClass *CustomDefaultStorageClass
	// NetworkAccessType is how the cluster may reach external networks.
	NetworkAccessType *NetworkAccessType
}

// CloudControllerManagerConfig configures the cloud-controller-manager (metal-ccm).
type CloudControllerManagerConfig struct {
	// FeatureGates are Kubernetes feature gates passed to the cloud-controller-manager.
	FeatureGates map[string]bool
	// DefaultExternalNetwork is the network LoadBalancer IPs are allocated from; nil means the
	// first external network of the firewall.
	DefaultExternalNetwork *string
}

// ControlPlaneFeatures are optional control plane features. Fields only metal-stack's own
// deployment acts on are accepted so existing manifests decode; see the package README.
type ControlPlaneFeatures struct {
	// MachineControllerManagerOOT is accepted for compatibility; the out-of-tree MCM is always on.
	MachineControllerManagerOOT *bool
	// ClusterAudit deploys a non-empty audit policy and forwards audit events into the cluster.
	ClusterAudit *bool
	// AuditToSplunk forwards audit events to Splunk as well (needs ClusterAudit).
	AuditToSplunk *bool
	// DurosStorageEncryption deploys encrypted storage classes for the duros storage driver.
	DurosStorageEncryption *bool
	// RestrictEgress limits the cluster's egress to the API server and required dependencies.
	RestrictEgress *bool
}

// CustomDefaultStorageClass names the storage class to mark as default; "" marks none.
type CustomDefaultStorageClass struct {
	ClassName string
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
