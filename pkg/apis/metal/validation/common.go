// Package validation checks provider configs of the metal provider type (internal version,
// package metal) and returns every problem as a field.ErrorList with full field paths, so an
// admission webhook can report them all at once. Checks of a config on its own are separate
// from checks against the CloudProfileConfig it will run with.
package validation

import (
	"fmt"
	"net/netip"
	"net/url"
	"regexp"

	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// idRE is the form of metal-api entity IDs (partitions, projects, networks, sizes, images).
var idRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._:-]{0,127}$`)

const idMsg = "must be a metal-api ID: 1-128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit"

// validateID requires a well-formed metal-api ID.
func validateID(id string, p *field.Path) field.ErrorList {
	if id == "" {
		return field.ErrorList{field.Required(p, "")}
	}
	if !idRE.MatchString(id) {
		return field.ErrorList{field.Invalid(p, id, idMsg)}
	}
	return nil
}

// validatePartitionID requires an ID that is also a valid label value, since a partition is
// the nodes' topology.kubernetes.io/zone.
func validatePartitionID(id string, p *field.Path) field.ErrorList {
	if errs := validateID(id, p); len(errs) > 0 {
		return errs
	}
	var all field.ErrorList
	for _, msg := range utilvalidation.IsValidLabelValue(id) {
		all = append(all, field.Invalid(p, id, "partition IDs are zone labels: "+msg))
	}
	return all
}

// validateIDList requires each entry to be an ID and the list to hold no duplicates.
func validateIDList(ids []string, p *field.Path) field.ErrorList {
	var all field.ErrorList
	seen := map[string]bool{}
	for i, id := range ids {
		all = append(all, validateID(id, p.Index(i))...)
		if seen[id] {
			all = append(all, field.Duplicate(p.Index(i), id))
		}
		seen[id] = true
	}
	return all
}

// validateIP requires a plain IPv4 or IPv6 address.
func validateIP(s string, p *field.Path) field.ErrorList {
	if s == "" {
		return field.ErrorList{field.Required(p, "")}
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return field.ErrorList{field.Invalid(p, s, "must be an IPv4 or IPv6 address")}
	}
	if a.IsUnspecified() {
		return field.ErrorList{field.Invalid(p, s, "must not be the unspecified address")}
	}
	return nil
}

// validateCIDR requires a network prefix in canonical form (no host bits set).
func validateCIDR(s string, p *field.Path) field.ErrorList {
	pfx, err := netip.ParsePrefix(s)
	if err != nil {
		return field.ErrorList{field.Invalid(p, s, "must be a CIDR such as 10.0.0.0/8 or 2001:db8::/32")}
	}
	if pfx.Masked() != pfx {
		return field.ErrorList{field.Invalid(p, s, fmt.Sprintf("has host bits set; did you mean %s?", pfx.Masked()))}
	}
	return nil
}

// validateHTTPURL requires an absolute http or https URL with a host.
func validateHTTPURL(s string, p *field.Path) field.ErrorList {
	if s == "" {
		return field.ErrorList{field.Required(p, "")}
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return field.ErrorList{field.Invalid(p, s, "must be an http or https URL with a host")}
	}
	return nil
}
