package helper

import (
	"fmt"
	"slices"
	"sort"

	"k8s.io/apimachinery/pkg/util/version"

	"github.com/metalforge/metalforge/pkg/apis/metal"
)

// FindPartition returns the control plane serving partitionID, its name and the partition's
// settings; ok is false when no control plane serves it.
func FindPartition(c *metal.CloudProfileConfig, partitionID string) (name string, cp *metal.MetalControlPlane, p *metal.Partition, ok bool) {
	if c == nil {
		return "", nil, nil, false
	}
	names := make([]string, 0, len(c.MetalControlPlanes))
	for n := range c.MetalControlPlanes {
		names = append(names, n)
	}
	sort.Strings(names) // deterministic when validation was skipped and a partition is duplicated
	for _, n := range names {
		mcp := c.MetalControlPlanes[n]
		if part, found := mcp.Partitions[partitionID]; found {
			return n, &mcp, &part, true
		}
	}
	return "", nil, nil, false
}

// AutoControllerVersion asks for the newest supported firewall-controller version.
const AutoControllerVersion = "auto"

// FirewallControllerVersion picks the firewall-controller to run: the named version, or for ""
// and "auto" the newest semver version classified supported (an unclassified version counts as
// supported).
func FirewallControllerVersion(cp *metal.MetalControlPlane, want string) (metal.FirewallControllerVersion, error) {
	if want != "" && want != AutoControllerVersion {
		i := slices.IndexFunc(cp.FirewallControllerVersions, func(v metal.FirewallControllerVersion) bool { return v.Version == want })
		if i < 0 {
			return metal.FirewallControllerVersion{}, fmt.Errorf("firewall-controller version %q is not offered by the cloud profile", want)
		}
		return cp.FirewallControllerVersions[i], nil
	}
	var (
		best    metal.FirewallControllerVersion
		bestVer *version.Version
	)
	for _, v := range cp.FirewallControllerVersions {
		if v.Classification != nil && *v.Classification != metal.ClassificationSupported {
			continue
		}
		sv, err := version.ParseSemantic(v.Version)
		if err != nil {
			continue // non-semver builds can be asked for by name only
		}
		if bestVer == nil || sv.GreaterThan(bestVer) {
			best, bestVer = v, sv
		}
	}
	if bestVer == nil {
		return metal.FirewallControllerVersion{}, fmt.Errorf("cloud profile offers no supported semver firewall-controller version")
	}
	return best, nil
}
