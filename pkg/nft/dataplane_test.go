package nft

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// dataplane is tenant ns — firewall ns — internet ns connected by veths.
type dataplane struct {
	tenant, fw, inet *testNS
	rs               *Ruleset
}

func newDataplane(t *testing.T) *dataplane {
	d := &dataplane{tenant: newNS(t, "ten"), fw: newNS(t, "fw"), inet: newNS(t, "net")}
	d.fw.run(t, "ip", "link", "add", "tenant0", "type", "veth", "peer", "name", "up0", "netns", d.tenant.name)
	d.fw.run(t, "ip", "link", "add", "ext0", "type", "veth", "peer", "name", "up0", "netns", d.inet.name)
	d.fw.run(t, "ip", "addr", "add", "10.0.0.1/24", "dev", "tenant0")
	d.fw.run(t, "ip", "addr", "add", "192.0.2.1/24", "dev", "ext0")
	d.fw.run(t, "ip", "addr", "add", "192.0.2.10/32", "dev", "ext0") // egress SNAT IP
	for _, l := range []string{"lo", "tenant0", "ext0"} {
		d.fw.run(t, "ip", "link", "set", l, "up")
	}
	d.fw.run(t, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	d.tenant.run(t, "ip", "addr", "add", "10.0.0.2/24", "dev", "up0")
	d.tenant.run(t, "ip", "addr", "add", "10.0.0.100/32", "dev", "up0") // service IP
	d.inet.run(t, "ip", "addr", "add", "192.0.2.2/24", "dev", "up0")
	for _, n := range []*testNS{d.tenant, d.inet} {
		n.run(t, "ip", "link", "set", "lo", "up")
		n.run(t, "ip", "link", "set", "up0", "up")
	}
	d.tenant.run(t, "ip", "route", "add", "default", "via", "10.0.0.1")
	d.inet.run(t, "ip", "route", "add", "10.0.0.100/32", "via", "192.0.2.1") // service IP only
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
func listen(t *testing.T, n *testNS, addr string) <-chan string {
	t.Helper()
	var l net.Listener
	if err := n.do(func() (err error) { l, err = net.Listen("tcp", addr); return err }); err != nil {
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
func dial(n *testNS, addr string, timeout time.Duration) error {
	return n.do(func() error {
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
	needRoot(t)
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
	counters := d.fw.run(t, "nft", "list", "counter", "inet", TableName, "pol_https")
	if !strings.Contains(counters, "packets ") || strings.Contains(counters, "packets 0 ") {
		t.Errorf("policy counter did not count: %s", counters)
	}
}

func TestDataplaneReload(t *testing.T) {
	needRoot(t)
	d := newDataplane(t)
	a := newApplier(t, d.fw)
	if _, err := a.Apply(d.rs); err != nil {
		t.Fatalf("apply: %v", err)
	}
	forbidden := listen(t, d.inet, "192.0.2.2:8443")
	_ = listen(t, d.inet, "192.0.2.2:443")

	var attempts, leaks, allowedOK atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	loop := func(fn func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				fn()
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	for i := 0; i < 4; i++ {
		loop(func() {
			attempts.Add(1)
			if dial(d.tenant, "192.0.2.2:8443", 20*time.Millisecond) == nil {
				leaks.Add(1)
			}
		})
	}
	loop(func() {
		if dial(d.tenant, "192.0.2.2:443", 200*time.Millisecond) == nil {
			allowedOK.Add(1)
		}
	})
	alt := *d.rs
	alt.Egress = append([]Rule{{Policy: "dns", CIDRs: []netip.Prefix{netip.MustParsePrefix("192.0.2.53/32")}, Protocol: UDP, Port: 53}}, d.rs.Egress...)
	var applyErr error
	for i := 0; i < 50 && applyErr == nil; i++ {
		rs := d.rs
		if i%2 == 0 {
			rs = &alt
		}
		res, err := a.Apply(rs)
		if err == nil && !res.Full {
			t.Errorf("reload %d was not a full replace", i)
		}
		applyErr = err
		time.Sleep(20 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if applyErr != nil {
		t.Fatalf("reload: %v", applyErr)
	}
	t.Logf("reload: %d forbidden attempts, %d allowed connections during 50 swaps", attempts.Load(), allowedOK.Load())
	if attempts.Load() < 100 {
		t.Fatalf("only %d attempts during reload", attempts.Load())
	}
	if leaks.Load() != 0 || len(forbidden) != 0 {
		t.Fatalf("%d forbidden connections succeeded during reload", leaks.Load()+int64(len(forbidden)))
	}
	if allowedOK.Load() == 0 {
		t.Fatal("no allowed connection succeeded during reload")
	}
}
