package firewall

import (
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/intstr"

	fwv1 "github.com/metalforge/metalforge/pkg/apis/firewall/v1"
	"github.com/metalforge/metalforge/pkg/nft"
	"github.com/metalforge/metalforge/pkg/nft/nfttest"
)

// manyPolicies returns n policies in namespace firewall, each with an egress rule of 4 CIDRs on
// 2 ports and an ingress rule with an exception.
func manyPolicies(n int) []fwv1.ClusterwideNetworkPolicy {
	pols := make([]fwv1.ClusterwideNetworkPolicy, n)
	for i := range pols {
		p := &pols[i]
		p.Name, p.Namespace = fmt.Sprintf("policy-%04d", i), fwv1.Namespace
		var to []fwv1.IPBlock
		for j := range 4 {
			to = append(to, fwv1.IPBlock{CIDR: fmt.Sprintf("100.%d.%d.%d/32", i/256, i%256, j)})
		}
		p.Spec.Egress = []fwv1.EgressRule{{To: to, Ports: []fwv1.PolicyPort{
			{Port: ptr(intstr.FromInt32(443))}, {Port: ptr(intstr.FromInt32(8000)), EndPort: ptr(int32(8100))},
		}}}
		p.Spec.Ingress = []fwv1.IngressRule{{From: []fwv1.IPBlock{{CIDR: fmt.Sprintf("101.%d.%d.0/24", i/256, i%256), Except: []string{fmt.Sprintf("101.%d.%d.128/25", i/256, i%256)}}}}}
	}
	return pols
}

// BenchmarkBuild measures the pure ruleset build for 500 policies.
func BenchmarkBuild(b *testing.B) {
	f := loadFixture(b)
	in := Input{Firewall: f.fw, Policies: manyPolicies(500), Services: f.services, Nodes: f.nodes}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Build(in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPolicyChange measures what one policy update costs with 500 policies installed: an
// incremental apply (that policy's chain) against a full replace of the table, and prints the
// ratio.
func BenchmarkPolicyChange(b *testing.B) {
	nfttest.NeedRoot(b)
	f := loadFixture(b)
	ns := newNS(b)
	a := nft.NewApplier(nft.Config{NetNSFd: ns.Fd})
	defer a.Close()
	pols := manyPolicies(500)
	plans := [2]*Plan{}
	for i := range plans {
		pols[250].Spec.Egress[0].Ports[0].Port = ptr(intstr.FromInt32(int32(443 + i)))
		p, err := Build(Input{Firewall: f.fw, Policies: pols})
		if err != nil {
			b.Fatal(err)
		}
		plans[i] = p
	}
	if _, err := a.Apply(plans[0].Ruleset); err != nil {
		b.Fatal(err)
	}
	var inc, full time.Duration
	var n int
	for b.Loop() {
		start := time.Now()
		res, err := a.Apply(plans[(n+1)%2].Ruleset)
		if err != nil || res.Full {
			b.Fatalf("incremental apply: %+v %v", res, err)
		}
		inc += time.Since(start)
		a.Reset()
		start = time.Now()
		if res, err = a.Apply(plans[n%2].Ruleset); err != nil || !res.Full {
			b.Fatalf("full apply: %+v %v", res, err)
		}
		full += time.Since(start)
		n++
		// Leave the kernel at plans[n%2] for the next incremental step.
		if _, err := a.Apply(plans[n%2].Ruleset); err != nil {
			b.Fatal(err)
		}
	}
	rules := len(plans[0].Ruleset.Ingress) + len(plans[0].Ruleset.Egress)
	b.ReportMetric(float64(inc.Microseconds())/float64(n), "µs/incremental")
	b.ReportMetric(float64(full.Microseconds())/float64(n), "µs/full")
	fmt.Printf("500 policies (%d rules): one policy changed: incremental %v, full replace %v, ratio %.1fx\n",
		rules, (inc / time.Duration(n)).Round(time.Microsecond), (full / time.Duration(n)).Round(time.Microsecond), float64(full)/float64(inc))
}
