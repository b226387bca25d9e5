package metal

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// WorkerConfig is the provider config of one worker pool. The machine type of the pool is the
// metal-api size and the machine image the metal-api image, so most pools need none.
type WorkerConfig struct {
	metav1.TypeMeta

	// AdditionalNetworks are metal-api networks (e.g. a storage network) attached to the pool's
	// machines in addition to the cluster's private network.
	AdditionalNetworks []string
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// WorkerStatus is what the worker actuator reports back.
type WorkerStatus struct {
	metav1.TypeMeta

	// MachineImages are the images in use, so a pool keeps reconciling after its version was
	// removed from the cloud profile.
	MachineImages []MachineImage
}

// MachineImage maps a Gardener machine image name and version to a metal-api image ID.
type MachineImage struct {
	Name    string
	Version string
	Image   string
}
