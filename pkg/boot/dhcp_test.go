package boot_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/boot"
	"github.com/metalforge/metalforge/pkg/boot/dhcp"
	"github.com/metalforge/metalforge/pkg/boot/internal/netnstest"
)

const (
	srvIP    = "10.90.0.1"
	cliIP    = "10.90.0.2"
	httpAddr = srvIP
)

// pair is a server namespace and a client namespace joined by a veth pair (eth0 on both sides).
func pair(t testing.TB) (srv, cli *netnstest.NS) {
	netnstest.Require(t)
	srv, cli = netnstest.New(t, "srv"), netnstest.New(t, "cli")
	netnstest.Veth(t, srv, "eth0", srvIP+"/24", cli, "eth0", cliIP+"/24")
	srv.IP(t, "link", "set", "eth0", "address", "02:00:0a:5a:00:01")
	srv.WaitReady(t, "eth0", true)
	cli.WaitReady(t, "eth0", true)
	return srv, cli
}

// nsConfig is a full-mode boot server on eth0 of the server namespace.
func nsConfig(apiAddr, tftp string) boot.Config {
	return boot.Config{
		Interface: "eth0",
		Subnet: dhcp.Subnet{First: netip.MustParseAddr("10.90.0.100"), Last: netip.MustParseAddr("10.90.0.199"),
			Router: netip.MustParseAddr("10.90.0.254"), DNS: []netip.Addr{netip.MustParseAddr("10.90.0.53")}},
		HTTPListen: ":80", TFTPDir: tftp, API: apiAddr, Token: bootToken, PartitionID: partition,
		HammerToken: "hammer-secret",
	}
}

func vendor(s string) dhcpv4.Modifier  { return dhcpv4.WithOption(dhcpv4.OptClassIdentifier(s)) }
func arch(a iana.Arch) dhcpv4.Modifier { return dhcpv4.WithOption(dhcpv4.OptClientArch(a)) }

var ipxeClient = []dhcpv4.Modifier{vendor("PXEClient:Arch:00000:UNDI:002001"), arch(iana.INTEL_X86PC), dhcpv4.WithUserClass("iPXE", false)}

func inRange(ip net.IP, first, last string) bool {
	a, ok := netip.AddrFromSlice(ip.To4())
	return ok && !a.Less(netip.MustParseAddr(first)) && !netip.MustParseAddr(last).Less(a)
}

