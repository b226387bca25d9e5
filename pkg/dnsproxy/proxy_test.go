package dnsproxy

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"
)

// Every query is forwarded and its answer relayed unchanged, whatever the
// name or type, with or without selectors.
func TestRelay(t *testing.T) {
	up := startUpstream(t)
	p, addr := startProxy(t, Config{Upstream: up}, Selector{Set: "s", MatchName: "www.example.com"})
	for _, tc := range []struct {
		name  string
		qtype uint16
		rcode int
		n     int
	}{
		{"www.example.com", dns.TypeA, dns.RcodeSuccess, 1},
		{"www.example.com", dns.TypeAAAA, dns.RcodeSuccess, 1},
		{"www.example.com", dns.TypeMX, dns.RcodeSuccess, 1},
		{"www.example.com", dns.TypeTXT, dns.RcodeSuccess, 1},
		{"other.example.com", dns.TypeA, dns.RcodeSuccess, 1},
		{"alias.example.net", dns.TypeA, dns.RcodeSuccess, 3},
		{"nope.example.com", dns.TypeA, dns.RcodeNameError, 0},
	} {
		for _, network := range []string{"udp", "tcp"} {
			direct := query(t, network, up, tc.name, tc.qtype)
			relayed := query(t, network, addr, tc.name, tc.qtype)
			if relayed.Rcode != tc.rcode || len(relayed.Answer) != tc.n {
				t.Errorf("%s %s over %s: rcode %s, %d answers; want %s, %d", tc.name, dns.TypeToString[tc.qtype], network,
					dns.RcodeToString[relayed.Rcode], len(relayed.Answer), dns.RcodeToString[tc.rcode], tc.n)
			}
			if d := cmp.Diff(answers(direct), answers(relayed)); d != "" {
				t.Errorf("%s %s over %s: relayed answer differs (-direct +relayed):\n%s", tc.name, dns.TypeToString[tc.qtype], network, d)
			}
			if relayed.Rcode != direct.Rcode || relayed.RecursionAvailable != direct.RecursionAvailable || relayed.Truncated {
				t.Errorf("%s over %s: header differs: direct %v, relayed %v", tc.name, network, direct.MsgHdr, relayed.MsgHdr)
			}
		}
	}
	st := p.Stats()
	if st.Queries != 14 || st.Forwarded != 14 || st.Failures != 0 {
		t.Errorf("stats %+v, want 14 queries forwarded", st)
	}
}

