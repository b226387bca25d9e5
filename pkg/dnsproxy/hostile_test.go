package dnsproxy

import (
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"
)

// An upstream that refuses or does not answer yields SERVFAIL, over UDP and
// TCP; the proxy keeps working once upstream is back.
func TestUpstreamDown(t *testing.T) {
	// A port with nothing listening: refused at once.
	pc, ln, err := listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := pc.LocalAddr().String()
	pc.Close()
	ln.Close()

	// A UDP socket and a TCP listener that never answer: timeouts.
	silentUDP, silentTCP, err := listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silentUDP.Close()
	defer silentTCP.Close()
	silent := silentUDP.LocalAddr().String()

	for _, tc := range []struct{ name, upstream string }{{"refused", refused}, {"silent", silent}} {
		t.Run(tc.name, func(t *testing.T) {
			p, addr := startProxy(t, Config{Upstream: tc.upstream, Timeout: 300 * time.Millisecond},
				Selector{Set: "web", MatchName: "www.example.com"})
			for _, network := range []string{"udp", "tcp"} {
				r := query(t, network, addr, "www.example.com", dns.TypeA)
				if r.Rcode != dns.RcodeServerFailure || len(r.Answer) != 0 {
					t.Errorf("over %s: rcode %s with %d answers, want SERVFAIL", network, dns.RcodeToString[r.Rcode], len(r.Answer))
				}
				if len(r.Question) != 1 || r.Question[0].Name != "www.example.com." {
					t.Errorf("over %s: SERVFAIL question %v", network, r.Question)
				}
			}
			if st := p.Stats(); st.Failures != 2 || st.Forwarded != 0 {
				t.Errorf("stats %+v, want 2 failures", st)
			}
			diffSets(t, p.Sets(), map[string][]netip.Addr{"web": {}})
		})
	}
}

// Garbage on either transport neither crashes the proxy nor poisons its
// sets; it keeps answering real queries.
func TestGarbage(t *testing.T) {
	var mu sync.Mutex
	var upstreamQueries int
	z := testZone(t)
	up := startServer(t, dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		mu.Lock()
		upstreamQueries++
		mu.Unlock()
		z.ServeDNS(w, r)
	}))
	p, addr := startProxy(t, Config{Upstream: up}, Selector{Set: "all", MatchPattern: "*"})

	valid := new(dns.Msg).SetQuestion("www.example.com.", dns.TypeA)
	wire, err := valid.Pack()
	if err != nil {
		t.Fatal(err)
	}
	resp := new(dns.Msg).SetReply(valid)
	rr, _ := dns.NewRR("www.example.com. 300 IN A 203.0.113.99")
	resp.Answer = append(resp.Answer, rr)
	respWire, err := resp.Pack()
	if err != nil {
		t.Fatal(err)
	}
	noQuestion := slices.Clone(wire)
	noQuestion[5] = 0 // QDCOUNT 0
	manyQuestions := slices.Clone(wire)
	manyQuestions[5] = 200 // QDCOUNT 200, only one present
	pointerLoop := slices.Clone(wire[:12])
	pointerLoop[5] = 1
	pointerLoop = append(pointerLoop, 0xc0, 12, 0, 1, 0, 1) // name points at itself
	huge := make([]byte, 60000)
	for i := range huge {
		huge[i] = byte(i*7 + 3)
	}

	packets := map[string][]byte{
		"empty":          {},
		"short":          {0x12},
		"header only":    wire[:12],
		"cut question":   wire[:len(wire)-3],
		"no question":    noQuestion,
		"many questions": manyQuestions,
		"pointer loop":   pointerLoop,
		"response":       respWire, // an answer sent to the proxy must not be learned
		"huge random":    huge,
		"all ones":       slices.Repeat([]byte{0xff}, 512),
	}
	for name, pkt := range packets {
		// UDP: one datagram each.
		c, err := net.Dial("udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(pkt); err != nil {
			t.Errorf("%s: write udp: %v", name, err)
		}
		c.Close()

		// TCP: length-prefixed, and once with a lying length prefix.
		for i, framed := range [][]byte{
			append([]byte{byte(len(pkt) >> 8), byte(len(pkt))}, pkt...),
			append([]byte{0xff, 0xff}, pkt...),
		} {
			tc, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			_ = tc.SetDeadline(time.Now().Add(100 * time.Millisecond))
			_, _ = tc.Write(framed)
			if i == 0 {
				_, _ = tc.Read(make([]byte, 1024)) // may get FORMERR or nothing
			}
			tc.Close()
		}
	}

	// Still serving, and nothing was learned from the garbage.
	for _, network := range []string{"udp", "tcp"} {
		r := query(t, network, addr, "www.example.com", dns.TypeA)
		if d := cmp.Diff([]string{"www.example.com. 300 IN A 192.0.2.1"}, answers(r)); d != "" {
			t.Errorf("answer after garbage over %s (-want +got):\n%s", network, d)
		}
	}
	diffSets(t, p.Sets(), map[string][]netip.Addr{"all": addrs("192.0.2.1")})
	mu.Lock()
	defer mu.Unlock()
	if upstreamQueries != 2 {
		t.Errorf("upstream got %d queries, want only the 2 valid ones", upstreamQueries)
	}
}

// An upstream that answers with garbage or with an answer to another query
// is not relayed or learned from.
func TestHostileUpstream(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reply func(q *dns.Msg) []byte
	}{
		{"garbage", func(*dns.Msg) []byte { return []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13} }},
		{"wrong id", func(q *dns.Msg) []byte {
			m := answerWith(q, "www.example.com. 300 IN A 203.0.113.66")
			m.Id++
			b, _ := m.Pack()
			return b
		}},
		{"wrong question", func(q *dns.Msg) []byte {
			m := answerWith(q, "evil.example.com. 300 IN A 203.0.113.66")
			m.Question[0].Name = "evil.example.com."
			b, _ := m.Pack()
			return b
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := startServer(t, dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
				_, _ = w.Write(tc.reply(r))
			}))
			p, addr := startProxy(t, Config{Upstream: up, Timeout: 300 * time.Millisecond}, Selector{Set: "all", MatchPattern: "*"})
			for _, network := range []string{"udp", "tcp"} {
				r := query(t, network, addr, "www.example.com", dns.TypeA)
				if r.Rcode != dns.RcodeServerFailure {
					t.Errorf("over %s: rcode %s, want SERVFAIL", network, dns.RcodeToString[r.Rcode])
				}
			}
			diffSets(t, p.Sets(), map[string][]netip.Addr{"all": {}})
		})
	}
}

func answerWith(q *dns.Msg, rec string) *dns.Msg {
	m := new(dns.Msg).SetReply(q)
	rr, _ := dns.NewRR(rec)
	m.Answer = append(m.Answer, rr)
	return m
}