// TestDHCPFull: DORA for each kind of client against a full-mode server, with the leased
// address, network options and boot file checked against golden files.
func TestDHCPFull(t *testing.T) {
	srv, cli := pair(t)
	machines, apiAddr := fakeAPI(t)
	known := mustMAC("52:54:00:00:01:01")
	machines.Put(api.Machine{Meta: api.Meta{ID: "m1"}, PartitionID: partition,
		Hardware: api.MachineHardware{NICs: []api.MachineNIC{{Name: "eth0", MAC: known.String()}}}})
	start(t, srv, nsConfig(apiAddr, tftpDir(t)))

	cases := []struct {
		name string
		mac  string
		mods []dhcpv4.Modifier
		file string
	}{
		{"bios-pxe", known.String(), []dhcpv4.Modifier{vendor("PXEClient:Arch:00000:UNDI:002001"), arch(iana.INTEL_X86PC)}, "undionly.kpxe"},
		{"uefi-pxe", "52:54:00:00:01:02", []dhcpv4.Modifier{vendor("PXEClient:Arch:00007:UNDI:003016"), arch(iana.EFI_X86_64)}, "ipxe.efi"},
		{"ipxe", "52:54:00:00:01:03", ipxeClient, "http://" + httpAddr + "/boot.ipxe"},
		{"uefi-http", "52:54:00:00:01:04", []dhcpv4.Modifier{vendor("HTTPClient:Arch:00016:UNDI:003001"), arch(iana.EFI_X86_64_HTTP)}, "http://" + httpAddr + "/ipxe/ipxe.efi"},
		{"linux", "52:54:00:00:01:05", nil, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c := client(t, cli, "eth0", mustMAC(tc.mac))
			lease, err := c.Request(ctx, tc.mods...)
			if err != nil {
				t.Fatalf("dora: %v", err)
			}
			golden(t, "dhcp-full-"+tc.name+".golden", "OFFER\n"+dump(lease.Offer)+"\nACK\n"+dump(lease.ACK))
			if !lease.ACK.YourIPAddr.Equal(lease.Offer.YourIPAddr) || !inRange(lease.ACK.YourIPAddr, "10.90.0.100", "10.90.0.199") {
				t.Errorf("offered %s, acked %s: want the same address in the range", lease.Offer.YourIPAddr, lease.ACK.YourIPAddr)
			}
			if lease.ACK.BootFileName != tc.file {
				t.Errorf("boot file %q, want %q", lease.ACK.BootFileName, tc.file)
			}
			_, has175 := lease.ACK.Options[175]
			if want := tc.name == "ipxe"; has175 != want {
				t.Errorf("option 175 present %v, want %v", has175, want)
			}
		})
	}

	t.Run("pxe booting event", func(t *testing.T) {
		ok := await(5*time.Second, func() bool {
			return slices.ContainsFunc(machines.Events("m1"), func(e api.EventRequest) bool { return e.Event == api.EventPXEBooting })
		})
		if !ok {
			t.Errorf("no PXE Booting event for m1: %v", machines.Events("m1"))
		}
	})

	// The installed OS of a known machine asks for its address with a plain DHCP client: that is
	// not a PXE boot and must not enter the machine's provisioning log.
	t.Run("installed os is not pxe booting", func(t *testing.T) {
		pxe := func() int {
			n := 0
			for _, e := range machines.Events("m1") {
				if e.Event == api.EventPXEBooting {
					n++
				}
			}
			return n
		}
		before := pxe()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if _, err := client(t, cli, "eth0", known).Request(ctx); err != nil {
			t.Fatalf("dora: %v", err)
		}
		time.Sleep(500 * time.Millisecond) // the event would be recorded right after the reply
		if after := pxe(); after != before {
			t.Errorf("a plain DHCP client was recorded as PXE Booting (%d → %d events)", before, after)
		}
	})

	t.Run("release keeps the address", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		c := client(t, cli, "eth0", mustMAC("52:54:00:00:01:06"))
		first, err := c.Request(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Release(first); err != nil {
			t.Fatal(err)
		}
		again, err := c.Request(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !again.ACK.YourIPAddr.Equal(first.ACK.YourIPAddr) {
			t.Errorf("after release got %s, want %s again", again.ACK.YourIPAddr, first.ACK.YourIPAddr)
		}
	})

	t.Run("request for a foreign address is nacked", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		mac := mustMAC("52:54:00:00:01:07")
		c := client(t, cli, "eth0", mac)
		req, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
			dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.90.0.150"))))
		resp, err := c.SendAndRead(ctx, nclient4.DefaultServers, req, nil)
		if err != nil {
			t.Fatal(err)
		}
		golden(t, "dhcp-full-nak.golden", dump(resp))
	})

	t.Run("request for another server is ignored", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		mac := mustMAC("52:54:00:00:01:08")
		c := client(t, cli, "eth0", mac, nclient4.WithTimeout(500*time.Millisecond), nclient4.WithRetry(1))
		req, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
			dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.90.0.100"))),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("10.90.0.9"))))
		if resp, err := c.SendAndRead(ctx, nclient4.DefaultServers, req, nil); !errors.Is(err, nclient4.ErrNoResponse) {
			t.Errorf("got %v, %v; want no response", resp, err)
		}
	})

	t.Run("inform", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c := client(t, cli, "eth0", mustMAC("52:54:00:00:01:09"))
		ack, err := c.Inform(ctx, net.ParseIP(cliIP))
		if err != nil {
			t.Fatal(err)
		}
		golden(t, "dhcp-full-inform.golden", dump(ack))
	})
}

