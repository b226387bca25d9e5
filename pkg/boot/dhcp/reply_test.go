package dhcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// leases is an in-memory Backend: a stable address per MAC, handed out in order.
type leases struct {
	mu   sync.Mutex
	ips  map[string]netip.Addr
	fail error
}

func (l *leases) Dhcp(context.Context, net.HardwareAddr) error { return nil }

func (l *leases) Lease(_ context.Context, mac net.HardwareAddr, first, last netip.Addr) (netip.Addr, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fail != nil {
		return netip.Addr{}, l.fail
	}
	if ip, ok := l.ips[mac.String()]; ok && !ip.Less(first) && !last.Less(ip) {
		return ip, nil
	}
	used := map[netip.Addr]bool{}
	for _, ip := range l.ips {
		used[ip] = true
	}
	for ip := first; !last.Less(ip); ip = ip.Next() {
		if !used[ip] {
			l.ips[mac.String()] = ip
			return ip, nil
		}
	}
	return netip.Addr{}, errors.New("range exhausted")
}

func testServer(mode Mode) (*Server, *leases) {
	b := &leases{ips: map[string]netip.Addr{}}
	cfg := Config{Mode: mode, ServerIP: netip.MustParseAddr("10.0.0.1"), Backend: b,
		Subnet: Subnet{Prefix: netip.MustParsePrefix("10.0.0.0/24"), First: netip.MustParseAddr("10.0.0.10"),
			Last: netip.MustParseAddr("10.0.0.11")},
		Relayed: []Subnet{{Prefix: netip.MustParsePrefix("10.1.0.0/24"), First: netip.MustParseAddr("10.1.0.10"),
			Last: netip.MustParseAddr("10.1.0.20")}},
		Boot: Boot{ScriptURL: "http://10.0.0.1/boot.ipxe", BIOSFile: "undionly.kpxe", EFIFile: "ipxe.efi"}}
	cfg.defaults()
	if err := cfg.validate(); err != nil {
		panic(err)
	}
	return &Server{cfg: cfg}, b
}

func packet(t *testing.T, mt dhcpv4.MessageType, mac string, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	hw, _ := net.ParseMAC(mac)
	p, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(mt)}, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func pxe(a iana.Arch) []dhcpv4.Modifier {
	return []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier(fmt.Sprintf("PXEClient:Arch:%05d:UNDI:002001", a))),
		dhcpv4.WithOption(dhcpv4.OptClientArch(a))}
}

