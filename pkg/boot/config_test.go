package boot_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/metalforge/metalforge/pkg/boot"
	"github.com/metalforge/metalforge/pkg/boot/dhcp"
)

func TestParseSubnet(t *testing.T) {
	got, err := boot.ParseSubnet("10.1.0.7/24, 10.1.0.100-10.1.0.200, 10.1.0.1, 10.1.0.53, 10.1.0.54")
	if err != nil {
		t.Fatal(err)
	}
	if got.Prefix.String() != "10.1.0.0/24" || got.First.String() != "10.1.0.100" || got.Last.String() != "10.1.0.200" ||
		got.Router.String() != "10.1.0.1" || len(got.DNS) != 2 {
		t.Errorf("got %+v", got)
	}
	for _, bad := range []string{"", "10.1.0.0/24", "10.1.0.0/24,10.1.0.100", "10.1.0.0/24,10.2.0.1-10.2.0.9",
		"10.1.0.0/24,10.1.0.9-10.1.0.1", "x,10.1.0.1-10.1.0.2", "10.1.0.0/24,10.1.0.1-10.1.0.2,router"} {
		if _, err := boot.ParseSubnet(bad); err == nil {
			t.Errorf("ParseSubnet(%q) accepted", bad)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	ok := boot.Config{API: "api:50051", Token: "t", PartitionID: "p", Interface: "eth0",
		Subnet: dhcp.Subnet{First: netip.MustParseAddr("10.0.0.10"), Last: netip.MustParseAddr("10.0.0.20")}}
	for _, tc := range []struct {
		name string
		mod  func(*boot.Config)
		want string
	}{
		{"ok", func(*boot.Config) {}, ""},
		{"proxy needs no range", func(c *boot.Config) { c.Mode, c.Subnet = dhcp.ModeProxy, dhcp.Subnet{} }, ""},
		{"no token", func(c *boot.Config) { c.Token = "" }, "token"},
		{"no partition", func(c *boot.Config) { c.PartitionID = "" }, "partition"},
		{"bad mode", func(c *boot.Config) { c.Mode = "relay" }, "mode"},
		{"full needs a range", func(c *boot.Config) { c.Subnet = dhcp.Subnet{} }, "range"},
		{"no interface, no address", func(c *boot.Config) { c.Interface = "" }, "http address"},
		{"ipv6 server", func(c *boot.Config) { c.ServerIP = netip.MustParseAddr("fd00::1") }, "IPv4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.mod(&c)
			c.Defaults()
			err := c.Validate()
			if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("Validate() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