// TestDHCPProxy: a proxy-mode server answers PXE clients with the boot file only, on port 67 and
// on the PXE port 4011, and ignores everything else.
func TestDHCPProxy(t *testing.T) {
	srv, cli := pair(t)
	_, apiAddr := fakeAPI(t)
	cfg := nsConfig(apiAddr, tftpDir(t))
	cfg.Mode, cfg.Subnet = dhcp.ModeProxy, dhcp.Subnet{}
	start(t, srv, cfg)
	bios := []dhcpv4.Modifier{vendor("PXEClient:Arch:00000:UNDI:002001"), arch(iana.INTEL_X86PC),
		dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(97), append([]byte{0}, make([]byte, 16)...)))}

	t.Run("bios pxe", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		mac := mustMAC("52:54:00:00:02:01")
		offer, err := client(t, cli, "eth0", mac).DiscoverOffer(ctx, bios...)
		if err != nil {
			t.Fatal(err)
		}
		if !offer.YourIPAddr.IsUnspecified() || offer.BootFileName != "undionly.kpxe" || offer.ClassIdentifier() != "PXEClient" {
			t.Errorf("proxy offer: yiaddr %s, file %q, vendor class %q", offer.YourIPAddr, offer.BootFileName, offer.ClassIdentifier())
		}
		golden(t, "dhcp-proxy-offer.golden", dump(offer))

		// The PXE ROM, configured by the real DHCP server, asks the proxy on port 4011.
		req, _ := dhcpv4.NewRequestFromOffer(offer, append(bios, dhcpv4.WithClientIP(net.ParseIP(cliIP)),
			dhcpv4.WithoutOption(dhcpv4.OptionRequestedIPAddress))...)
		var conn net.PacketConn
		if err := cli.Do(func() (err error) { conn, err = net.ListenPacket("udp4", cliIP+":0"); return err }); err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.WriteTo(req.ToBytes(), &net.UDPAddr{IP: net.ParseIP(srvIP), Port: dhcp.PXEPort}); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 1500)
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			t.Fatalf("no answer on port 4011: %v", err)
		}
		ack, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			t.Fatal(err)
		}
		if from.(*net.UDPAddr).Port != dhcp.PXEPort || ack.MessageType() != dhcpv4.MessageTypeAck {
			t.Errorf("got %s from %s, want an ACK from port %d", ack.MessageType(), from, dhcp.PXEPort)
		}
		golden(t, "dhcp-proxy-ack.golden", dump(ack))
	})

	t.Run("ipxe", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		offer, err := client(t, cli, "eth0", mustMAC("52:54:00:00:02:02")).DiscoverOffer(ctx, ipxeClient...)
		if err != nil {
			t.Fatal(err)
		}
		golden(t, "dhcp-proxy-ipxe.golden", dump(offer))
	})

	t.Run("non-pxe client is ignored", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c := client(t, cli, "eth0", mustMAC("52:54:00:00:02:03"), nclient4.WithTimeout(500*time.Millisecond), nclient4.WithRetry(1))
		if offer, err := c.DiscoverOffer(ctx); !errors.Is(err, nclient4.ErrNoResponse) {
			t.Errorf("got %v, %v; want no response", offer, err)
		}
	})
}

// TestDHCPRelay: a relayed DISCOVER (giaddr set) gets an address of the relay's subnet, and the
// OFFER and ACK go to the relay agent on port 67, with option 82 echoed.
func TestDHCPRelay(t *testing.T) {
	srv, relay := pair(t)
	relay.IP(t, "addr", "add", "10.91.0.1/24", "dev", "eth0")
	srv.IP(t, "route", "add", "10.91.0.0/24", "via", cliIP)
	_, apiAddr := fakeAPI(t)
	cfg := nsConfig(apiAddr, tftpDir(t))
	sub, err := boot.ParseSubnet("10.91.0.0/24,10.91.0.50-10.91.0.60,10.91.0.1,10.91.0.53")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Relayed = []dhcp.Subnet{sub}
	start(t, srv, cfg)

	var conn net.PacketConn
	if err := relay.Do(func() (err error) { conn, err = net.ListenPacket("udp4", "10.91.0.1:67"); return err }); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	mac := mustMAC("52:54:00:00:03:01")
	agent := dhcpv4.WithOption(dhcpv4.OptRelayAgentInfo(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(1), []byte("swp1"))))
	exchange := func(req *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
		t.Helper()
		req.GatewayIPAddr, req.HopCount = net.ParseIP("10.91.0.1").To4(), 1
		if _, err := conn.WriteTo(req.ToBytes(), &net.UDPAddr{IP: net.ParseIP(srvIP), Port: dhcp.ServerPort}); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 1500)
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			t.Fatalf("relay got no answer: %v", err)
		}
		if got := from.(*net.UDPAddr); !got.IP.Equal(net.ParseIP(srvIP)) || got.Port != dhcp.ServerPort {
			t.Errorf("answer from %s, want %s:%d", got, srvIP, dhcp.ServerPort)
		}
		resp, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	disc, _ := dhcpv4.NewDiscovery(mac, append(ipxeClient, agent)...)
	offer := exchange(disc)
	if !inRange(offer.YourIPAddr, "10.91.0.50", "10.91.0.60") {
		t.Errorf("relayed offer %s, want an address of 10.91.0.50-60", offer.YourIPAddr)
	}
	golden(t, "dhcp-relay-offer.golden", dump(offer))
	req, _ := dhcpv4.NewRequestFromOffer(offer, append(ipxeClient, agent)...)
	ack := exchange(req)
	if ack.MessageType() != dhcpv4.MessageTypeAck || !ack.YourIPAddr.Equal(offer.YourIPAddr) {
		t.Errorf("relayed request got %s %s, want ACK %s", ack.MessageType(), ack.YourIPAddr, offer.YourIPAddr)
	}
}

