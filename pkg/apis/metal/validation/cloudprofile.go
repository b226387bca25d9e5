package validation

import (
	"net"
	"net/netip"
	"slices"
	"sort"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/metalforge/metalforge/pkg/apis/metal"
)

var classifications = []metal.VersionClassification{metal.ClassificationPreview, metal.ClassificationSupported, metal.ClassificationDeprecated}

// ValidateCloudProfileConfig checks a CloudProfileConfig on its own. fldPath is where it sits,
// e.g. spec.providerConfig of the CloudProfile. A partition may be served by one control plane
// only.
func ValidateCloudProfileConfig(c *metal.CloudProfileConfig, fldPath *field.Path) field.ErrorList {
	var all field.ErrorList
	mp := fldPath.Child("metalControlPlanes")
	if len(c.MetalControlPlanes) == 0 {
		all = append(all, field.Required(mp, "at least one metal control plane"))
	}
	servedBy := map[string]string{}
	for _, name := range sortedKeys(c.MetalControlPlanes) {
		mcp := c.MetalControlPlanes[name]
		p := mp.Key(name)
		if name == "" {
			all = append(all, field.Invalid(p, name, "control plane name must not be empty"))
		}
		all = append(all, validateHTTPURL(mcp.Endpoint, p.Child("endpoint"))...)
		if len(mcp.Partitions) == 0 {
			all = append(all, field.Required(p.Child("partitions"), "at least one partition"))
		}
		for _, id := range sortedKeys(mcp.Partitions) {
			pp := p.Child("partitions").Key(id)
			all = append(all, validatePartitionID(id, pp)...)
			if other, dup := servedBy[id]; dup {
				all = append(all, field.Duplicate(pp, "partition is also served by control plane "+other))
			}
			servedBy[id] = name
			all = append(all, validatePartition(mcp.Partitions[id], pp)...)
		}
		all = append(all, validateIDList(mcp.FirewallImages, p.Child("firewallImages"))...)
		all = append(all, validateControllerVersions(mcp.FirewallControllerVersions, p.Child("firewallControllerVersions"))...)
		if e := mcp.NftablesExporter; e.Version != "" || e.URL != "" {
			ep := p.Child("nftablesExporter")
			if e.Version == "" {
				all = append(all, field.Required(ep.Child("version"), "needed when url is set"))
			}
			all = append(all, validateHTTPURL(e.URL, ep.Child("url"))...)
		}
	}
	return all
}

func validatePartition(part metal.Partition, p *field.Path) field.ErrorList {
	all := validateIDList(part.FirewallTypes, p.Child("firewallTypes"))
	ni := part.NetworkIsolation
	if ni == nil {
		return all
	}
	np := p.Child("networkIsolation")
	for i, c := range ni.AllowedNetworks.Ingress {
		all = append(all, validateCIDR(c, np.Child("allowedNetworks", "ingress").Index(i))...)
	}
	for i, c := range ni.AllowedNetworks.Egress {
		all = append(all, validateCIDR(c, np.Child("allowedNetworks", "egress").Index(i))...)
	}
	if len(ni.DNSServers) == 0 {
		all = append(all, field.Required(np.Child("dnsServers"), "isolated clusters need a DNS server"))
	}
	for i, s := range ni.DNSServers {
		all = append(all, validateIPOrIPPort(s, np.Child("dnsServers").Index(i))...)
	}
	if len(ni.NTPServers) == 0 {
		all = append(all, field.Required(np.Child("ntpServers"), "isolated clusters need an NTP server"))
	}
	for i, s := range ni.NTPServers {
		if _, err := netip.ParseAddr(s); err == nil {
			continue
		}
		for _, msg := range validation.IsDNS1123Subdomain(s) {
			all = append(all, field.Invalid(np.Child("ntpServers").Index(i), s, "must be an IP address or a host name: "+msg))
		}
	}
	if len(ni.RegistryMirrors) == 0 {
		all = append(all, field.Required(np.Child("registryMirrors"), "isolated clusters need a registry mirror"))
	}
	for i, m := range ni.RegistryMirrors {
		mp := np.Child("registryMirrors").Index(i)
		if m.Name == "" {
			all = append(all, field.Required(mp.Child("name"), ""))
		}
		all = append(all, validateHTTPURL(m.Endpoint, mp.Child("endpoint"))...)
		all = append(all, validateIP(m.IP, mp.Child("ip"))...)
		for _, msg := range validation.IsValidPortNum(int(m.Port)) {
			all = append(all, field.Invalid(mp.Child("port"), m.Port, msg))
		}
		if len(m.MirrorOf) == 0 {
			all = append(all, field.Required(mp.Child("mirrorOf"), "at least one registry, e.g. docker.io"))
		}
		for j, r := range m.MirrorOf {
			if r == "" {
				all = append(all, field.Required(mp.Child("mirrorOf").Index(j), ""))
			}
		}
	}
	return all
}

func validateIPOrIPPort(s string, p *field.Path) field.ErrorList {
	if _, err := netip.ParseAddrPort(s); err == nil {
		return nil
	}
	if host, _, err := net.SplitHostPort(s); err == nil && host != "" {
		return field.ErrorList{field.Invalid(p, s, "must be an IP address, optionally with :port")}
	}
	return validateIP(s, p)
}

func validateControllerVersions(vs []metal.FirewallControllerVersion, p *field.Path) field.ErrorList {
	var all field.ErrorList
	seen := map[string]bool{}
	for i, v := range vs {
		vp := p.Index(i)
		switch {
		case v.Version == "":
			all = append(all, field.Required(vp.Child("version"), ""))
		case v.Version == "auto":
			all = append(all, field.Invalid(vp.Child("version"), v.Version, `"auto" is reserved for picking the newest supported version`))
		case seen[v.Version]:
			all = append(all, field.Duplicate(vp.Child("version"), v.Version))
		}
		seen[v.Version] = true
		all = append(all, validateHTTPURL(v.URL, vp.Child("url"))...)
		if v.Classification != nil && !slices.Contains(classifications, *v.Classification) {
			all = append(all, field.NotSupported(vp.Child("classification"), *v.Classification, classifications))
		}
	}
	return all
}

// ValidateCloudProfileConfigZones checks the config against the regions of the CloudProfile it
// is embedded in (region name to zone names): every zone must be a partition that a control
// plane serves. regionsPath is the path of the CloudProfile's regions, e.g. spec.regions.
func ValidateCloudProfileConfigZones(c *metal.CloudProfileConfig, regions map[string][]string, regionsPath *field.Path) field.ErrorList {
	var all field.ErrorList
	ids := partitionIDs(c)
	for _, region := range sortedKeys(regions) {
		for i, zone := range regions[region] {
			if !slices.Contains(ids, zone) {
				all = append(all, field.NotSupported(regionsPath.Key(region).Child("zones").Index(i), zone, ids))
			}
		}
	}
	return all
}

func findPartition(c *metal.CloudProfileConfig, id string) (*metal.MetalControlPlane, *metal.Partition, bool) {
	if c == nil {
		return nil, nil, false
	}
	for _, name := range sortedKeys(c.MetalControlPlanes) {
		mcp := c.MetalControlPlanes[name]
		if part, ok := mcp.Partitions[id]; ok {
			return &mcp, &part, true
		}
	}
	return nil, nil, false
}

func partitionIDs(c *metal.CloudProfileConfig) []string {
	var ids []string
	if c == nil {
		return ids
	}
	for _, mcp := range c.MetalControlPlanes {
		for id := range mcp.Partitions {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
