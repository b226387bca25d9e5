package render

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/metalforge/metalforge/pkg/fabric"
	"github.com/metalforge/metalforge/pkg/frr"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	path = filepath.Join("testdata", path)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run with -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the rendered config (run with -update to accept):\n%s", path, got)
	}
}

func leaf() Switch {
	return Switch{ASN: 4200000011, Loopback: netip.MustParseAddr("10.0.0.11"), Uplinks: []string{"swp31", "swp32"},
		Keepalive: 1, Hold: 3, ConnectRetry: 2, RAInterval: 3}
}

// cases are the desired states the golden files pin.
func cases() map[string]*fabric.SwitchDesired {
	return map[string]*fabric.SwitchDesired{
		"empty": {SwitchID: "leaf1", Revision: "r0", Ports: []fabric.SwitchPortDesired{
			{Name: "swp1", State: fabric.PortPXE}, {Name: "swp2", State: fabric.PortPXE}}, VRFs: []fabric.SwitchVRF{}},
		"mixed": {SwitchID: "leaf1", Revision: "r1", Ports: []fabric.SwitchPortDesired{
			{Name: "swp1", State: fabric.PortTenant, MachineID: "a1", VRF: "vrf10001", VNI: 10001, ASN: 4200000101,
				Prefixes: []string{"10.128.0.0/22", "185.1.2.3/32"}},
			{Name: "swp2", State: fabric.PortTenant, MachineID: "b1", VRF: "vrf10002", VNI: 10002, ASN: 4200000102,
				Prefixes: []string{"10.128.4.0/22", "2001:db8:4::/64"}},
			{Name: "swp3", State: fabric.PortTenant, MachineID: "a3", VRF: "vrf10001", VNI: 10001, ASN: 4200000103,
				Prefixes: []string{"10.128.0.0/22"}},
			{Name: "swp4", State: fabric.PortFirewall, MachineID: "fw", ASN: 4200000104, Prefixes: []string{"10.0.1.4/32"},
				VNIs: []uint32{10001, 104009}},
			{Name: "swp5", State: fabric.PortPXE},
		}, VRFs: []fabric.SwitchVRF{{Name: "vrf10001", VNI: 10001}, {Name: "vrf10002", VNI: 10002}}},
	}
}

func TestRenderGolden(t *testing.T) {
	for name, d := range cases() {
		in := Input{Switch: leaf(), Desired: d}
		t.Run("lab/"+name, func(t *testing.T) {
			c, err := Lab{}.Render(in)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "lab/"+name+"/frr.conf", c.FRR)
			golden(t, "lab/"+name+"/links.txt", []byte(c.Links.String()))
			validate(t, c.FRR)
		})
		t.Run("cumulus/"+name, func(t *testing.T) {
			c, err := Cumulus{}.Render(in)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range c.Files {
				golden(t, "cumulus/"+name+f.Path, f.Data)
			}
			validate(t, c.FRR)
		})
	}
}

// validate runs the offline check every rendered config must pass before it is applied.
func validate(t *testing.T, conf []byte) {
	t.Helper()
	if _, err := exec.LookPath("vtysh"); err != nil {
		t.Skip("vtysh not installed (hack/deps.sh frr frr-pythontools): cannot validate")
	}
	if err := (frr.Tools{}).Validate(context.Background(), conf); err != nil {
		t.Error(err)
	}
}

func TestRenderRejects(t *testing.T) {
	good := cases()["mixed"]
	for name, mutate := range map[string]func(*Input){
		"no desired":    func(in *Input) { in.Desired = nil },
		"no asn":        func(in *Input) { in.Switch.ASN = 0 },
		"no loopback":   func(in *Input) { in.Switch.Loopback = netip.Addr{} },
		"bad vrf name":  func(in *Input) { in.Desired.VRFs[0].Name = "tenant" },
		"unknown vrf":   func(in *Input) { in.Desired.Ports[0].VRF = "vrf1" },
		"port name":     func(in *Input) { in.Desired.Ports[0].Name = "swp1\n neighbor x" },
		"uplink name":   func(in *Input) { in.Switch.Uplinks = []string{"a b"} },
		"unknown state": func(in *Input) { in.Desired.Ports[4].State = "up" },
		"bad prefix":    func(in *Input) { in.Desired.Ports[0].Prefixes = []string{"10.0.0.0/33"} },
		"tenant no asn": func(in *Input) { in.Desired.Ports[0].ASN = 0 },
	} {
		d := *good
		d.Ports = append([]fabric.SwitchPortDesired{}, good.Ports...)
		d.VRFs = append([]fabric.SwitchVRF{}, good.VRFs...)
		in := Input{Switch: leaf(), Desired: &d}
		mutate(&in)
		if _, err := (Lab{}).Render(in); err == nil {
			t.Errorf("%s: lab rendered without error", name)
		}
		if _, err := (Cumulus{}).Render(in); err == nil {
			t.Errorf("%s: cumulus rendered without error", name)
		}
	}
}

// big is a switch with n tenant VRFs, one machine port each, and a firewall allowed all VNIs.
func big(n int) *fabric.SwitchDesired {
	d := &fabric.SwitchDesired{SwitchID: "leaf1", Revision: "big"}
	fw := fabric.SwitchPortDesired{Name: "fw0", State: fabric.PortFirewall, ASN: 4200100000, Prefixes: []string{"10.0.1.4/32"}}
	for i := range n {
		vni := uint32(10000 + i)
		v := fabric.SwitchVRF{Name: fabric.VRFName(vni), VNI: vni}
		d.VRFs = append(d.VRFs, v)
		d.Ports = append(d.Ports, fabric.SwitchPortDesired{Name: fmt.Sprintf("swp%d", i+1), State: fabric.PortTenant, VRF: v.Name,
			VNI: vni, ASN: 4200000000 + uint32(i), Prefixes: []string{fmt.Sprintf("10.%d.%d.0/24", 64+i/256, i%256)}})
		fw.VNIs = append(fw.VNIs, vni)
	}
	d.Ports = append(d.Ports, fw)
	return d
}

// BenchmarkRender renders 1,000 tenant VRFs for both targets (goal: < 1 s per render).
func BenchmarkRender(b *testing.B) {
	in := Input{Switch: leaf(), Desired: big(1000)}
	for _, tc := range []struct {
		name string
		r    interface{ Render(Input) (*Config, error) }
	}{{"lab-1000vrf", Lab{}}, {"cumulus-1000vrf", Cumulus{PXEVLAN: 4000}}} {
		b.Run(tc.name, func(b *testing.B) {
			var size int
			for b.Loop() {
				c, err := tc.r.Render(in)
				if err != nil {
					b.Fatal(err)
				}
				size = len(c.FRR)
			}
			b.ReportMetric(float64(size), "frr-bytes")
		})
	}
}

// BenchmarkRenderValidate is render + `vtysh -m -f` for 1,000 tenant VRFs, what the agent does
// before every apply.
func BenchmarkRenderValidate(b *testing.B) {
	if _, err := exec.LookPath("vtysh"); err != nil {
		b.Skip("vtysh not installed (hack/deps.sh frr frr-pythontools)")
	}
	in := Input{Switch: leaf(), Desired: big(1000)}
	for b.Loop() {
		c, err := Lab{}.Render(in)
		if err != nil {
			b.Fatal(err)
		}
		if err := (frr.Tools{}).Validate(context.Background(), c.FRR); err != nil {
			b.Fatal(err)
		}
	}
}
