package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// WorkerConfig is the provider config of one worker pool. The machine type of the pool is the
// metal-api size and the machine image the metal-api image, so most pools need none. This kind
// is metalforge's own: the existing "metal" provider type has no worker provider config.
type WorkerConfig struct {
	metav1.TypeMeta `json:",inline"`

	// AdditionalNetworks are metal-api networks (e.g. a storage network) attached to the pool's
	// machines in addition to the cluster's private network.
	// +optional
	AdditionalNetworks []string `json:"additionalNetworks,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// WorkerStatus is what the worker actuator reports back.
type WorkerStatus struct {
	metav1.TypeMeta `json:",inline"`

	// MachineImages are the images in use, so a pool keeps reconciling after its version was
	// removed from the cloud profile.
	// +optional
	MachineImages []MachineImage `json:"machineImages,omitempty"`
}

// MachineImage maps a Gardener machine image name and version to a metal-api image ID.
type MachineImage struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Image   string `json:"image"`
}
