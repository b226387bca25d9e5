// Package providerid formats and parses the Kubernetes provider IDs of metalforge machines,
// metal://<partition>/<machine-id>, which metal-ccm, the machine-controller-manager driver and the
// cluster-autoscaler provider must agree on.
package providerid

import (
	"fmt"
	"strings"
)

// Provider is the cloud provider name and the scheme of the IDs.
const Provider = "metal"

const prefix = Provider + "://"

// Format is the provider ID of a machine: metal://<partition>/<machine-id>.
func Format(partition, machineID string) string {
	return prefix + partition + "/" + machineID
}

// Is reports whether id is a metalforge provider ID.
func Is(id string) bool { return strings.HasPrefix(id, prefix) }

// Parse returns the machine ID of metal://<partition>/<id> (or metal://<id>, as written by hand).
func Parse(id string) (string, error) {
	rest, ok := strings.CutPrefix(id, prefix)
	if !ok {
		return "", fmt.Errorf("provider id %q does not start with %s", id, prefix)
	}
	m := rest[strings.LastIndexByte(rest, '/')+1:]
	if m == "" {
		return "", fmt.Errorf("provider id %q has no machine id", id)
	}
	return m, nil
}
