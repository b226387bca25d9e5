package netup

import (
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv4"
)

func TestLeaseOf(t *testing.T) {
	ack, err := dhcpv4.New(
		dhcpv4.WithMessageType(dhcpv4.MessageTypeAck),
		dhcpv4.WithYourIP(net.IPv4(10, 0, 2, 15)),
		dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
		dhcpv4.WithRouter(net.IPv4(10, 0, 2, 2)),
		dhcpv4.WithDNS(net.IPv4(10, 0, 2, 3)),
		dhcpv4.WithServerIP(net.IPv4(10, 0, 2, 2)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 0, 2, 2))),
	)
	if err != nil {
		t.Fatal(err)
	}
	got, err := leaseOf("eth0", ack)
	if err != nil {
		t.Fatal(err)
	}
	want := Lease{Interface: "eth0", Addr: netip.MustParsePrefix("10.0.2.15/24"), Router: netip.MustParseAddr("10.0.2.2"),
		DNS: []netip.Addr{netip.MustParseAddr("10.0.2.3")}, Server: netip.MustParseAddr("10.0.2.2")}
	if d := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); d != "" {
		t.Errorf("lease (-want +got):\n%s", d)
	}
	empty, _ := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeAck))
	if _, err := leaseOf("eth0", empty); err == nil {
		t.Error("ack without address: want error")
	}
}

func TestPhysical(t *testing.T) {
	got, err := Physical("../inventory/testdata/server1/sys")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"eno1", "eno2", "ib0"}, got); d != "" {
		t.Errorf("physical (-want +got):\n%s", d)
	}
}