// TestReply covers decisions that need no network: which requests get an answer, of what type,
// with which boot file, sent where.
func TestReply(t *testing.T) {
	relay := dhcpv4.WithGatewayIP(net.ParseIP("10.1.0.1"))
	strange := dhcpv4.WithGatewayIP(net.ParseIP("192.168.7.1"))
	for _, tc := range []struct {
		name     string
		mode     Mode
		req      func(t *testing.T) *dhcpv4.DHCPv4
		port     int
		fail     error
		wantType dhcpv4.MessageType // MessageTypeNone: no answer
		wantIP   string
		wantFile string
		wantDst  string
	}{
		{"discover bios", ModeFull, func(t *testing.T) *dhcpv4.DHCPv4 {
			return packet(t, dhcpv4.MessageTypeDiscover, "02:00:00:00:00:01", pxe(iana.INTEL_X86PC)...)
		}, ServerPort, nil, dhcpv4.MessageTypeOffer, "10.0.0.10", "undionly.kpxe", "255.255.255.255:68"},
		{"discover uefi ia32 gets no boot file", ModeFull, func(t *testing.T) *dhcpv4.DHCPv4 {
			return packet(t, dhcpv4.MessageTypeDiscover, "02:00:00:00:00:01", pxe(iana.EFI_IA32)...)
		}, ServerPort, nil, dhcpv4.MessageTypeOffer, "10.0.0.10", "", "255.255.255.255:68"},
		{"discover relayed", ModeFull, func(t *testing.T) *dhcpv4.DHCPv4 {
			return packet(t, dhcpv4.MessageTypeDiscover, "02:00:00:00:00:02", relay)
		}, ServerPort, nil, dhcpv4.MessageTypeOffer, "10.1.0.10", "", "10.1.0.1:67"},
		{"discover from an unknown relay is ignored", ModeFull, func(t *testing.T) *dhcpv4.DHCPv4 {
			return packet(t, dhcpv4.MessageTypeDiscover, "02:00:00:00:00:03", strange)
		}, ServerPort, nil, dhcpv4.MessageTypeNone, "", "", ""},
		{"discover while metal-api fails is ignored", ModeFull, func(t *testing.T) *dhcpv4.DHCPv4 {
			return packet(t, dhcpv4.MessageTypeDiscover, "02:00:00:00:00:04")
		}, ServerPort, errors.New("unavailable"), dhcpv4.MessageTypeNone, "", "", ""},
		{"renewal is unicast", ModeFull, func(t *testing.T) *dhcpv4.DHCPv4 {
			return packet(t, dhcpv4.MessageTypeRequest, "02:00:00:00:00:01", dhcpv4.WithClientIP(net.ParseIP("10.0.0.10")))
		}, ServerPort, nil, dhcpv4.MessageTypeAck, "10.0.0.10", "", "10.0.0.10:68"},
		{"request from another network is nacked", ModeFull, func(t *testing.T) *dhcpv4.DHCPv4 {
			return packet(t, dhcpv4.MessageTypeRequest, "02:00:00:00:00:01",
				dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("172.16.0.5"))))
		}, ServerPort, nil, dhcpv4.MessageTypeNak, "0.0.0.0", "", "255.255.255.255:68"},
		{"relayed nak goes to the relay", ModeFull, func(t *testing.T) *dhcpv4.DHCPv4 {
			return packet(t, dhcpv4.MessageTypeRequest, "02:00:00:00:00:02", relay,
				dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.1.0.19"))))
		}, ServerPort, nil, dhcpv4.MessageTypeNak, "0.0.0.0", "", "10.1.0.1:67"},
		{"request without an address is ignored", ModeFull, func(t *testing.T) *dhcpv4.DHCPv4 {
			return packet(t, dhcpv4.MessageTypeRequest, "02:00:00:00:00:01")
		}, ServerPort, nil, dhcpv4.MessageTypeNone, "", "", ""},
		{"decline is not answered", ModeFull, func(t *testing.T) *dhcpv4.DHCPv4 {
			return packet(t, dhcpv4.MessageTypeDecline, "02:00:00:00:00:01",
				dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.0.0.10"))))
		}, ServerPort, nil, dhcpv4.MessageTypeNone, "", "", ""},
		{"full mode ignores port 4011", ModeFull, func(t *testing.T) *dhcpv4.DHCPv4 {
			return packet(t, dhcpv4.MessageTypeRequest, "02:00:00:00:00:01", pxe(iana.INTEL_X86PC)...)
		}, PXEPort, nil, dhcpv4.MessageTypeNone, "", "", ""},
		{"proxy uefi", ModeProxy, func(t *testing.T) *dhcpv4.DHCPv4 {
			return packet(t, dhcpv4.MessageTypeDiscover, "02:00:00:00:00:05", pxe(iana.EFI_BC)...)
		}, ServerPort, nil, dhcpv4.MessageTypeOffer, "0.0.0.0", "ipxe.efi", "255.255.255.255:68"},
		{"proxy ignores requests on port 67", ModeProxy, func(t *testing.T) *dhcpv4.DHCPv4 {
			return packet(t, dhcpv4.MessageTypeRequest, "02:00:00:00:00:05", pxe(iana.EFI_BC)...)
		}, ServerPort, nil, dhcpv4.MessageTypeNone, "", "", ""},
		{"proxy ignores arm64", ModeProxy, func(t *testing.T) *dhcpv4.DHCPv4 {
			return packet(t, dhcpv4.MessageTypeDiscover, "02:00:00:00:00:06", pxe(iana.EFI_ARM64)...)
		}, ServerPort, nil, dhcpv4.MessageTypeNone, "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, b := testServer(tc.mode)
			b.fail = tc.fail
			b.ips["02:00:00:00:00:01"] = netip.MustParseAddr("10.0.0.10")
			src := &net.UDPAddr{IP: net.ParseIP("10.0.0.10"), Port: ClientPort}
			resp, dst := s.Reply(context.Background(), tc.req(t), tc.port, src)
			if tc.wantType == dhcpv4.MessageTypeNone {
				if resp != nil {
					t.Fatalf("got %s, want no answer", resp.MessageType())
				}
				return
			}
			if resp == nil {
				t.Fatalf("no answer, want %s", tc.wantType)
			}
			if resp.MessageType() != tc.wantType || resp.YourIPAddr.String() != tc.wantIP || resp.BootFileName != tc.wantFile || dst.String() != tc.wantDst {
				t.Errorf("got %s yiaddr %s file %q to %s, want %s %s %q to %s", resp.MessageType(), resp.YourIPAddr,
					resp.BootFileName, dst, tc.wantType, tc.wantIP, tc.wantFile, tc.wantDst)
			}
		})
	}
}

func TestSubnetValidate(t *testing.T) {
	p := netip.MustParsePrefix("10.0.0.0/24")
	a := netip.MustParseAddr
	for _, tc := range []struct {
		s  Subnet
		ok bool
	}{
		{Subnet{Prefix: p, First: a("10.0.0.10"), Last: a("10.0.0.20")}, true},
		{Subnet{Prefix: p, First: a("10.0.0.20"), Last: a("10.0.0.10")}, false},
		{Subnet{Prefix: p, First: a("10.0.0.10"), Last: a("10.0.1.10")}, false},
		{Subnet{Prefix: p, First: a("10.0.0.10"), Last: a("10.0.0.20"), Router: a("10.9.0.1")}, false},
		{Subnet{Prefix: netip.MustParsePrefix("fd00::/64"), First: a("fd00::1"), Last: a("fd00::2")}, false},
	} {
		if err := tc.s.Validate(); (err == nil) != tc.ok {
			t.Errorf("%+v: %v, want ok %v", tc.s, err, tc.ok)
		}
	}
}