// Matching answers feed the selectors' sets; the addresses are in Sets
// before the client has the answer, so a client can connect at once.
func TestLearn(t *testing.T) {
	up := startUpstream(t)
	for _, tc := range []struct {
		name    string
		sel     []Selector
		queries []string // name/type, type A unless it ends in "/AAAA"
		want    map[string][]netip.Addr
	}{{
		name:    "exact name, case and trailing dot ignored",
		sel:     []Selector{{Set: "web", MatchName: "WWW.example.com."}},
		queries: []string{"www.EXAMPLE.com", "www.example.com/AAAA", "other.example.com"},
		want:    map[string][]netip.Addr{"web": addrs("192.0.2.1", "2001:db8::1")},
	}, {
		name:    "wildcard matches any depth but not the apex",
		sel:     []Selector{{Set: "org", MatchPattern: "*.example.org"}},
		queries: []string{"a.b.example.org", "c.example.org", "example.org", "www.example.com"},
		want:    map[string][]netip.Addr{"org": addrs("192.0.2.10", "192.0.2.11")},
	}, {
		name:    "query name matches: whole CNAME chain counts",
		sel:     []Selector{{Set: "alias", MatchName: "alias.example.net"}},
		queries: []string{"alias.example.net", "alias.example.net/AAAA"},
		want:    map[string][]netip.Addr{"alias": addrs("198.51.100.7", "2001:db8::7")},
	}, {
		name: "CNAME target matches",
		sel: []Selector{
			{Set: "cdn", MatchPattern: "*.cdn.test"},
			{Set: "mid", MatchName: "mid.example.net"},
			{Set: "none", MatchName: "nothing.example.net"},
		},
		queries: []string{"alias.example.net"},
		want: map[string][]netip.Addr{
			"cdn":  addrs("198.51.100.7"),
			"mid":  addrs("198.51.100.7"),
			"none": {},
		},
	}, {
		name:    "non-matching names learn nothing",
		sel:     []Selector{{Set: "web", MatchName: "www.example.com"}},
		queries: []string{"other.example.com", "nope.example.com", "alias.example.net", "big.example.com"},
		want:    map[string][]netip.Addr{"web": {}},
	}, {
		name:    "addresses outside the selected chain are ignored",
		sel:     []Selector{{Set: "stray", MatchName: "stray.example.com"}},
		queries: []string{"stray.example.com"},
		want:    map[string][]netip.Addr{"stray": addrs("192.0.2.77")},
	}, {
		name: "selectors sharing a set are merged, sorted and deduplicated",
		sel: []Selector{
			{Set: "shared", MatchName: "www.example.com"},
			{Set: "shared", MatchPattern: "*.example.com"},
			{Set: "all", MatchPattern: "*"},
		},
		queries: []string{"www.example.com/AAAA", "www.example.com", "other.example.com"},
		want: map[string][]netip.Addr{
			"shared": addrs("192.0.2.1", "203.0.113.9", "2001:db8::1"),
			"all":    addrs("192.0.2.1", "203.0.113.9", "2001:db8::1"),
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			p, addr := startProxy(t, Config{Upstream: up}, tc.sel...)
			for _, q := range tc.queries {
				qtype := dns.TypeA
				if name, ok := cutSuffix(q, "/AAAA"); ok {
					q, qtype = name, dns.TypeAAAA
				}
				query(t, "udp", addr, q, qtype)
			}
			diffSets(t, p.Sets(), tc.want)
		})
	}
}

func cutSuffix(s, suffix string) (string, bool) {
	if len(s) >= len(suffix) && s[len(s)-len(suffix):] == suffix {
		return s[:len(s)-len(suffix)], true
	}
	return s, false
}

// Addresses stay for their TTL clamped to [MinTTL, MaxTTL] and then expire,
// which Changed reports.
func TestExpiry(t *testing.T) {
	up := startUpstream(t)
	p, addr := startProxy(t, Config{Upstream: up, MinTTL: time.Millisecond, MaxTTL: time.Hour},
		Selector{Set: "short", MatchPattern: "short*.example.com"},
		Selector{Set: "long", MatchName: "long.example.com"},
	)
	before := time.Now()
	query(t, "udp", addr, "short.example.com", dns.TypeA)
	query(t, "tcp", addr, "short6.example.com", dns.TypeAAAA)
	query(t, "udp", addr, "long.example.com", dns.TypeA)
	after := time.Now()
	diffSets(t, p.Sets(), map[string][]netip.Addr{
		"short": addrs("192.0.2.50", "2001:db8::50"),
		"long":  addrs("192.0.2.60"),
	})
	// The expiry times follow the records' TTLs (1 s, 2 s) and MaxTTL.
	want := map[netip.Addr][2]time.Time{
		netip.MustParseAddr("192.0.2.50"):   {before.Add(time.Second), after.Add(time.Second)},
		netip.MustParseAddr("2001:db8::50"): {before.Add(2 * time.Second), after.Add(2 * time.Second)},
		netip.MustParseAddr("192.0.2.60"):   {before.Add(time.Hour), after.Add(time.Hour)},
	}
	for _, es := range p.Entries() {
		for _, e := range es {
			w := want[e.Addr]
			if e.Expires.Before(w[0]) || e.Expires.After(w[1]) {
				t.Errorf("%s expires at %s, want within [%s, %s]", e.Addr, e.Expires, w[0], w[1])
			}
		}
	}

	waitSets(t, p, "the 1 s address to expire", func(s map[string][]netip.Addr) bool {
		return !slices.Contains(s["short"], netip.MustParseAddr("192.0.2.50"))
	})
	if time.Now().Before(before.Add(time.Second)) {
		t.Errorf("192.0.2.50 expired before its TTL ran out")
	}
	waitSets(t, p, "the short set to empty", func(s map[string][]netip.Addr) bool { return len(s["short"]) == 0 })
	diffSets(t, p.Sets(), map[string][]netip.Addr{"short": {}, "long": addrs("192.0.2.60")})

	// Asking again brings the address back, and it expires again.
	query(t, "udp", addr, "short.example.com", dns.TypeA)
	diffSets(t, p.Sets(), map[string][]netip.Addr{"short": addrs("192.0.2.50"), "long": addrs("192.0.2.60")})
	waitSets(t, p, "the re-learned address to expire", func(s map[string][]netip.Addr) bool { return len(s["short"]) == 0 })
}

