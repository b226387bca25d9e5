package fabric

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/metalforge/metalforge/pkg/api"
)

func TestDesiredOf(t *testing.T) {
	sw := &api.Switch{Meta: api.Meta{ID: "leaf1"}, PartitionID: "p1",
		Ports: []api.SwitchPort{{Name: "swp10"}, {Name: "swp2"}, {Name: "swp1"}, {Name: "swp3"}, {Name: "swp4"}, {Name: "swp5"}},
		Connections: []api.SwitchConnection{
			{Port: "swp1", MachineID: "m-tenant"}, {Port: "swp2", MachineID: "m-free"}, {Port: "swp3", MachineID: "m-gone"},
			{Port: "swp4", MachineID: "fw"}, {Port: "swp5", MachineID: "m-novrf"}, {Port: "swp10", MachineID: "m-other"},
		}}
	machines := map[string]*api.Machine{
		"m-tenant": {Meta: api.Meta{ID: "m-tenant"}, Allocation: &api.MachineAllocation{Role: api.RoleMachine, Networks: []api.MachineNetwork{
			{NetworkID: "a", Private: true, VRF: 20, ASN: 4200000001, Prefixes: []string{"10.0.0.0/22"}, IPs: []string{"10.0.0.1"}},
			{NetworkID: "internet", VRF: 104009, ASN: 4200000001, Prefixes: []string{"185.1.2.0/24"}, IPs: []string{"185.1.2.3"}},
		}}},
		"m-free": {Meta: api.Meta{ID: "m-free"}},
		"m-gone": nil,
		"fw": {Meta: api.Meta{ID: "fw"}, Allocation: &api.MachineAllocation{Role: api.RoleFirewall, Networks: []api.MachineNetwork{
			{NetworkID: "a", Private: true, VRF: 20, ASN: 4200000002, Prefixes: []string{"10.0.0.0/22"}, IPs: []string{"10.0.0.2"}},
			{NetworkID: "internet", VRF: 104009, ASN: 4200000002, IPs: []string{"185.1.2.4"}},
			{NetworkID: "underlay", Underlay: true, ASN: 4200000002, Prefixes: []string{"10.1.0.0/22"}, IPs: []string{"10.1.0.5"}},
		}}},
		"m-novrf": {Meta: api.Meta{ID: "m-novrf"}, Allocation: &api.MachineAllocation{Role: api.RoleMachine, Networks: []api.MachineNetwork{
			{NetworkID: "x", Private: true, ASN: 4200000003, IPs: []string{"10.9.0.1"}},
		}}},
		"m-other": {Meta: api.Meta{ID: "m-other"}, Allocation: &api.MachineAllocation{Role: api.RoleMachine, Networks: []api.MachineNetwork{
			{NetworkID: "b", Private: true, VRF: 10, ASN: 4200000004, Prefixes: []string{"10.0.4.0/22", "2001:db8::/64"}, IPs: []string{"10.0.4.1", "2001:db8::1"}},
		}}},
	}
	got := desiredOf(sw, machines)
	want := &SwitchDesired{SwitchID: "leaf1", PartitionID: "p1",
		Ports: []SwitchPortDesired{
			{Name: "swp1", State: PortTenant, MachineID: "m-tenant", VRF: "vrf20", VNI: 20, ASN: 4200000001,
				Prefixes: []string{"10.0.0.0/22", "185.1.2.3/32"}},
			{Name: "swp2", State: PortPXE},
			{Name: "swp3", State: PortPXE},
			{Name: "swp4", State: PortFirewall, MachineID: "fw", ASN: 4200000002, Prefixes: []string{"10.1.0.5/32"}, VNIs: []uint32{20, 104009}},
			{Name: "swp5", State: PortPXE},
			{Name: "swp10", State: PortTenant, MachineID: "m-other", VRF: "vrf10", VNI: 10, ASN: 4200000004,
				Prefixes: []string{"10.0.4.0/22", "2001:db8::/64"}},
		},
		VRFs: []SwitchVRF{{Name: "vrf10", VNI: 10}, {Name: "vrf20", VNI: 20}},
	}
	want.Revision = got.Revision
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("desired state (-want +got):\n%s", diff)
	}
	if got.Revision == "" || got.Revision != desiredOf(sw, machines).Revision {
		t.Errorf("revision %q is empty or not stable", got.Revision)
	}
	machines["m-other"].Allocation = nil
	if again := desiredOf(sw, machines); again.Revision == got.Revision {
		t.Errorf("revision did not change when a machine was freed")
	}
}

func TestComparePorts(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		less bool
	}{
		{"swp2", "swp10", true}, {"swp10", "swp2", false}, {"swp1s1", "swp1s2", true}, {"Ethernet4", "Ethernet12", true},
		{"swp1", "swp1s0", true}, {"a", "b", true}, {"swp01", "swp2", false},
	} {
		if got := comparePorts(tc.a, tc.b) < 0; got != tc.less {
			t.Errorf("comparePorts(%q, %q) < 0 = %v, want %v", tc.a, tc.b, got, tc.less)
		}
	}
}

func TestSortedUnique(t *testing.T) {
	got := sortedUnique([]string{"10.0.0.1/32", "10.0.0.0/24", "10.0.0.0/24", "192.0.2.1/32", "bogus", "10.0.1.0/24"})
	want := []string{"10.0.0.0/24", "10.0.1.0/24", "192.0.2.1/32"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
