package nft

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// bigRuleset is the fixture with n egress rules, each with its own /32.
func bigRuleset(n int) *Ruleset {
	rs := fixture()
	for i := 0; i < n; i++ {
		ip := netip.AddrFrom4([4]byte{10, byte(100 + i>>16), byte(i >> 8), byte(i)})
		rs.Egress = append(rs.Egress, Rule{Policy: fmt.Sprintf("p%d", i%100),
			CIDRs: []netip.Prefix{netip.PrefixFrom(ip, 32)}, Protocol: TCP, Port: uint16(1000 + i%5000)})
	}
	return rs
}

func BenchmarkFullApply10k(b *testing.B) {
	needRoot(b)
	ns := newNS(b, "bench")
	rs := bigRuleset(10000)
	file := filepath.Join(b.TempDir(), "ruleset.nft")
	f, err := os.Create(file)
	if err != nil {
		b.Fatal(err)
	}
	if err := Render(f, rs); err != nil {
		b.Fatal(err)
	}
	_ = f.Close()
	a := newApplier(b, ns)
	var goTime, nftTime time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		a.Reset()
		if _, err := a.Apply(rs); err != nil {
			b.Fatal(err)
		}
		goTime += time.Since(start)
		b.StopTimer()
		start = time.Now()
		if out, err := exec.Command("ip", "netns", "exec", ns.name, "nft", "-f", file).CombinedOutput(); err != nil {
			b.Fatalf("nft -f: %v: %s", err, out)
		}
		nftTime += time.Since(start)
		b.StartTimer()
	}
	b.ReportMetric(float64(goTime.Milliseconds())/float64(b.N), "go-ms/op")
	b.ReportMetric(float64(nftTime.Milliseconds())/float64(b.N), "nft-f-ms/op")
	b.ReportMetric(float64(goTime)/float64(nftTime), "go/nft-f")
}

func BenchmarkServiceChange10k(b *testing.B) {
	needRoot(b)
	ns := newNS(b, "bench")
	rs := bigRuleset(10000)
	a := newApplier(b, ns)
	if _, err := a.Apply(rs); err != nil {
		b.Fatal(err)
	}
	ips := []netip.Addr{netip.MustParseAddr("10.0.0.150"), netip.MustParseAddr("10.0.0.151")}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rs.Services[0].IP = ips[i%2]
		res, err := a.Apply(rs)
		if err != nil {
			b.Fatal(err)
		}
		if res.Full {
			b.Fatal("service change replaced the whole table")
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/op")
}

func BenchmarkSetElements100k(b *testing.B) {
	needRoot(b)
	ns := newNS(b, "bench")
	rs := fixture()
	rs.FQDNSets[0].IPs = manyAddrs(100000)
	a := newApplier(b, ns)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		a.Reset()
		if _, err := a.Apply(rs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/op")
}
