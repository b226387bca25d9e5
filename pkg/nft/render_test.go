package nft

import (
	"bytes"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "update golden files")

// fixture is a ruleset using every feature of the model.
func fixture() *Ruleset {
	p := netip.MustParsePrefix
	a := netip.MustParseAddr
	return &Ruleset{
		External: "ext0",
		Networks: []Network{{Name: "private", Interface: "tenant0", Prefixes: []netip.Prefix{p("10.0.0.0/24"), p("10.0.1.0/24"), p("2001:db8:10::/56")}, RateLimit: 100000}},
		SNAT:     []netip.Addr{a("192.0.2.10")},
		Ingress: []Rule{
			{Policy: "allow-admin", CIDRs: []netip.Prefix{p("198.51.100.0/24"), p("2001:db8:100::/48")},
				Except: []netip.Prefix{p("198.51.100.128/25"), p("2001:db8:100:80::/57")}, Protocol: TCP, Port: 22},
		},
		Egress: []Rule{
			{Policy: "allow-https", CIDRs: []netip.Prefix{p("0.0.0.0/0"), p("::/0")}, Protocol: TCP, Port: 443},
			{Policy: "allow-dns", CIDRs: []netip.Prefix{p("192.0.2.53/32"), p("192.0.2.54/32"), p("2001:db8::53/128"), p("2001:db8::54/128")}, Protocol: UDP, Port: 53},
			{Policy: "allow-ranges", CIDRs: []netip.Prefix{p("203.0.113.0/24")}, Protocol: TCP, Port: 8000, EndPort: 8080},
			{Policy: "allow-example", FQDN: "example.com", Protocol: TCP, Port: 443},
			{Policy: "allow-ntp", CIDRs: []netip.Prefix{p("192.0.2.123/32")}, Protocol: UDP, Port: 123},
			{Policy: "allow-any", CIDRs: []netip.Prefix{p("203.0.112.0/23")}},
		},
		FQDNSets: []FQDNSet{{Name: "example.com", IPs: []netip.Addr{a("93.184.215.14"), a("93.184.215.15"), a("2001:db8:ff::14")}}},
		Services: []Service{
			{Name: "web", IP: a("10.0.0.100"), Ports: []ServicePort{{TCP, 80}, {TCP, 443}}},
			{Name: "dns", IP: a("10.0.0.101"), Ports: []ServicePort{{UDP, 53}}, SourceRanges: []netip.Prefix{p("198.51.100.0/24")}},
			{Name: "web6", IP: a("2001:db8:10::100"), Ports: []ServicePort{{TCP, 80}, {UDP, 443}}, SourceRanges: []netip.Prefix{p("198.51.100.0/24"), p("2001:db8:300::/40")}},
		},
		ICMPRate: 100,
		LogRate:  10,
	}
}

func TestRenderGolden(t *testing.T) {
	var b bytes.Buffer
	if err := Render(&b, fixture()); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "firewall.nft.golden")
	if *update {
		if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(string(want), b.String()); d != "" {
		t.Errorf("rendered ruleset differs from %s (-want +got), run with -update:\n%s", golden, d)
	}
}

func TestValidate(t *testing.T) {
	p := netip.MustParsePrefix
	tests := []struct {
		name   string
		modify func(*Ruleset)
		want   string
	}{
		{"ok", func(*Ruleset) {}, ""},
		{"host bits", func(r *Ruleset) { r.Egress[0].CIDRs = []netip.Prefix{p("10.0.0.1/8")} }, "host bits"},
		{"invalid prefix", func(r *Ruleset) { r.Ingress[0].Except = []netip.Prefix{{}} }, "invalid prefix"},
		{"ipv6", func(r *Ruleset) { r.Networks[0].Prefixes = []netip.Prefix{p("2001:db8::/32")} }, ""},
		{"ipv4-mapped", func(r *Ruleset) { r.Networks[0].Prefixes = []netip.Prefix{p("::ffff:10.0.0.0/104")} }, "invalid prefix"},
		{"ipv6 host bits", func(r *Ruleset) { r.Egress[0].CIDRs = []netip.Prefix{p("2001:db8::1/64")} }, "host bits"},
		{"fqdn zone", func(r *Ruleset) { r.FQDNSets[0].IPs[0] = netip.MustParseAddr("fe80::1%eth0") }, "invalid address"},
		{"snat ipv6", func(r *Ruleset) { r.SNAT = []netip.Addr{netip.MustParseAddr("2001:db8::10")} }, "invalid snat ipv4 address"},
		{"port range", func(r *Ruleset) { r.Egress[2].EndPort = 10 }, "invalid port range"},
		{"protocol", func(r *Ruleset) { r.Egress[0].Protocol = "sctp" }, "unsupported protocol"},
		{"port no proto", func(r *Ruleset) { r.Egress[0].Protocol = "" }, "port without protocol"},
		{"unknown fqdn", func(r *Ruleset) { r.Egress[3].FQDN = "nope" }, "unknown fqdn set"},
		{"no peer", func(r *Ruleset) { r.Egress[0].CIDRs = nil }, "no peer"},
		{"snat gap", func(r *Ruleset) { r.SNAT = append(r.SNAT, netip.MustParseAddr("192.0.2.12")) }, "not contiguous"},
		{"policy name", func(r *Ruleset) { r.Egress[0].Policy = "a b" }, "invalid policy name"},
		{"iface", func(r *Ruleset) { r.External = "this-name-is-too-long" }, "invalid interface"},
		{"service port", func(r *Ruleset) { r.Services[0].Ports[0].Port = 0 }, "invalid port"},
		{"dup service", func(r *Ruleset) { r.Services[1].Name = "web" }, "duplicate service"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := fixture()
			tt.modify(rs)
			err := rs.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want containing %q", err, tt.want)
			}
		})
	}
}

func TestRanges(t *testing.T) {
	p := netip.MustParsePrefix
	got := ranges([]netip.Prefix{p("10.0.1.0/24"), p("10.0.0.0/24"), p("10.0.0.0/25"), p("0.0.0.0/0")})
	if len(got) != 1 || got[0].ip.String() != "0.0.0.0" || got[0].end.String() != "255.255.255.255" {
		t.Fatalf("ranges = %v", got)
	}
	got = ranges([]netip.Prefix{p("10.0.1.0/24"), p("10.0.0.0/24"), p("10.0.3.0/24")})
	if len(got) != 2 || got[0].end.String() != "10.0.1.255" || got[1].ip.String() != "10.0.3.0" {
		t.Fatalf("ranges = %v", got)
	}
}
