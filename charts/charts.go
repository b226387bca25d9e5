// Package charts holds metalforge's Helm charts and embeds them, so the Gardener extension renders
// them in-process (gardener's chart renderer, the helm engine; no helm binary):
//
//   - gardener-extension-provider-metal: the extension itself (Deployment, RBAC, ServiceAccount),
//     installed into a seed by gardenlet from the ControllerDeployment;
//   - internal/seed-controlplane: metal-ccm in the shoot's namespace of the seed;
//   - internal/shoot-controlplane: what the control plane needs inside the shoot (metal-ccm's RBAC,
//     the firewall namespace and the default ClusterwideNetworkPolicies);
//   - internal/shoot-crds: the ClusterwideNetworkPolicy CRD, taken at render time from
//     firewall-controller/crds (values key crd, see ClusterwideNetworkPolicyCRD);
//   - firewall-controller: the shoot-side resources of controllers/firewall.
package charts

import (
	"embed"
	"fmt"
)

// Chart paths inside FS.
const (
	ExtensionPath         = "gardener-extension-provider-metal"
	SeedControlPlanePath  = "internal/seed-controlplane"
	ShootControlPlanePath = "internal/shoot-controlplane"
	ShootCRDsPath         = "internal/shoot-crds"
	// CWNPCRDPath is the ClusterwideNetworkPolicy CRD of controllers/firewall.
	CWNPCRDPath = "firewall-controller/crds/metal-stack.io_clusterwidenetworkpolicies.yaml"
)

// files is the embedded chart tree. It is package state because go:embed only fills package-level
// variables; it is read-only.
//
//go:embed all:gardener-extension-provider-metal all:internal firewall-controller/crds
var files embed.FS

// FS returns the embedded charts (read-only).
func FS() embed.FS { return files }

// ClusterwideNetworkPolicyCRD returns the CRD manifest of ClusterwideNetworkPolicy
// (metal-stack.io/v1), as charts/firewall-controller ships it.
func ClusterwideNetworkPolicyCRD() ([]byte, error) {
	b, err := files.ReadFile(CWNPCRDPath)
	if err != nil {
		return nil, fmt.Errorf("read clusterwide network policy crd: %w", err)
	}
	return b, nil
}
