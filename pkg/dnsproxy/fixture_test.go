package dnsproxy

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"
)

// deadline bounds every wait in these tests; waits end as soon as the
// awaited thing happens, so it only matters when something is broken.
const deadline = 15 * time.Second

// zone is the data of a test upstream: owner name → records.
type zone map[string][]dns.RR

func newZone(t testing.TB, records ...string) zone {
	t.Helper()
	z := zone{}
	for _, s := range records {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatalf("parse record %q: %v", s, err)
		}
		n := canonical(rr.Header().Name)
		z[n] = append(z[n], rr)
	}
	return z
}

// testZone serves the names the tests query.
func testZone(t testing.TB) zone {
	recs := []string{
		"www.example.com. 300 IN A 192.0.2.1",
		"www.example.com. 300 IN AAAA 2001:db8::1",
		"www.example.com. 300 IN MX 10 mail.example.com.",
		"www.example.com. 300 IN TXT \"hello\"",
		"other.example.com. 300 IN A 203.0.113.9",
		"a.b.example.org. 300 IN A 192.0.2.10",
		"c.example.org. 300 IN A 192.0.2.11",
		"example.org. 300 IN A 192.0.2.12",
		"alias.example.net. 300 IN CNAME mid.example.net.",
		"mid.example.net. 300 IN CNAME target.cdn.test.",
		"target.cdn.test. 300 IN A 198.51.100.7",
		"target.cdn.test. 300 IN AAAA 2001:db8::7",
		"short.example.com. 1 IN A 192.0.2.50",
		"short6.example.com. 2 IN AAAA 2001:db8::50",
		"long.example.com. 604800 IN A 192.0.2.60",
		"stray.example.com. 300 IN A 192.0.2.77",
	}
	for i := 1; i <= 100; i++ {
		recs = append(recs, fmt.Sprintf("big.example.com. 300 IN A 198.51.100.%d", i))
	}
	return newZone(t, recs...)
}

// ServeDNS answers like a recursive resolver would: CNAME chains are
// followed within the zone. "stray.example.com" additionally gets an address
// owned by an unrelated name, as a broken or hostile upstream might add.
func (z zone) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg).SetReply(r)
	m.Compress = true
	m.RecursionAvailable = true
	q := r.Question[0]
	name := canonical(q.Name)
	if _, ok := z[name]; !ok {
		m.Rcode = dns.RcodeNameError
	}
	for range 8 {
		rrs := z[name]
		if len(rrs) == 1 && q.Qtype != dns.TypeCNAME {
			if c, ok := rrs[0].(*dns.CNAME); ok {
				m.Answer = append(m.Answer, dns.Copy(c))
				name = canonical(c.Target)
				continue
			}
		}
		for _, rr := range rrs {
			if rr.Header().Rrtype == q.Qtype || q.Qtype == dns.TypeANY {
				m.Answer = append(m.Answer, dns.Copy(rr))
			}
		}
		break
	}
	if name == "stray.example.com." {
		rr, _ := dns.NewRR("unrelated.test. 300 IN A 203.0.113.66")
		m.Answer = append(m.Answer, rr)
	}
	_ = w.WriteMsg(m)
}

// startServer serves h on 127.0.0.1 (UDP and TCP on one port) until the test
// ends and returns host:port.
func startServer(t testing.TB, h dns.Handler) string {
	t.Helper()
	pc, ln, err := listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait) // runs last: after the servers' shutdowns below
	for _, srv := range []*dns.Server{
		{PacketConn: pc, Handler: h, UDPSize: dns.MaxMsgSize},
		{Listener: ln, Handler: h},
	} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		wg.Go(func() { _ = srv.ActivateAndServe() })
		select {
		case <-started:
		case <-time.After(deadline):
			t.Fatal("upstream did not start")
		}
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	return pc.LocalAddr().String()
}

// startUpstream serves testZone and returns its address.
func startUpstream(t testing.TB) string { return startServer(t, testZone(t)) }

// startProxy runs a Proxy for cfg (Listen defaults to 127.0.0.1:0) until
// the test ends, and checks that Run returns nil then.
func startProxy(t testing.TB, cfg Config, sel ...Selector) (*Proxy, string) {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	p, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.SetSelectors(sel); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(deadline):
			t.Error("run did not return after cancel")
		}
	})
	select {
	case <-p.Ready():
	case err := <-errc:
		t.Fatalf("run: %v", err)
	case <-time.After(deadline):
		t.Fatal("proxy not ready")
	}
	udp, tcp := p.Addr()
	if udp.String() != tcp.String() {
		t.Fatalf("udp %s and tcp %s listen on different addresses", udp, tcp)
	}
	return p, udp.String()
}

// query asks server for name/qtype over network ("udp" or "tcp").
func query(t testing.TB, network, server, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg).SetQuestion(dns.Fqdn(name), qtype)
	c := &dns.Client{Net: network, Timeout: deadline}
	r, _, err := c.Exchange(m, server)
	if err != nil {
		t.Fatalf("query %s %s over %s: %v", name, dns.TypeToString[qtype], network, err)
	}
	if r.Id != m.Id {
		t.Fatalf("answer id %d, query id %d", r.Id, m.Id)
	}
	return r
}

// answers renders a message's answer section for comparison.
func answers(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		out = append(out, strings.ReplaceAll(rr.String(), "\t", " "))
	}
	return out
}

// waitSets waits, by Changed, until want reports true for Sets, and fails
// the test with the last Sets after the deadline.
func waitSets(t testing.TB, p *Proxy, what string, want func(map[string][]netip.Addr) bool) {
	t.Helper()
	timeout := time.After(deadline)
	for {
		sets := p.Sets()
		if want(sets) {
			return
		}
		select {
		case <-p.Changed():
		case <-timeout:
			t.Fatalf("waiting for %s: sets still %v", what, sets)
		}
	}
}

func addrs(ss ...string) []netip.Addr {
	out := []netip.Addr{}
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func diffSets(t testing.TB, got, want map[string][]netip.Addr) {
	t.Helper()
	if d := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
		t.Errorf("sets (-want +got):\n%s", d)
	}
}
