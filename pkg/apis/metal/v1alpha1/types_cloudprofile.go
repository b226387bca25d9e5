package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// CloudProfileConfig is the provider config of a CloudProfile: the metal-api control planes
// and, per control plane, the partitions, firewall images and firewall-controller versions.
type CloudProfileConfig struct {
	metav1.TypeMeta `json:",inline"`

	// MetalControlPlanes maps a control plane name to its configuration.
	MetalControlPlanes map[string]MetalControlPlane `json:"metalControlPlanes"`
}

// MetalControlPlane is one metal-api installation.
type MetalControlPlane struct {
	// Endpoint is the URL of the metal-api.
	Endpoint string `json:"endpoint"`
	// Partitions maps partition IDs (the CloudProfile's zones) to their settings.
	Partitions map[string]Partition `json:"partitions"`
	// FirewallImages are the images firewalls may use; empty allows all.
	// +optional
	FirewallImages []string `json:"firewallImages,omitempty"`
	// FirewallControllerVersions are the firewall-controller binaries on offer.
	// +optional
	FirewallControllerVersions []FirewallControllerVersion `json:"firewallControllerVersions,omitempty"`
	// NftablesExporter is the nftables exporter the firewall-controller runs.
	// +optional
	NftablesExporter NftablesExporter `json:"nftablesExporter,omitempty"`
}

// FirewallControllerVersion is one downloadable firewall-controller binary. Version need not be
// semver, but only semver versions take part in choosing the newest.
type FirewallControllerVersion struct {
	// Version is the version name, e.g. v2.3.4.
	Version string `json:"version"`
	// URL is where the binary is downloaded from.
	URL string `json:"url"`
	// Classification is preview, supported or deprecated.
	// +optional
	Classification *VersionClassification `json:"classification,omitempty"`
}

// NftablesExporter is a downloadable nftables exporter binary.
type NftablesExporter struct {
	Version string `json:"version"`
	URL     string `json:"url"`
}

// VersionClassification is the life-cycle state of a version.
type VersionClassification string

const (
	// ClassificationPreview is a new version not offered for automatic updates yet.
	ClassificationPreview VersionClassification = "preview"
	// ClassificationSupported is a recommended version, eligible for automatic updates.
	ClassificationSupported VersionClassification = "supported"
	// ClassificationDeprecated is a version that should be replaced and will expire.
	ClassificationDeprecated VersionClassification = "deprecated"
)

// Partition holds per-partition settings of a control plane.
type Partition struct {
	// FirewallTypes are the sizes firewalls may use in this partition; empty allows all.
	// +optional
	FirewallTypes []string `json:"firewallTypes,omitempty"`
	// NetworkIsolation, when set, allows clusters with restricted or forbidden network access.
	// +optional
	NetworkIsolation *NetworkIsolation `json:"networkIsolation,omitempty"`
}

// NetworkIsolation lists what network-isolated clusters of a partition may still reach.
type NetworkIsolation struct {
	// AllowedNetworks are the CIDRs isolated clusters may talk to.
	// +optional
	AllowedNetworks AllowedNetworks `json:"allowedNetworks,omitempty"`
	// DNSServers are the DNS servers isolated clusters use, as IP or IP:port.
	// +optional
	DNSServers []string `json:"dnsServers,omitempty"`
	// NTPServers are the NTP servers isolated clusters use.
	// +optional
	NTPServers []string `json:"ntpServers,omitempty"`
	// RegistryMirrors serve the container images isolated clusters need.
	// +optional
	RegistryMirrors []RegistryMirror `json:"registryMirrors,omitempty"`
}

// AllowedNetworks are CIDRs reachable from isolated clusters.
type AllowedNetworks struct {
	// Ingress are the CIDRs allowed for incoming traffic such as LoadBalancer services.
	// +optional
	Ingress []string `json:"ingress,omitempty"`
	// Egress are the CIDRs allowed for outgoing traffic.
	// +optional
	Egress []string `json:"egress,omitempty"`
}

// RegistryMirror is a container registry mirror reachable from isolated clusters.
type RegistryMirror struct {
	// Name describes the mirror.
	Name string `json:"name"`
	// Endpoint is the URL of the mirror, e.g. https://registry.example.com.
	Endpoint string `json:"endpoint"`
	// IP is the address the mirror is reached at.
	IP string `json:"ip"`
	// Port is the port the mirror listens on.
	Port int32 `json:"port"`
	// MirrorOf are the registries this one mirrors, e.g. docker.io.
	MirrorOf []string `json:"mirrorOf"`
}