// TestDHCPTwoServers: two boot-servers on one bridge, both leasing from one real metal-api,
// offer a client the same address; the client's REQUEST is acknowledged by the server it chose.
func TestDHCPTwoServers(t *testing.T) {
	netnstest.Require(t)
	sw, srv1, srv2, cli := netnstest.New(t, "sw"), netnstest.New(t, "srv1"), netnstest.New(t, "srv2"), netnstest.New(t, "cli")
	netnstest.Bridge(t, sw)
	netnstest.Port(t, sw, "p1", srv1, "eth0", srvIP+"/24")
	netnstest.Port(t, sw, "p2", srv2, "eth0", "10.90.0.3/24")
	netnstest.Port(t, sw, "p3", cli, "eth0", cliIP+"/24")
	apiAddr := realAPI(t, api.Partition{Meta: api.Meta{ID: partition}})
	for _, ns := range []*netnstest.NS{srv1, srv2} {
		cfg := nsConfig(apiAddr, tftpDir(t))
		cfg.Token = adminTok
		start(t, ns, cfg)
	}

	for i, m := range []string{"52:54:00:00:04:01", "52:54:00:00:04:02"} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		c := client(t, cli, "eth0", mustMAC(m))
		disc, _ := dhcpv4.NewDiscovery(mustMAC(m), ipxeClient...)
		var offers []*dhcpv4.DHCPv4
		_, err := c.SendAndRead(ctx, nclient4.DefaultServers, disc, func(p *dhcpv4.DHCPv4) bool {
			fromNew := !slices.ContainsFunc(offers, func(o *dhcpv4.DHCPv4) bool { return o.ServerIdentifier().Equal(p.ServerIdentifier()) })
			if p.MessageType() == dhcpv4.MessageTypeOffer && fromNew {
				offers = append(offers, p) // retransmissions bring more offers from the same server
			}
			return len(offers) == 2
		})
		if err != nil {
			t.Fatalf("%s: want two offers, got %d: %v", m, len(offers), err)
		}
		if !offers[0].YourIPAddr.Equal(offers[1].YourIPAddr) || offers[0].ServerIdentifier().Equal(offers[1].ServerIdentifier()) {
			t.Errorf("%s: offers %s from %s and %s from %s: want one address from two servers", m,
				offers[0].YourIPAddr, offers[0].ServerIdentifier(), offers[1].YourIPAddr, offers[1].ServerIdentifier())
		}
		if want := netip.MustParseAddr("10.90.0.100").As4(); offers[0].YourIPAddr.To4()[3] != want[3]+byte(i) {
			t.Errorf("%s: offered %s, want the %d. address of the range", m, offers[0].YourIPAddr, i+1)
		}
		lease, err := c.RequestFromOffer(ctx, offers[1], ipxeClient...)
		if err != nil {
			t.Fatalf("%s: request: %v", m, err)
		}
		if !lease.ACK.YourIPAddr.Equal(offers[1].YourIPAddr) || !lease.ACK.ServerIdentifier().Equal(offers[1].ServerIdentifier()) {
			t.Errorf("%s: ACK %s from %s, want %s from %s", m, lease.ACK.YourIPAddr, lease.ACK.ServerIdentifier(),
				offers[1].YourIPAddr, offers[1].ServerIdentifier())
		}
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
