package nft

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/metalforge/metalforge/pkg/nft/nfttest"
)

// dataplane is tenant ns — firewall ns — internet ns connected by veths.
type dataplane struct {
	tenant, fw, inet *nfttest.NS
	rs               *Ruleset
}

func newDataplane(t *testing.T) *dataplane {
	d := &dataplane{tenant: newNS(t, "ten"), fw: newNS(t, "fw"), inet: newNS(t, "net")}
	for _, n := range []*nfttest.NS{d.tenant, d.fw, d.inet} {
		// No duplicate address detection: link-local addresses (neighbour
		// discovery) are usable as soon as a link is up.
		n.Run(t, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
	}
	d.fw.Run(t, "ip", "link", "add", "tenant0", "type", "veth", "peer", "name", "up0", "netns", d.tenant.Name)
	d.fw.Run(t, "ip", "link", "add", "ext0", "type", "veth", "peer", "name", "up0", "netns", d.inet.Name)
	d.fw.Run(t, "ip", "addr", "add", "10.0.0.1/24", "dev", "tenant0")
	d.fw.Run(t, "ip", "addr", "add", "192.0.2.1/24", "dev", "ext0")
	d.fw.Run(t, "ip", "addr", "add", "192.0.2.10/32", "dev", "ext0") // egress SNAT IP
	for _, l := range []string{"lo", "tenant0", "ext0"} {
		d.fw.Run(t, "ip", "link", "set", l, "up")
	}
	d.fw.Run(t, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	d.tenant.Run(t, "ip", "addr", "add", "10.0.0.2/24", "dev", "up0")
	d.tenant.Run(t, "ip", "addr", "add", "10.0.0.100/32", "dev", "up0") // service IP
	d.inet.Run(t, "ip", "addr", "add", "192.0.2.2/24", "dev", "up0")
	for _, n := range []*nfttest.NS{d.tenant, d.inet} {
		n.Run(t, "ip", "link", "set", "lo", "up")
		n.Run(t, "ip", "link", "set", "up0", "up")
	}
	d.tenant.Run(t, "ip", "route", "add", "default", "via", "10.0.0.1")
	d.inet.Run(t, "ip", "route", "add", "10.0.0.100/32", "via", "192.0.2.1") // service IP only
	// IPv6, routed without translation.
	d.fw.Run(t, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
	d.fw.Run(t, "ip", "addr", "add", "2001:db8:10::1/64", "dev", "tenant0", "nodad")
	d.fw.Run(t, "ip", "addr", "add", "2001:db8:20::1/64", "dev", "ext0", "nodad")
	d.tenant.Run(t, "ip", "addr", "add", "2001:db8:10::2/64", "dev", "up0", "nodad")
	d.tenant.Run(t, "ip", "addr", "add", "2001:db8:10::100/128", "dev", "up0", "nodad") // service IP
	d.inet.Run(t, "ip", "addr", "add", "2001:db8:20::2/64", "dev", "up0", "nodad")
	d.tenant.Run(t, "ip", "-6", "route", "add", "default", "via", "2001:db8:10::1")
	d.inet.Run(t, "ip", "-6", "route", "add", "2001:db8:10::/64", "via", "2001:db8:20::1")
	p := netip.MustParsePrefix
	d.rs = &Ruleset{
		External: "ext0",
		Networks: []Network{{Name: "private", Interface: "tenant0", Prefixes: []netip.Prefix{p("10.0.0.0/24")}}},
		SNAT:     []netip.Addr{netip.MustParseAddr("192.0.2.10")},
		Egress:   []Rule{{Policy: "https", CIDRs: []netip.Prefix{p("192.0.2.0/24")}, Protocol: TCP, Port: 443}},
		Services: []Service{{Name: "web", IP: netip.MustParseAddr("10.0.0.100"), Ports: []ServicePort{{TCP, 80}}}},
		ICMPRate: 100,
		LogRate:  10,
	}
	return d
}

// listen starts a TCP listener in n that reports the remote address of each
// accepted connection.
func listen(t *testing.T, n *nfttest.NS, addr string) <-chan string {
	t.Helper()
	var l net.Listener
	if err := n.Do(func() (err error) { l, err = net.Listen("tcp", addr); return err }); err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = l.Close() })
	peers := make(chan string, 1024)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			select {
			case peers <- c.RemoteAddr().(*net.TCPAddr).IP.String():
			default:
			}
			_ = c.Close()
		}
	}()
	return peers
}