// MinTTL keeps addresses of short-lived records longer (clients cache them).
func TestMinTTL(t *testing.T) {
	up := startUpstream(t)
	p, addr := startProxy(t, Config{Upstream: up}, Selector{Set: "s", MatchName: "short.example.com"})
	before := time.Now()
	query(t, "udp", addr, "short.example.com", dns.TypeA)
	es := p.Entries()["s"]
	if len(es) != 1 || es[0].Expires.Before(before.Add(DefaultMinTTL)) {
		t.Errorf("entries %v, want 192.0.2.50 kept at least %s", es, DefaultMinTTL)
	}
}

// Replacing the selectors drops the sets (and addresses) of removed
// selectors, keeps the rest, and rejects invalid selectors whole.
func TestSetSelectors(t *testing.T) {
	up := startUpstream(t)
	web := Selector{Set: "web", MatchName: "www.example.com"}
	org := Selector{Set: "org", MatchPattern: "*.example.org"}
	other := Selector{Set: "web", MatchName: "other.example.com"}
	p, addr := startProxy(t, Config{Upstream: up}, web, org, other)
	for _, n := range []string{"www.example.com", "c.example.org", "other.example.com"} {
		query(t, "udp", addr, n, dns.TypeA)
	}
	diffSets(t, p.Sets(), map[string][]netip.Addr{"web": addrs("192.0.2.1", "203.0.113.9"), "org": addrs("192.0.2.11")})

	// Drain, so the next receive proves the replacement signalled.
	select {
	case <-p.Changed():
	default:
	}
	if err := p.SetSelectors([]Selector{web, {Set: "new", MatchName: "a.b.example.org"}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Changed():
	case <-time.After(deadline):
		t.Fatal("SetSelectors did not signal Changed")
	}
	diffSets(t, p.Sets(), map[string][]netip.Addr{"web": addrs("192.0.2.1"), "new": {}})

	for _, bad := range [][]Selector{
		{{Set: "x", MatchPattern: "*.exa mple.com"}},
		{{Set: "x", MatchName: "a..b"}},
		{{Set: "x", MatchName: "a", MatchPattern: "b"}},
		{{Set: "x"}},
		{{MatchName: "www.example.com"}},
		{web, {Set: "y", MatchPattern: "(.*)"}},
	} {
		if err := p.SetSelectors(bad); err == nil {
			t.Errorf("SetSelectors(%v) accepted", bad)
		}
	}
	if d := cmp.Diff([]Selector{web, {Set: "new", MatchName: "a.b.example.org"}}, p.Selectors()); d != "" {
		t.Errorf("selectors after rejected updates (-want +got):\n%s", d)
	}
	query(t, "tcp", addr, "a.b.example.org", dns.TypeA)
	diffSets(t, p.Sets(), map[string][]netip.Addr{"web": addrs("192.0.2.1"), "new": addrs("192.0.2.10")})

	if err := p.SetSelectors(nil); err != nil {
		t.Fatal(err)
	}
	diffSets(t, p.Sets(), map[string][]netip.Addr{})
}

// Over TCP queries are forwarded over TCP and learn as well.
func TestTCP(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	z := testZone(t)
	up := startServer(t, dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		mu.Lock()
		seen[w.RemoteAddr().Network()]++
		mu.Unlock()
		z.ServeDNS(w, r)
	}))
	p, addr := startProxy(t, Config{Upstream: up}, Selector{Set: "cdn", MatchPattern: "target.*"})
	r := query(t, "tcp", addr, "alias.example.net", dns.TypeAAAA)
	if len(r.Answer) != 3 {
		t.Errorf("answers %v", answers(r))
	}
	diffSets(t, p.Sets(), map[string][]netip.Addr{"cdn": addrs("2001:db8::7")})
	mu.Lock()
	defer mu.Unlock()
	if d := cmp.Diff(map[string]int{"tcp": 1}, seen); d != "" {
		t.Errorf("upstream transports (-want +got):\n%s", d)
	}
}

