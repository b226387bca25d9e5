package validation

import (
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/metalforge/metalforge/pkg/apis/metal"
)

var networkAccessTypes = []metal.NetworkAccessType{metal.NetworkAccessBaseline, metal.NetworkAccessRestricted, metal.NetworkAccessForbidden}

// ValidateControlPlaneConfig checks a ControlPlaneConfig on its own. fldPath is where the
// config sits, e.g. spec.provider.controlPlaneConfig.
func ValidateControlPlaneConfig(c *metal.ControlPlaneConfig, fldPath *field.Path) field.ErrorList {
	var all field.ErrorList
	if ccm := c.CloudControllerManager; ccm != nil {
		cp := fldPath.Child("cloudControllerManager")
		all = append(all, validateCCMFeatureGates(ccm.FeatureGates, cp.Child("featureGates"))...)
		if ccm.DefaultExternalNetwork != nil {
			all = append(all, validateID(*ccm.DefaultExternalNetwork, cp.Child("defaultExternalNetwork"))...)
		}
	}
	fg := c.FeatureGates
	if fg.AuditToSplunk != nil && *fg.AuditToSplunk && (fg.ClusterAudit == nil || !*fg.ClusterAudit) {
		all = append(all, field.Forbidden(fldPath.Child("featureGates", "auditToSplunk"), "needs featureGates.clusterAudit"))
	}
	if sc := c.CustomDefaultStorageClass; sc != nil && sc.ClassName != "" {
		for _, msg := range validation.IsDNS1123Subdomain(sc.ClassName) {
			all = append(all, field.Invalid(fldPath.Child("customDefaultStorageClass", "className"), sc.ClassName, msg))
		}
	}
	if t := c.NetworkAccessType; t != nil && !isNetworkAccessType(*t) {
		all = append(all, field.NotSupported(fldPath.Child("networkAccessType"), *t, networkAccessTypes))
	}
	return all
}

func isNetworkAccessType(t metal.NetworkAccessType) bool {
	for _, v := range networkAccessTypes {
		if t == v {
			return true
		}
	}
	return false
}

func validateCCMFeatureGates(gates map[string]bool, p *field.Path) field.ErrorList {
	var all field.ErrorList
	known := ccmFeatureGates()
	for name := range gates {
		if !known[name] {
			all = append(all, field.Invalid(p.Key(name), name, "not a feature gate of the cloud-controller-manager"))
		}
	}
	return all
}

// ValidateControlPlaneConfigAgainstCloudProfile checks that a restricted or forbidden network
// access is possible in the cluster's partition: the partition must declare network isolation,
// and forbidden needs at least one allowed egress network (registries, DNS, NTP).
func ValidateControlPlaneConfigAgainstCloudProfile(c *metal.ControlPlaneConfig, partitionID string, cp *metal.CloudProfileConfig, fldPath *field.Path) field.ErrorList {
	if c.NetworkAccessType == nil || *c.NetworkAccessType == metal.NetworkAccessBaseline {
		return nil
	}
	p := fldPath.Child("networkAccessType")
	_, part, ok := findPartition(cp, partitionID)
	if !ok {
		return field.ErrorList{field.Forbidden(p, "partition "+partitionID+" is not in the cloud profile")}
	}
	if part.NetworkIsolation == nil {
		return field.ErrorList{field.Forbidden(p, "partition "+partitionID+" has no networkIsolation in the cloud profile")}
	}
	if *c.NetworkAccessType == metal.NetworkAccessForbidden && len(part.NetworkIsolation.AllowedNetworks.Egress) == 0 {
		return field.ErrorList{field.Forbidden(p, "partition "+partitionID+" allows no egress networks, a forbidden cluster could not pull images")}
	}
	return nil
}
