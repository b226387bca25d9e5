package nft

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/metalforge/metalforge/pkg/nft/nfttest"
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
	nfttest.NeedRoot(b)
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
		if out, err := exec.Command("ip", "netns", "exec", ns.Name, "nft", "-f", file).CombinedOutput(); err != nil {
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
	nfttest.NeedRoot(b)
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
	reportCompile(b, rs)
}

// BenchmarkPolicyChange10k changes one rule of one policy (100 rules of
// 10,000) back and forth: one chain is flushed and refilled. The baseline is
// `nft -f` of the same flush and refill of that chain.
func BenchmarkPolicyChange10k(b *testing.B) {
	nfttest.NeedRoot(b)
	ns := newNS(b, "bench")
	rs := bigRuleset(10000)
	a := newApplier(b, ns)
	if _, err := a.Apply(rs); err != nil {
		b.Fatal(err)
	}
	r := &rs.Egress[len(fixture().Egress)+7] // a rule of policy p7
	ports := []uint16{r.Port + 1, r.Port}
	var files []string
	for i, p := range ports {
		r.Port = p
		files = append(files, chainScript(b, rs, "out_p7", fmt.Sprintf("p7-%d.nft", i)))
	}
	var goTime, nftTime time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		r.Port = ports[i%2]
		res, err := a.Apply(rs)
		if err != nil {
			b.Fatal(err)
		}
		goTime += time.Since(start)
		if res != (Result{Chains: 1}) {
			b.Fatalf("policy change: result %+v, want one chain rewritten", res)
		}
		b.StopTimer()
		// The same work again with nft: the kernel then holds what the
		// Applier remembers.
		start = time.Now()
		if out, err := exec.Command("ip", "netns", "exec", ns.Name, "nft", "-f", files[i%2]).CombinedOutput(); err != nil {
			b.Fatalf("nft -f: %v: %s", err, out)
		}
		nftTime += time.Since(start)
		b.StartTimer()
	}
	b.ReportMetric(float64(goTime.Microseconds())/1000/float64(b.N), "go-ms/op")
	b.ReportMetric(float64(nftTime.Microseconds())/1000/float64(b.N), "nft-f-ms/op")
	b.ReportMetric(float64(goTime)/float64(nftTime), "go/nft-f")
	reportCompile(b, rs)
}

// chainScript writes an `nft -f` script that flushes and refills chain as
// rs has it.
func chainScript(b *testing.B, rs *Ruleset, chain, name string) string {
	c, err := compile(rs)
	if err != nil {
		b.Fatal(err)
	}
	var s strings.Builder
	fmt.Fprintf(&s, "flush chain inet %s %s\n", TableName, chain)
	for _, ch := range c.chains {
		if ch.name != chain {
			continue
		}
		for _, r := range ch.rules {
			parts := make([]string, len(r))
			for i, st := range r {
				parts[i] = st.text()
			}
			fmt.Fprintf(&s, "add rule inet %s %s %s\n", TableName, chain, strings.Join(parts, " "))
		}
	}
	file := filepath.Join(b.TempDir(), name)
	if err := os.WriteFile(file, []byte(s.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	return file
}

func BenchmarkSetElements100k(b *testing.B) {
	nfttest.NeedRoot(b)
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

// reportCompile reports how much of an Apply is spent in Go validating and
// compiling rs (the rest is the netlink batch and the kernel's commit).
func reportCompile(b *testing.B, rs *Ruleset) {
	b.StopTimer()
	start := time.Now()
	for i := 0; i < 5; i++ {
		if _, err := compile(rs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/1000/5, "compile-ms")
}

// BenchmarkCompile10k is the Go part of every Apply at 10,000 rules:
// validation and lowering to sets and chains.
func BenchmarkCompile10k(b *testing.B) {
	rs := bigRuleset(10000)
	for i := 0; i < b.N; i++ {
		if _, err := compile(rs); err != nil {
			b.Fatal(err)
		}
	}
}