// A UDP answer too big for the client is truncated with TC set; the client's
// retry over TCP gets it whole. A client with a big enough EDNS0 buffer gets
// it whole over UDP.
func TestTruncation(t *testing.T) {
	up := startUpstream(t)
	p, addr := startProxy(t, Config{Upstream: up}, Selector{Set: "big", MatchName: "big.example.com"})

	// Read the datagram itself to check its size on the wire.
	c := &dns.Client{Net: "udp", Timeout: deadline}
	conn, err := c.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(deadline))
	m := new(dns.Msg).SetQuestion("big.example.com.", dns.TypeA)
	if err := conn.WriteMsg(m); err != nil {
		t.Fatal(err)
	}
	conn.UDPSize = dns.MaxMsgSize
	raw, err := conn.ReadMsgHeader(nil)
	if err != nil {
		t.Fatal(err)
	}
	r := new(dns.Msg)
	if err := r.Unpack(raw); err != nil {
		t.Fatal(err)
	}
	if !r.Truncated || len(r.Answer) >= 100 || len(raw) > dns.MinMsgSize || r.Id != m.Id {
		t.Errorf("udp answer: truncated %v, %d answers, %d bytes, id %d; want TC, < 100 answers, <= 512 bytes, id %d",
			r.Truncated, len(r.Answer), len(raw), r.Id, m.Id)
	}
	// What dns.Client users and stub resolvers do on TC: retry over TCP.
	r = query(t, "tcp", addr, "big.example.com", dns.TypeA)
	if r.Truncated || len(r.Answer) != 100 {
		t.Errorf("tcp answer: truncated %v, %d answers; want all 100", r.Truncated, len(r.Answer))
	}

	m = new(dns.Msg).SetQuestion("big.example.com.", dns.TypeA)
	m.SetEdns0(4096, false)
	r, _, err = c.Exchange(m, addr)
	if err != nil {
		t.Fatal(err)
	}
	if r.Truncated || len(r.Answer) != 100 {
		t.Errorf("udp answer with EDNS0 4096: truncated %v, %d answers; want all 100", r.Truncated, len(r.Answer))
	}
	if got := len(p.Sets()["big"]); got != 100 {
		t.Errorf("learned %d addresses, want 100", got)
	}
	if st := p.Stats(); st.Truncated != 1 {
		t.Errorf("stats %+v, want 1 truncated", st)
	}
}

// Queries, selector replacement and expiry run concurrently (for -race).
func TestConcurrent(t *testing.T) {
	up := startUpstream(t)
	p, addr := startProxy(t, Config{Upstream: up, MinTTL: time.Millisecond},
		Selector{Set: "a", MatchPattern: "*.example.com"})
	names := []string{"www.example.com", "short.example.com", "c.example.org", "alias.example.net", "other.example.com"}
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 50 {
				network := "udp"
				if (i+j)%5 == 0 {
					network = "tcp"
				}
				query(t, network, addr, names[(i+j)%len(names)], dns.TypeA)
			}
		})
	}
	wg.Go(func() {
		for j := range 50 {
			sel := []Selector{{Set: "a", MatchPattern: "*.example.com"}}
			if j%2 == 0 {
				sel = append(sel, Selector{Set: "b", MatchPattern: "*.example.org"})
			}
			if err := p.SetSelectors(sel); err != nil {
				t.Error(err)
			}
			_ = p.Sets()
		}
	})
	wg.Wait()
	if st := p.Stats(); st.Queries != 200 || st.Forwarded != 200 {
		t.Errorf("stats %+v, want 200 queries forwarded", st)
	}
	waitSets(t, p, "www.example.com learned", func(s map[string][]netip.Addr) bool {
		return slices.Contains(s["a"], netip.MustParseAddr("192.0.2.1"))
	})
}

