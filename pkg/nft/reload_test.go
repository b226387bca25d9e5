package nft

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/metalforge/metalforge/pkg/nft/nfttest"
)

// reloadUnderTraffic applies the rulesets in turn, 50 times, while four
// loops try a forbidden connection and one an allowed one; no forbidden
// connection may get through. Each ruleset must allow 192.0.2.2:443 and
// forbid 192.0.2.2:8443. full says whether every reload replaces the table
// (the Applier is reset first) or must be incremental.
func reloadUnderTraffic(t *testing.T, d *dataplane, rulesets []*Ruleset, full bool) {
	a := newApplier(t, d.fw)
	if _, err := a.Apply(d.rs); err != nil {
		t.Fatalf("apply: %v", err)
	}
	forbidden := listen(t, d.inet, "192.0.2.2:8443")
	_ = listen(t, d.inet, "192.0.2.2:443")

	var attempts, leaks, allowedOK, allowedFailed atomic.Int64
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
		} else {
			allowedFailed.Add(1)
		}
	})
	var applyErr error
	var chains int
	for i := 0; i < 50 && applyErr == nil; i++ {
		if full {
			a.Reset()
		}
		res, err := a.Apply(rulesets[i%len(rulesets)])
		switch {
		case err != nil:
		case full && !res.Full:
			t.Errorf("reload %d was not a full replace: %+v", i, res)
		case !full && (res.Full || res.Chains == 0):
			t.Errorf("reload %d was not an incremental chain update: %+v", i, res)
		}
		chains += res.Chains
		applyErr = err
		time.Sleep(20 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if applyErr != nil {
		t.Fatalf("reload: %v", applyErr)
	}
	t.Logf("reload: %d forbidden attempts, %d allowed connections (%d timed out) during 50 reloads rewriting %d chains",
		attempts.Load(), allowedOK.Load(), allowedFailed.Load(), chains)
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

// TestDataplaneReload replaces the whole table 50 times under traffic.
func TestDataplaneReload(t *testing.T) {
	nfttest.NeedRoot(t)
	d := newDataplane(t)
	alt := *d.rs
	alt.Egress = append([]Rule{{Policy: "dns", CIDRs: []netip.Prefix{netip.MustParsePrefix("192.0.2.53/32")}, Protocol: UDP, Port: 53}}, d.rs.Egress...)
	reloadUnderTraffic(t, d, []*Ruleset{&alt, d.rs}, true)
}

// TestDataplaneReloadIncremental rewrites the chain of the policy the
// allowed traffic passes (and adds and removes a policy and a service)
// 50 times under traffic, each time as an incremental update.
func TestDataplaneReloadIncremental(t *testing.T) {
	nfttest.NeedRoot(t)
	d := newDataplane(t)
	p := netip.MustParsePrefix
	// The https chain gets other rules before its 443 rule.
	more := *d.rs
	more.Egress = append([]Rule{
		{Policy: "https", CIDRs: []netip.Prefix{p("192.0.2.0/24")}, Protocol: TCP, Port: 8000, EndPort: 8080},
		{Policy: "dns", CIDRs: []netip.Prefix{p("192.0.2.53/32"), p("192.0.2.54/32")}, Protocol: UDP, Port: 53},
	}, d.rs.Egress...)
	// The 443 rule itself changes (a range, another prefix).
	other := *d.rs
	other.Egress = []Rule{{Policy: "https", CIDRs: []netip.Prefix{p("192.0.2.0/25")}, Protocol: TCP, Port: 443, EndPort: 444}}
	other.Services = append(other.Services, Service{Name: "mail", IP: netip.MustParseAddr("10.0.0.100"), Ports: []ServicePort{{TCP, 25}}})
	reloadUnderTraffic(t, d, []*Ruleset{&more, &other, d.rs}, false)
}
