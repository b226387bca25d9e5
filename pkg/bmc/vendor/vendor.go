// Package vendor names BMC vendors the same way wherever a vendor is found: from the IANA
// enterprise number in an IPMI Get Device ID response (the hammer, in-band) or from the
// Manufacturer of a Redfish Manager or ComputerSystem. The BMC quirks table is keyed by these names.
// It imports nothing but the standard library, so the hammer can link it.
package vendor

import "strings"

// Vendor names.
const (
	Dell       = "Dell"
	HPE        = "HPE"
	Supermicro = "Supermicro"
	Lenovo     = "Lenovo"
	Intel      = "Intel"
	Fujitsu    = "Fujitsu"
	Cisco      = "Cisco"
	Quanta     = "Quanta"
	AMI        = "AMI"
	IBM        = "IBM"
	// OpenIPMI is OpenIPMI's ipmi_sim (manufacturer MontaVista), the BMC of the lab's QEMU machines.
	OpenIPMI = "OpenIPMI"
)

// FromIANA returns the vendor of an IPMI manufacturer ID (an IANA private enterprise number), or
// "" when it is not one we are sure of; unknown vendors get the default quirks.
func FromIANA(id uint32) string {
	switch id {
	case 2:
		return IBM
	case 11, 47196: // Hewlett-Packard (iLO up to 4), Hewlett Packard Enterprise (iLO 5 and later)
		return HPE
	case 343:
		return Intel
	case 674:
		return Dell
	case 4753: // MontaVista, the manufacturer ipmi_sim reports
		return OpenIPMI
	case 5771:
		return Cisco
	case 7244:
		return Quanta
	case 10368:
		return Fujitsu
	case 10876:
		return Supermicro
	case 19046:
		return Lenovo
	case 20974:
		return AMI
	}
	return ""
}

// Normalize maps a free-form manufacturer string (Redfish Manufacturer, an operator's input, or a
// name this package returned) to a vendor name; unknown strings come back trimmed and unchanged.
func Normalize(s string) string {
	s = strings.TrimSpace(s)
	l := strings.ToLower(s)
	// Substrings of Redfish Manufacturer values, lower case, in match order.
	manufacturers := []struct{ sub, name string }{
		{"dell", Dell}, {"hewlett", HPE}, {"hpe", HPE}, {"supermicro", Supermicro}, {"lenovo", Lenovo},
		{"intel", Intel}, {"fujitsu", Fujitsu}, {"cisco", Cisco}, {"quanta", Quanta},
		{"american megatrends", AMI}, {"ami", AMI}, {"ibm", IBM}, {"montavista", OpenIPMI}, {"openipmi", OpenIPMI},
	}
	for _, m := range manufacturers {
		if m.sub == "ami" || m.sub == "ibm" || m.sub == "hpe" {
			// Short names only match whole words ("HPE", "AMI"), not "Champion" or "Mainboard".
			for _, w := range strings.FieldsFunc(l, func(r rune) bool { return r == ' ' || r == ',' || r == '.' || r == '-' }) {
				if w == m.sub {
					return m.name
				}
			}
			continue
		}
		if strings.Contains(l, m.sub) {
			return m.name
		}
	}
	return s
}
