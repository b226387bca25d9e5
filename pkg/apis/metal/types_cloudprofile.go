package metal

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// CloudProfileConfig is the provider config of a CloudProfile: the metal-api control planes
// and, per control plane, the partitions, firewall images and firewall-controller versions.
type CloudProfileConfig struct {
	metav1.TypeMeta

	// MetalControlPlanes maps a control plane name to its configuration.
	MetalControlPlanes map[string]MetalControlPlane
}

// MetalControlPlane is one metal-api installation.
type MetalControlPlane struct {
	// Endpoint is the URL of the metal-api.
	Endpoint string
	// Partitions maps partition IDs (the CloudProfile's zones) to their settings.
	Partitions map[string]Partition
	// FirewallImages are the images firewalls may use; empty allows all.
	FirewallImages []string
	// FirewallControllerVersions are the firewall-controller binaries on offer.
	FirewallControllerVersions []FirewallControllerVersion
	// NftablesExporter is the nftables exporter the firewall-controller runs.
	NftablesExporter NftablesExporter
}

// FirewallControllerVersion is one downloadable firewall-controller binary. Version need not be
// semver, but only semver versions take part in choosing the newest.
type FirewallControllerVersion struct {
	Version        string
	URL            string
	Classification *VersionClassification
}

// NftablesExporter is a downloadable nftables exporter binary.
type NftablesExporter struct {
	Version string
	URL     string
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
	FirewallTypes []string
	// NetworkIsolation, when set, allows clusters with restricted or forbidden network access.
	NetworkIsolation *NetworkIsolation
}

// NetworkIsolation lists what network-isolated clusters of a partition may still reach.
type NetworkIsolation struct {
	// AllowedNetworks are the CIDRs isolated clusters may talk to.
	AllowedNetworks AllowedNetworks
	// DNSServers are the DNS servers isolated clusters use, as IP or IP:port.
	DNSServers []string
	// NTPServers are the NTP servers isolated clusters use.
	NTPServers []string
	// RegistryMirrors serve the container images isolated clusters need.
	RegistryMirrors []RegistryMirror
}

// AllowedNetworks are CIDRs reachable from isolated clusters.
type AllowedNetworks struct {
	// Ingress are the CIDRs allowed for incoming traffic such as LoadBalancer services.
	Ingress []string
	// Egress are the CIDRs allowed for outgoing traffic.
	Egress []string
}

// RegistryMirror is a container registry mirror reachable from isolated clusters.
type RegistryMirror struct {
	// Name describes the mirror.
	Name string
	// Endpoint is the URL of the mirror, e.g. https://registry.example.com.
	Endpoint string
	// IP is the address the mirror is reached at.
	IP string
	// Port is the port the mirror listens on.
	Port int32
	// MirrorOf are the registries this one mirrors, e.g. docker.io.
	MirrorOf []string
}
