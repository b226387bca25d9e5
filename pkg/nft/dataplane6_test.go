package nft

import (
	"net/netip"
	"testing"
	"time"

	"github.com/metalforge/metalforge/pkg/nft/nfttest"
)

// TestDataplaneIPv6 runs IPv4 and IPv6 through one dual-stack ruleset.
func TestDataplaneIPv6(t *testing.T) {
	nfttest.NeedRoot(t)
	d := newDataplane(t)
	p := netip.MustParsePrefix
	d.rs.Egress[0].CIDRs = append(d.rs.Egress[0].CIDRs, p("2001:db8:20::/64")) // https
	d.rs.Networks[0].Prefixes = append(d.rs.Networks[0].Prefixes, p("2001:db8:10::/64"))
	d.rs.Services = append(d.rs.Services, Service{Name: "web6", IP: netip.MustParseAddr("2001:db8:10::100"),
		Ports: []ServicePort{{TCP, 80}}, SourceRanges: []netip.Prefix{p("2001:db8:20::/64")}})
	a := newApplier(t, d.fw)
	if _, err := a.Apply(d.rs); err != nil {
		t.Fatalf("apply: %v", err)
	}
	allowed := listen(t, d.inet, "[2001:db8:20::2]:443")
	allowed4 := listen(t, d.inet, "192.0.2.2:443")
	forbidden := listen(t, d.inet, "[2001:db8:20::2]:8443")
	svc := listen(t, d.tenant, "[2001:db8:10::100]:80")
	svcOther := listen(t, d.tenant, "[2001:db8:10::100]:81")

	for _, c := range []struct {
		addr string
		seen <-chan string
		src  netip.Prefix
	}{
		{"[2001:db8:20::2]:443", allowed, p("2001:db8:10::/64")}, // not translated
		{"192.0.2.2:443", allowed4, p("192.0.2.10/32")},          // SNAT
	} {
		if err := dial(d.tenant, c.addr, 2*time.Second); err != nil {
			t.Fatalf("allowed egress to %s: %v", c.addr, err)
		}
		select {
		case src := <-c.seen:
			if a, err := netip.ParseAddr(src); err != nil || !c.src.Contains(a) {
				t.Errorf("egress to %s: source seen %s, want one in %s", c.addr, src, c.src)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("allowed egress to %s: listener saw no connection", c.addr)
		}
	}
	if err := dial(d.tenant, "[2001:db8:20::2]:8443", 300*time.Millisecond); !isTimeout(err) {
		t.Errorf("forbidden ipv6 egress: err = %v, want a timeout (dropped)", err)
	}
	if err := dial(d.inet, "[2001:db8:10::100]:80", 2*time.Second); err != nil {
		t.Fatalf("ipv6 ingress to service: %v", err)
	}
	if src := <-svc; src != "2001:db8:20::2" {
		t.Errorf("service saw source %s, want 2001:db8:20::2", src)
	}
	if err := dial(d.inet, "[2001:db8:10::100]:81", 300*time.Millisecond); !isTimeout(err) {
		t.Errorf("ipv6 ingress to a closed service port: err = %v, want a timeout", err)
	}
	if n := len(forbidden) + len(svcOther); n != 0 {
		t.Errorf("%d forbidden connections accepted", n)
	}
	got, err := a.Counters()
	if err != nil {
		t.Fatalf("counters: %v", err)
	}
	for n, min := range map[string]uint64{PolicyCounter("https"): 2, ServiceCounter("web6"): 1, DropCounter: 2} {
		if got[n].Packets < min {
			t.Errorf("counter %s = %+v, want at least %d packets", n, got[n], min)
		}
	}

	// Narrowing the service's sources to another prefix is a set update
	// and closes it.
	d.rs.Services[1].SourceRanges = []netip.Prefix{p("2001:db8:99::/64")}
	if res, err := a.Apply(d.rs); err != nil || res != (Result{Sets: 1}) {
		t.Fatalf("apply: result %+v, err %v", res, err)
	}
	if err := dial(d.inet, "[2001:db8:10::100]:80", 300*time.Millisecond); !isTimeout(err) {
		t.Errorf("ipv6 ingress from a source no longer allowed: err = %v, want a timeout", err)
	}
}