// dial connects from n within timeout.
func dial(n *nfttest.NS, addr string, timeout time.Duration) error {
	return n.Do(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

// isTimeout reports whether a dial timed out, i.e. the SYN was dropped
// (not refused).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

func TestDataplane(t *testing.T) {
	nfttest.NeedRoot(t)
	d := newDataplane(t)
	a := newApplier(t, d.fw)
	if _, err := a.Apply(d.rs); err != nil {
		t.Fatalf("apply: %v", err)
	}
	allowed := listen(t, d.inet, "192.0.2.2:443")
	forbidden := listen(t, d.inet, "192.0.2.2:8443")
	svc := listen(t, d.tenant, "10.0.0.100:80")
	svcOther := listen(t, d.tenant, "10.0.0.100:81")

	if err := dial(d.tenant, "192.0.2.2:443", 2*time.Second); err != nil {
		t.Fatalf("allowed egress: %v", err)
	}
	select {
	case src := <-allowed:
		if src != "192.0.2.10" {
			t.Errorf("source seen in internet = %s, want egress snat ip 192.0.2.10", src)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("allowed egress: listener saw no connection")
	}
	if err := dial(d.tenant, "192.0.2.2:8443", 300*time.Millisecond); !isTimeout(err) {
		t.Errorf("forbidden egress: err = %v, want a timeout (dropped)", err)
	}
	if err := dial(d.inet, "10.0.0.100:80", 2*time.Second); err != nil {
		t.Fatalf("allowed ingress to service: %v", err)
	}
	if src := <-svc; src != "192.0.2.2" {
		t.Errorf("service saw source %s, want 192.0.2.2", src)
	}
	if err := dial(d.inet, "10.0.0.100:81", 300*time.Millisecond); !isTimeout(err) {
		t.Errorf("ingress to a closed service port: err = %v, want a timeout", err)
	}
	if n := len(forbidden) + len(svcOther); n != 0 {
		t.Errorf("%d forbidden connections accepted", n)
	}
	counters := d.fw.Run(t, "nft", "list", "counter", "inet", TableName, "pol_https")
	if !strings.Contains(counters, "packets ") || strings.Contains(counters, "packets 0 ") {
		t.Errorf("policy counter did not count: %s", counters)
	}
}

func TestDataplaneCounters(t *testing.T) {
	nfttest.NeedRoot(t)
	d := newDataplane(t)
	a := newApplier(t, d.fw)
	if _, err := a.Apply(d.rs); err != nil {
		t.Fatalf("apply: %v", err)
	}
	_ = listen(t, d.inet, "192.0.2.2:443")
	_ = listen(t, d.tenant, "10.0.0.100:80")
	zero, err := a.Counters()
	if err != nil {
		t.Fatalf("counters: %v", err)
	}
	for _, n := range []string{PolicyCounter("https"), ServiceCounter("web"), DropCounter} {
		if c, ok := zero[n]; !ok || c != (Counter{}) {
			t.Fatalf("counter %s before traffic = %+v (present %v), want zero", n, c, ok)
		}
	}
	for i := 0; i < 3; i++ {
		if err := dial(d.tenant, "192.0.2.2:443", 2*time.Second); err != nil {
			t.Fatalf("allowed egress: %v", err)
		}
		if err := dial(d.inet, "10.0.0.100:80", 2*time.Second); err != nil {
			t.Fatalf("allowed ingress: %v", err)
		}
	}
	if err := dial(d.tenant, "192.0.2.2:8443", 300*time.Millisecond); !isTimeout(err) {
		t.Fatalf("forbidden egress: err = %v, want a timeout (dropped)", err)
	}
	got, err := a.Counters()
	if err != nil {
		t.Fatalf("counters: %v", err)
	}
	// Each allowed connection's SYN is accepted by its rule (the rest of
	// the connection by ct state); the forbidden SYN is dropped at least once.
	for _, n := range []string{PolicyCounter("https"), ServiceCounter("web")} {
		if c := got[n]; c.Packets < 3 || c.Bytes < 3*40 {
			t.Errorf("counter %s = %+v after 3 connections", n, c)
		}
	}
	if c := got[DropCounter]; c.Packets < 1 || c.Bytes < 40 {
		t.Errorf("counter %s = %+v after a dropped connection", DropCounter, c)
	}
	// The kernel agrees (nothing is sent meanwhile).
	var list struct {
		Nftables []struct {
			Counter *struct {
				Name           string
				Packets, Bytes uint64
			}
		}
	}
	if err := json.Unmarshal([]byte(d.fw.Run(t, "nft", "-j", "list", "counters", "table", "inet", TableName)), &list); err != nil {
		t.Fatalf("parse nft counters: %v", err)
	}
	seen := 0
	for _, o := range list.Nftables {
		if o.Counter == nil {
			continue
		}
		seen++
		if c := got[o.Counter.Name]; c.Packets != o.Counter.Packets || c.Bytes != o.Counter.Bytes {
			t.Errorf("counter %s: Counters() %+v, nft %+v", o.Counter.Name, c, *o.Counter)
		}
	}
	if seen != len(got) {
		t.Errorf("nft lists %d counters, Counters() %d", seen, len(got))
	}

	// An incremental update and a full replace keep the values.
	more := *d.rs
	more.Egress = append(more.Egress, Rule{Policy: "dns", CIDRs: []netip.Prefix{netip.MustParsePrefix("192.0.2.53/32")}, Protocol: UDP, Port: 53})
	if res, err := a.Apply(&more); err != nil || res.Full {
		t.Fatalf("incremental apply: result %+v, err %v", res, err)
	}
	a.Reset()
	if res, err := a.Apply(&more); err != nil || !res.Full {
		t.Fatalf("full apply: result %+v, err %v", res, err)
	}
	after, err := a.Counters()
	if err != nil {
		t.Fatalf("counters: %v", err)
	}
	for _, n := range []string{PolicyCounter("https"), ServiceCounter("web"), DropCounter} {
		if after[n].Packets < got[n].Packets || after[n].Bytes < got[n].Bytes {
			t.Errorf("counter %s went back from %+v to %+v", n, got[n], after[n])
		}
	}
	if _, ok := after[PolicyCounter("dns")]; !ok {
		t.Errorf("no counter for the added policy: %v", after)
	}
}
