package validation

import (
	"slices"

	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/metalforge/metalforge/pkg/apis/metal"
)

// ValidateInfrastructureConfig checks an InfrastructureConfig on its own. fldPath is where the
// config sits in the enclosing object, e.g. spec.provider.infrastructureConfig.
func ValidateInfrastructureConfig(c *metal.InfrastructureConfig, fldPath *field.Path) field.ErrorList {
	var all field.ErrorList
	all = append(all, validatePartitionID(c.PartitionID, fldPath.Child("partitionID"))...)
	all = append(all, validateID(c.ProjectID, fldPath.Child("projectID"))...)
	all = append(all, validateFirewall(&c.Firewall, fldPath.Child("firewall"))...)
	return all
}

func validateFirewall(f *metal.Firewall, p *field.Path) field.ErrorList {
	var all field.ErrorList
	all = append(all, validateID(f.Size, p.Child("size"))...)
	all = append(all, validateID(f.Image, p.Child("image"))...)

	if len(f.Networks) == 0 {
		all = append(all, field.Required(p.Child("networks"), "at least one external network, or the cluster cannot bootstrap"))
	}
	all = append(all, validateIDList(f.Networks, p.Child("networks"))...)

	limited := map[string]bool{}
	for i, rl := range f.RateLimits {
		rp := p.Child("rateLimits").Index(i)
		switch {
		case rl.NetworkID == "":
			all = append(all, field.Required(rp.Child("networkID"), ""))
		case !slices.Contains(f.Networks, rl.NetworkID):
			all = append(all, field.Invalid(rp.Child("networkID"), rl.NetworkID, "must be one of the firewall's networks"))
		case limited[rl.NetworkID]:
			all = append(all, field.Duplicate(rp.Child("networkID"), rl.NetworkID))
		}
		limited[rl.NetworkID] = true
	}

	ruled := map[string]bool{}
	for i, er := range f.EgressRules {
		ep := p.Child("egressRules").Index(i)
		switch {
		case er.NetworkID == "":
			all = append(all, field.Required(ep.Child("networkID"), ""))
		case !slices.Contains(f.Networks, er.NetworkID):
			all = append(all, field.Invalid(ep.Child("networkID"), er.NetworkID, "must be one of the firewall's networks"))
		case ruled[er.NetworkID]:
			all = append(all, field.Duplicate(ep.Child("networkID"), er.NetworkID))
		}
		ruled[er.NetworkID] = true
		if len(er.IPs) == 0 {
			all = append(all, field.Required(ep.Child("ips"), "at least one source address"))
		}
		seen := map[string]bool{}
		for j, ip := range er.IPs {
			all = append(all, validateIP(ip, ep.Child("ips").Index(j))...)
			if seen[ip] {
				all = append(all, field.Duplicate(ep.Child("ips").Index(j), ip))
			}
			seen[ip] = true
		}
	}

	if f.FirewallHealthTimeout != nil && f.FirewallHealthTimeout.Duration < 0 {
		all = append(all, field.Invalid(p.Child("firewallHealthTimeout"), f.FirewallHealthTimeout.Duration.String(), "must not be negative (0 disables the timeout)"))
	}
	if f.FirewallCreateTimeout != nil && f.FirewallCreateTimeout.Duration <= 0 {
		all = append(all, field.Invalid(p.Child("firewallCreateTimeout"), f.FirewallCreateTimeout.Duration.String(), "must be positive"))
	}
	return all
}

// ValidateInfrastructureConfigUpdate checks a change: a cluster cannot move to another project
// or partition.
func ValidateInfrastructureConfigUpdate(oldC, newC *metal.InfrastructureConfig, fldPath *field.Path) field.ErrorList {
	var all field.ErrorList
	all = append(all, apivalidation.ValidateImmutableField(newC.ProjectID, oldC.ProjectID, fldPath.Child("projectID"))...)
	all = append(all, apivalidation.ValidateImmutableField(newC.PartitionID, oldC.PartitionID, fldPath.Child("partitionID"))...)
	return all
}

// ValidateInfrastructureConfigAgainstCloudProfile checks that the partition is served by a
// control plane of the cloud profile and that the firewall's image, size and controller
// version are offered there.
func ValidateInfrastructureConfigAgainstCloudProfile(c *metal.InfrastructureConfig, cp *metal.CloudProfileConfig, fldPath *field.Path) field.ErrorList {
	mcp, part, ok := findPartition(cp, c.PartitionID)
	if !ok {
		return field.ErrorList{field.NotSupported(fldPath.Child("partitionID"), c.PartitionID, partitionIDs(cp))}
	}
	var all field.ErrorList
	fp := fldPath.Child("firewall")
	if len(mcp.FirewallImages) > 0 && !slices.Contains(mcp.FirewallImages, c.Firewall.Image) {
		all = append(all, field.NotSupported(fp.Child("image"), c.Firewall.Image, mcp.FirewallImages))
	}
	if len(part.FirewallTypes) > 0 && !slices.Contains(part.FirewallTypes, c.Firewall.Size) {
		all = append(all, field.NotSupported(fp.Child("size"), c.Firewall.Size, part.FirewallTypes))
	}
	if v := c.Firewall.ControllerVersion; v != "" && v != "auto" && len(mcp.FirewallControllerVersions) > 0 {
		var offered []string
		for _, fcv := range mcp.FirewallControllerVersions {
			offered = append(offered, fcv.Version)
		}
		if !slices.Contains(offered, v) {
			all = append(all, field.NotSupported(fp.Child("controllerVersion"), v, append(offered, "auto")))
		}
	}
	return all
}