// Towards upstream the proxy uses IDs of its own choosing, so a tenant that
// picks the client ID cannot predict the upstream one; clients still get
// their own ID back.
func TestUpstreamID(t *testing.T) {
	var mu sync.Mutex
	var ids []uint16
	z := testZone(t)
	up := startServer(t, dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		mu.Lock()
		ids = append(ids, r.Id)
		mu.Unlock()
		z.ServeDNS(w, r)
	}))
	_, addr := startProxy(t, Config{Upstream: up})
	for i := range 6 {
		network := []string{"udp", "tcp"}[i%2]
		m := new(dns.Msg).SetQuestion("www.example.com.", dns.TypeA)
		m.Id = 4242
		r, _, err := (&dns.Client{Net: network, Timeout: deadline}).Exchange(m, addr)
		if err != nil {
			t.Fatal(err)
		}
		if r.Id != 4242 || len(r.Answer) != 1 {
			t.Errorf("over %s: answer id %d with %d answers, want id 4242", network, r.Id, len(r.Answer))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ids) != 6 || !slices.ContainsFunc(ids, func(id uint16) bool { return id != 4242 }) {
		t.Errorf("upstream saw ids %v; want 6 queries with the proxy's own ids", ids)
	}
}

// Run fails with a listen error when the address is taken, and a Proxy runs
// only once.
func TestRunErrors(t *testing.T) {
	up := startUpstream(t)
	p, addr := startProxy(t, Config{Upstream: up})
	if err := p.Run(context.Background()); err == nil {
		t.Error("second Run succeeded")
	}
	q, err := New(Config{Listen: addr, Upstream: up}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if err := q.Run(ctx); err == nil {
		t.Errorf("Run on the taken address %s succeeded", addr)
	}
}

// Run closes its listeners when ctx is done.
func TestRunCloses(t *testing.T) {
	up := startUpstream(t)
	p, err := New(Config{Listen: "127.0.0.1:0", Upstream: up}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- p.Run(ctx) }()
	select {
	case <-p.Ready():
	case err := <-errc:
		t.Fatal(err)
	case <-time.After(deadline):
		t.Fatal("not ready")
	}
	udp, _ := p.Addr()
	query(t, "udp", udp.String(), "www.example.com", dns.TypeA)
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(deadline):
		t.Fatal("run did not return")
	}
	pc, ln, err := listen(udp.String())
	if err != nil {
		t.Fatalf("address not free after Run returned: %v", err)
	}
	pc.Close()
	ln.Close()
}

func TestNewValidates(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"minimal", Config{Listen: "127.0.0.1:53", Upstream: "127.0.0.1:5353"}, true},
		{"ipv6", Config{Listen: "[::1]:0", Upstream: "[2001:db8::53]:53"}, true},
		{"no listen", Config{Upstream: "127.0.0.1:53"}, false},
		{"no upstream", Config{Listen: "127.0.0.1:53"}, false},
		{"upstream without port", Config{Listen: "127.0.0.1:53", Upstream: "127.0.0.1"}, false},
		{"upstream port 0", Config{Listen: "127.0.0.1:53", Upstream: "127.0.0.1:0"}, false},
		{"min above max", Config{Listen: ":53", Upstream: "127.0.0.1:53", MinTTL: time.Hour, MaxTTL: time.Minute}, false},
		{"negative timeout", Config{Listen: ":53", Upstream: "127.0.0.1:53", Timeout: -time.Second}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg, nil)
			if (err == nil) != tc.ok {
				t.Errorf("New(%+v) error %v, want ok %v", tc.cfg, err, tc.ok)
			}
		})
	}
	p, err := New(Config{Listen: ":53", Upstream: "127.0.0.1:53"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Listen: ":53", Upstream: "127.0.0.1:53", Timeout: DefaultTimeout, MinTTL: DefaultMinTTL, MaxTTL: DefaultMaxTTL}
	if d := cmp.Diff(want, p.cfg); d != "" {
		t.Errorf("defaults (-want +got):\n%s", d)
	}
}
