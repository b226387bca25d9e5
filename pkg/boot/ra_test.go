package boot_test

import (
	"encoding/binary"
	"encoding/hex"
	"net"
	"strconv"
	"testing"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
)

// TestRouterAdvertisement: a Router Solicitation from the client namespace is answered with a
// Router Advertisement of router lifetime 0 and no prefix; a solicitation with a hop limit other
// than 255 (so possibly forwarded) is ignored.
func TestRouterAdvertisement(t *testing.T) {
	srv, cli := pair(t)
	_, apiAddr := fakeAPI(t)
	start(t, srv, nsConfig(apiAddr, tftpDir(t)))

	var conn *ipv6.PacketConn
	var ifi *net.Interface
	err := cli.Do(func() error {
		var err error
		if ifi, err = net.InterfaceByName("eth0"); err != nil {
			return err
		}
		c, err := icmp.ListenPacket("ip6:ipv6-icmp", "::")
		if err != nil {
			return err
		}
		conn = c.IPv6PacketConn()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeRouterAdvertisement)
	if err := conn.SetICMPFilter(&f); err != nil {
		t.Fatal(err)
	}
	if err := conn.SetControlMessage(ipv6.FlagHopLimit, true); err != nil {
		t.Fatal(err)
	}
	rs, _ := (&icmp.Message{Type: ipv6.ICMPTypeRouterSolicitation, Body: &icmp.RawBody{Data: make([]byte, 4)}}).Marshal(nil)
	allRouters := &net.IPAddr{IP: net.IPv6linklocalallrouters, Zone: strconv.Itoa(ifi.Index)}
	send := func(hopLimit int) {
		t.Helper()
		if _, err := conn.WriteTo(rs, &ipv6.ControlMessage{HopLimit: hopLimit, IfIndex: ifi.Index}, allRouters); err != nil {
			t.Fatalf("send router solicitation: %v", err)
		}
	}
	// read returns the next RA within d, or nil.
	read := func(d time.Duration) ([]byte, *ipv6.ControlMessage) {
		t.Helper()
		buf := make([]byte, 1500)
		_ = conn.SetReadDeadline(time.Now().Add(d))
		n, cm, _, err := conn.ReadFrom(buf)
		if err != nil {
			return nil, nil
		}
		return buf[:n], cm
	}
	// Drain advertisements answering the solicitations the kernel sent when eth0 came up.
	for b, _ := read(300 * time.Millisecond); b != nil; b, _ = read(300 * time.Millisecond) {
	}

	send(64)
	if b, _ := read(time.Second); b != nil {
		t.Errorf("router solicitation with hop limit 64 was answered: %x", b)
	}

	send(255)
	b, cm := read(5 * time.Second)
	if b == nil {
		t.Fatal("no router advertisement")
	}
	m, err := icmp.ParseMessage(ipv6.ICMPTypeRouterAdvertisement.Protocol(), b)
	if err != nil || m.Type != ipv6.ICMPTypeRouterAdvertisement {
		t.Fatalf("got %v, %v: want a router advertisement", m, err)
	}
	body := m.Body.(*icmp.RawBody).Data
	if cm.HopLimit != 255 {
		t.Errorf("hop limit %d, want 255", cm.HopLimit)
	}
	if lifetime := binary.BigEndian.Uint16(body[2:4]); lifetime != 0 {
		t.Errorf("router lifetime %d, want 0", lifetime)
	}
	for opts := body[12:]; len(opts) >= 2 && opts[1] > 0 && len(opts) >= int(opts[1])*8; opts = opts[int(opts[1])*8:] {
		if opts[0] == 3 {
			t.Errorf("router advertisement carries a prefix: %x", opts)
		}
	}
	// The checksum depends on the addresses; the rest is fixed by the server MAC set in pair.
	golden(t, "router-advertisement.golden", hex.Dump(append(b[:2:2], b[4:]...)))
}
