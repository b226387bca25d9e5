package dnsproxy

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// BenchmarkThroughput measures queries per second with 4 concurrent UDP
// clients, straight to the upstream and through the proxy (with selectors
// that learn from half of the answers), in the same run, and reports both
// and their ratio. ns/op is the proxied phase.
func BenchmarkThroughput(b *testing.B) {
	up := startUpstream(b)
	_, addr := startProxy(b, Config{Upstream: up},
		Selector{Set: "web", MatchPattern: "*.example.com"},
		Selector{Set: "cdn", MatchName: "alias.example.net"},
	)
	names := []string{"www.example.com.", "other.example.org.", "alias.example.net.", "nope.example.com."}
	const clients = 4

	run := func(server string, n int) time.Duration {
		var next atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for range clients {
			wg.Go(func() {
				c := &dns.Client{Net: "udp", Timeout: deadline}
				conn, err := c.Dial(server)
				if err != nil {
					b.Error(err)
					return
				}
				defer conn.Close()
				for {
					i := next.Add(1)
					if i > int64(n) {
						return
					}
					m := new(dns.Msg).SetQuestion(names[i%int64(len(names))], dns.TypeA)
					if _, _, err := c.ExchangeWithConn(m, conn); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		return time.Since(start)
	}

	b.StopTimer()
	direct := run(up, b.N)
	b.StartTimer()
	proxied := run(addr, b.N)
	b.StopTimer()

	dq := float64(b.N) / direct.Seconds()
	pq := float64(b.N) / proxied.Seconds()
	b.ReportMetric(dq, "direct-q/s")
	b.ReportMetric(pq, "proxy-q/s")
	b.ReportMetric(pq/dq, "ratio")
	b.Logf("n=%d direct %.0f q/s, through proxy %.0f q/s, ratio %.2f", b.N, dq, pq, pq/dq)
}
