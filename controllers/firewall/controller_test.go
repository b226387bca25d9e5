package firewall

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/metalforge/metalforge/pkg/apis/firewall/v1"
	"github.com/metalforge/metalforge/pkg/nft/nfttest"
)

const waitFor = 60 * time.Second

// kclient is a controller-runtime client that knows the policy types.
func kclient(t testing.TB) client.Client {
	t.Helper()
	c, err := client.New(env.Config, client.Options{Scheme: testScheme(t)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ensureNamespaces(t testing.TB, c client.Client, names ...string) {
	t.Helper()
	for _, n := range names {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}}
		if err := c.Create(context.Background(), ns); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("create namespace %s: %v", n, err)
		}
	}
}

// createObjects creates the fixture's objects with their status (Services' load balancer
// ingress, Nodes' addresses) and deletes them when the test ends.
func createObjects(t testing.TB, c client.Client, objs []client.Object) {
	t.Helper()
	ctx := context.Background()
	for _, o := range objs {
		o = o.DeepCopyObject().(client.Object)
		var status client.Object
		switch x := o.(type) {
		case *corev1.Service:
			status = x.DeepCopy()
		case *corev1.Node:
			status = x.DeepCopy()
		}
		if err := c.Create(ctx, o); err != nil {
			t.Fatalf("create %T %s: %v", o, o.GetName(), err)
		}
		t.Cleanup(func() {
			if err := c.Delete(context.Background(), o); client.IgnoreNotFound(err) != nil {
				t.Errorf("delete %s: %v", o.GetName(), err)
			}
		})
		if status != nil {
			status.SetResourceVersion(o.GetResourceVersion())
			if err := c.Status().Update(ctx, status); err != nil {
				t.Fatalf("update status of %s: %v", o.GetName(), err)
			}
		}
	}
}

func getPolicy(t testing.TB, c client.Client, ns, name string) *fwv1.ClusterwideNetworkPolicy {
	t.Helper()
	var pol fwv1.ClusterwideNetworkPolicy
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &pol); err != nil {
		t.Fatalf("get policy %s/%s: %v", ns, name, err)
	}
	return &pol
}

// waitStatus waits until the policy has state (and the current generation).
func waitStatus(t testing.TB, c client.Client, ns, name string, state fwv1.State, msg string) *fwv1.ClusterwideNetworkPolicy {
	t.Helper()
	var pol *fwv1.ClusterwideNetworkPolicy
	eventually(t, waitFor, func() string {
		pol = getPolicy(t, c, ns, name)
		if pol.Status.State != state || pol.Status.ObservedGeneration != pol.Generation || !strings.Contains(pol.Status.Message, msg) {
			return fmt.Sprintf("policy %s/%s: status %+v at generation %d, want %s %q", ns, name, pol.Status, pol.Generation, state, msg)
		}
		return ""
	})
	return pol
}

func waitTable(t testing.TB, ns *nfttest.NS, what string, cond func(table string) bool) string {
	t.Helper()
	var tbl string
	eventually(t, waitFor, func() string {
		tbl = table(ns)
		if !cond(tbl) {
			return fmt.Sprintf("kernel table: want %s, have:\n%s", what, tbl)
		}
		return ""
	})
	return tbl
}

// TestController runs the controller against the API server and a namespace's nftables: the
// fixture's policies and Services, then updates and deletes, statuses, Events, a kernel that
// refuses the ruleset, and the metrics.
func TestController(t *testing.T) {
	nfttest.NeedRoot(t)
	f := loadFixture(t)
	c := kclient(t)
	ensureNamespaces(t, c, "firewall", "shop", "infra", "monitoring")
	fw := f.fw
	fw.DNSListen, fw.DNSUpstream = "127.0.0.1:0", "127.0.0.1:9" // nothing answers: FQDN sets stay empty
	ns := newNS(t)
	// The controller runs as the user the Helm chart grants its rights to.
	user := chartUser(t)
	s := startController(t, ns, fw, true, func(cfg *Config) { cfg.Kube = user })

	// With no policies yet, the base ruleset is in the kernel: forward policy drop, SNAT.
	waitTable(t, ns, "base ruleset", func(tbl string) bool {
		return strings.Contains(tbl, "policy drop;") && strings.Contains(tbl, "snat ip to 203.0.113.1-203.0.113.2")
	})

	createObjects(t, c, f.objects)
	for _, p := range f.policies {
		if p.Namespace == fwv1.Namespace {
			waitStatus(t, c, p.Namespace, p.Name, fwv1.StateApplied, "")
		}
	}
	waitStatus(t, c, "default", "allow-elsewhere", fwv1.StateIgnored, "only policies in namespace firewall")

	t.Run("kernel equals the rendered ruleset", func(t *testing.T) {
		want := renderedTable(t, Input{Firewall: fw, Policies: f.policies, Services: f.services, Nodes: f.nodes})
		// The Services' statuses reach the cache after their creation, so wait for the last state.
		var d string
		eventually(t, waitFor, func() string {
			if d = cmp.Diff(want, tableJSON(t, ns)); d != "" {
				return "kernel differs from nft -f of the rendered fixture (-want +got):\n" + d
			}
			return ""
		})
	})

	t.Run("event for the wrong namespace", func(t *testing.T) {
		eventually(t, waitFor, func() string {
			evs, err := env.Kube.EventsV1().Events("default").List(context.Background(), metav1.ListOptions{})
			if err != nil {
				return err.Error()
			}
			for _, e := range evs.Items {
				if e.Regarding.Name == "allow-elsewhere" && e.Reason == ReasonIgnored && e.Type == corev1.EventTypeWarning &&
					strings.Contains(e.Note, "namespace firewall") {
					return ""
				}
			}
			return fmt.Sprintf("no %s event for default/allow-elsewhere among %d", ReasonIgnored, len(evs.Items))
		})
	})

	t.Run("update of one policy is incremental", func(t *testing.T) {
		before := s.scrape(t)
		full := metric(before, `firewall_applies_total{result="full"}`)
		incremental := metric(before, `firewall_applies_total{result="incremental"}`)
		pol := getPolicy(t, c, "firewall", "allow-to-https")
		pol.Spec.Egress[0].Ports[0].Port = ptr(intstr.FromInt32(8443))
		if err := c.Update(context.Background(), pol); err != nil {
			t.Fatal(err)
		}
		waitTable(t, ns, "port 8443 in out_allow_to_https", func(tbl string) bool {
			return strings.Contains(tbl, "tcp dport 8443") && !strings.Contains(tbl, "tcp dport 443 counter name \"pol_allow_to_https\"")
		})
		waitStatus(t, c, "firewall", "allow-to-https", fwv1.StateApplied, "")
		after := s.scrape(t)
		if got := metric(after, `firewall_applies_total{result="full"}`); got != full {
			t.Errorf("full applies went from %v to %v; a policy update must not replace the table", full, got)
		}
		if got := metric(after, `firewall_applies_total{result="incremental"}`); got <= incremental {
			t.Errorf("incremental applies went from %v to %v, want more", incremental, got)
		}
	})

	t.Run("service follows its load balancer IP and goes away", func(t *testing.T) {
		full := metric(s.scrape(t), `firewall_applies_total{result="full"}`)
		defer func() {
			if got := metric(s.scrape(t), `firewall_applies_total{result="full"}`); got != full {
				t.Errorf("full applies went from %v to %v; service changes must not replace the table", full, got)
			}
		}()
		var svc corev1.Service
		if err := c.Get(context.Background(), client.ObjectKey{Namespace: "shop", Name: "web"}, &svc); err != nil {
			t.Fatal(err)
		}
		svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "203.0.113.20"}}
		if err := c.Status().Update(context.Background(), &svc); err != nil {
			t.Fatal(err)
		}
		waitTable(t, ns, "service web on 203.0.113.20", func(tbl string) bool {
			return strings.Contains(tbl, "203.0.113.20 . 443") && !strings.Contains(tbl, "203.0.113.10 . 443")
		})
		if err := c.Delete(context.Background(), &svc); err != nil {
			t.Fatal(err)
		}
		waitTable(t, ns, "no service web", func(tbl string) bool {
			return tbl != "" && !strings.Contains(tbl, "svc_shop_web")
		})
	})

	t.Run("policy deleted", func(t *testing.T) {
		if err := c.Delete(context.Background(), getPolicy(t, c, "firewall", "allow-to-backup")); err != nil {
			t.Fatal(err)
		}
		waitTable(t, ns, "no allow-to-backup", func(tbl string) bool {
			return tbl != "" && !strings.Contains(tbl, "allow_to_backup") && strings.Contains(tbl, "allow_to_dns")
		})
	})

	t.Run("policy the firewall cannot translate", func(t *testing.T) {
		// Valid for the API server (the pattern's characters are allowed) but not a DNS pattern.
		bad := &fwv1.ClusterwideNetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: "firewall", Name: "bad-pattern"},
			Spec:       fwv1.PolicySpec{Egress: []fwv1.EgressRule{{ToFQDNs: []fwv1.FQDNSelector{{MatchPattern: "a..example.com"}}}}},
		}
		createObjects(t, c, []client.Object{bad})
		waitStatus(t, c, "firewall", "bad-pattern", fwv1.StateError, "fqdn")
		// The others stay applied.
		waitStatus(t, c, "firewall", "allow-to-dns", fwv1.StateApplied, "")
		if strings.Contains(table(ns), "bad_pattern") {
			t.Error("a policy in error has rules in the kernel")
		}
		if err := c.Delete(context.Background(), bad); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("invalid update keeps the last good rules", func(t *testing.T) {
		pol := getPolicy(t, c, "firewall", "allow-to-example")
		gen := pol.Generation
		pol.Spec.Egress[0].ToFQDNs[1].MatchPattern = "*..example.org"
		if err := c.Update(context.Background(), pol); err != nil {
			t.Fatal(err)
		}
		waitStatus(t, c, "firewall", "allow-to-example", fwv1.StateError, fmt.Sprintf("keeps the rules of generation %d", gen))
		if tbl := table(ns); !strings.Contains(tbl, "@fqdn_x_example_org tcp dport 443") {
			t.Fatalf("the last good rules of allow-to-example are gone:\n%s", tbl)
		}
		pol = getPolicy(t, c, "firewall", "allow-to-example")
		pol.Spec.Egress[0].ToFQDNs[1].MatchPattern = "*.example.net"
		if err := c.Update(context.Background(), pol); err != nil {
			t.Fatal(err)
		}
		waitStatus(t, c, "firewall", "allow-to-example", fwv1.StateApplied, "")
		waitTable(t, ns, "the fixed policy", func(tbl string) bool {
			return strings.Contains(tbl, "@fqdn_x_example_net tcp dport 443") && !strings.Contains(tbl, "fqdn_x_example_org")
		})
	})

	t.Run("kernel refuses the ruleset", func(t *testing.T) {
		errorsBefore := metric(s.scrape(t), `firewall_applies_total{result="error"}`)
		release := ownTable(t, ns)
		defer release()
		// Any change makes the controller apply; the table it finds belongs to someone else.
		pol := getPolicy(t, c, "firewall", "allow-to-dns")
		pol.Spec.Egress[0].Ports = pol.Spec.Egress[0].Ports[:1]
		if err := c.Update(context.Background(), pol); err != nil {
			t.Fatal(err)
		}
		waitStatus(t, c, "firewall", "allow-to-dns", fwv1.StateError, "keeps its previous rules")
		waitStatus(t, c, "firewall", "allow-from-office", fwv1.StateError, "keeps its previous rules")
		eventually(t, waitFor, func() string {
			evs, err := env.Kube.EventsV1().Events("firewall").List(context.Background(), metav1.ListOptions{})
			if err != nil {
				return err.Error()
			}
			for _, e := range evs.Items {
				if e.Regarding.Name == "allow-to-dns" && e.Reason == ReasonError && e.Type == corev1.EventTypeWarning {
					return ""
				}
			}
			return fmt.Sprintf("no %s event for firewall/allow-to-dns", ReasonError)
		})
		if tbl := table(ns); !strings.Contains(tbl, "owned_by_test") || strings.Contains(tbl, "allow_to_dns") {
			t.Fatalf("the refused apply changed the kernel's table:\n%s", tbl)
		}
		eventually(t, waitFor, func() string {
			if got := metric(s.scrape(t), `firewall_applies_total{result="error"}`); got < errorsBefore+2 {
				return fmt.Sprintf("error applies %v, want retries (>= %v)", got, errorsBefore+2)
			}
			return ""
		})
		// Once the table is free again, the retry (with backoff) succeeds.
		release()
		waitStatus(t, c, "firewall", "allow-to-dns", fwv1.StateApplied, "")
		waitStatus(t, c, "firewall", "allow-from-office", fwv1.StateApplied, "")
		waitTable(t, ns, "the ruleset back", func(tbl string) bool {
			return strings.Contains(tbl, "chain out_allow_to_dns") && !strings.Contains(tbl, "owned_by_test")
		})
	})

	t.Run("packets are counted per policy", func(t *testing.T) {
		client, _ := wire(t, ns)
		dns := `firewall_policy_accepted_packets_total{namespace="firewall",policy="allow-to-dns"}`
		before := s.scrape(t)
		for range 3 {
			client.sh(t, "echo allowed > /dev/udp/192.0.2.53/53")
			client.sh(t, "echo dropped > /dev/udp/192.0.2.53/54")
		}
		eventually(t, waitFor, func() string {
			after := s.scrape(t)
			if got, was := metric(after, dns), metric(before, dns); got < was+3 {
				return fmt.Sprintf("%s went from %v to %v, want +3", dns, was, got)
			}
			if got, was := metric(after, "firewall_dropped_packets_total"), metric(before, "firewall_dropped_packets_total"); got < was+3 {
				return fmt.Sprintf("dropped packets went from %v to %v, want +3", was, got)
			}
			return ""
		})
	})

	t.Run("metrics", func(t *testing.T) {
		text := s.scrape(t)
		for _, sample := range []string{
			`firewall_policy_accepted_packets_total{namespace="firewall",policy="allow-to-dns"}`,
			`firewall_policy_accepted_bytes_total{namespace="firewall",policy="allow-from-office"}`,
			`firewall_service_accepted_packets_total{namespace="infra",service="vpn"}`,
			`firewall_dropped_packets_total`,
			`firewall_ruleset_rules`,
			`firewall_apply_duration_seconds_count`,
			`controller_runtime_reconcile_total{controller="firewall",result="success"}`,
		} {
			if metric(text, sample) < 0 {
				t.Errorf("metric %s missing", sample)
			}
		}
		if metric(text, `firewall_policy_accepted_packets_total{namespace="firewall",policy="allow-to-backup"}`) >= 0 {
			t.Error("deleted policy still has a counter")
		}
		resp, err := http.Get("http://" + s.c.HealthAddr().String() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("readyz: %d", resp.StatusCode)
		}
	})
}

// TestCELRejectsInvalidPolicies checks that the API server refuses invalid policies (Invalid).
func TestCELRejectsInvalidPolicies(t *testing.T) {
	c := kclient(t)
	ensureNamespaces(t, c, "firewall")
	udp := corev1.ProtocolUDP
	block := func(cidr string, except ...string) []fwv1.IPBlock {
		return []fwv1.IPBlock{{CIDR: cidr, Except: except}}
	}
	tests := []struct {
		name string
		spec fwv1.PolicySpec
		ok   bool
	}{
		{"valid", fwv1.PolicySpec{Egress: []fwv1.EgressRule{{To: block("192.0.2.0/24", "192.0.2.128/25"), Ports: []fwv1.PolicyPort{{Protocol: &udp, Port: ptr(intstr.FromInt32(53)), EndPort: ptr(int32(60))}}}}}, true},
		{"valid ipv6", fwv1.PolicySpec{Ingress: []fwv1.IngressRule{{From: block("2001:db8::/32", "2001:db8:1::/48")}}}, true},
		{"valid fqdn", fwv1.PolicySpec{Egress: []fwv1.EgressRule{{ToFQDNs: []fwv1.FQDNSelector{{MatchName: "example.com"}, {MatchPattern: "*.example.com"}}}}}, true},
		{"bad cidr", fwv1.PolicySpec{Egress: []fwv1.EgressRule{{To: block("192.0.2.300/24")}}}, false},
		{"no prefix length", fwv1.PolicySpec{Ingress: []fwv1.IngressRule{{From: block("192.0.2.1")}}}, false},
		{"bad except", fwv1.PolicySpec{Egress: []fwv1.EgressRule{{To: block("192.0.2.0/24", "nope")}}}, false},
		{"except outside cidr", fwv1.PolicySpec{Egress: []fwv1.EgressRule{{To: block("192.0.2.0/24", "198.51.100.0/24")}}}, false},
		{"except wider than cidr", fwv1.PolicySpec{Egress: []fwv1.EgressRule{{To: block("192.0.2.0/24", "192.0.0.0/16")}}}, false},
		{"port 0", fwv1.PolicySpec{Egress: []fwv1.EgressRule{{To: block("0.0.0.0/0"), Ports: []fwv1.PolicyPort{{Port: ptr(intstr.FromInt32(0))}}}}}, false},
		{"port 70000", fwv1.PolicySpec{Egress: []fwv1.EgressRule{{To: block("0.0.0.0/0"), Ports: []fwv1.PolicyPort{{Port: ptr(intstr.FromInt32(70000))}}}}}, false},
		{"named port", fwv1.PolicySpec{Egress: []fwv1.EgressRule{{To: block("0.0.0.0/0"), Ports: []fwv1.PolicyPort{{Port: ptr(intstr.FromString("https"))}}}}}, false},
		{"endPort before port", fwv1.PolicySpec{Egress: []fwv1.EgressRule{{To: block("0.0.0.0/0"), Ports: []fwv1.PolicyPort{{Port: ptr(intstr.FromInt32(80)), EndPort: ptr(int32(79))}}}}}, false},
		{"endPort without port", fwv1.PolicySpec{Egress: []fwv1.EgressRule{{To: block("0.0.0.0/0"), Ports: []fwv1.PolicyPort{{EndPort: ptr(int32(79))}}}}}, false},
		{"endPort 70000", fwv1.PolicySpec{Egress: []fwv1.EgressRule{{To: block("0.0.0.0/0"), Ports: []fwv1.PolicyPort{{Port: ptr(intstr.FromInt32(80)), EndPort: ptr(int32(70000))}}}}}, false},
		{"sctp", fwv1.PolicySpec{Egress: []fwv1.EgressRule{{To: block("0.0.0.0/0"), Ports: []fwv1.PolicyPort{{Protocol: ptr(corev1.ProtocolSCTP)}}}}}, false},
		{"matchName and matchPattern", fwv1.PolicySpec{Egress: []fwv1.EgressRule{{ToFQDNs: []fwv1.FQDNSelector{{MatchName: "a.example", MatchPattern: "*.example"}}}}}, false},
		{"empty selector", fwv1.PolicySpec{Egress: []fwv1.EgressRule{{ToFQDNs: []fwv1.FQDNSelector{{}}}}}, false},
		{"bad name", fwv1.PolicySpec{Egress: []fwv1.EgressRule{{ToFQDNs: []fwv1.FQDNSelector{{MatchName: "exa mple.com"}}}}}, false},
		{"to and toFQDNs", fwv1.PolicySpec{Egress: []fwv1.EgressRule{{To: block("0.0.0.0/0"), ToFQDNs: []fwv1.FQDNSelector{{MatchName: "example.com"}}}}}, false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pol := &fwv1.ClusterwideNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "firewall", Name: fmt.Sprintf("cel-%d", i)}, Spec: tt.spec}
			err := c.Create(context.Background(), pol)
			if err == nil {
				_ = c.Delete(context.Background(), pol)
			}
			switch {
			case tt.ok && err != nil:
				t.Fatalf("valid policy rejected: %v", err)
			case !tt.ok && err == nil:
				t.Fatal("invalid policy accepted")
			case !tt.ok && !apierrors.IsInvalid(err):
				t.Fatalf("want Invalid, got %v", err)
			}
		})
	}
}

// TestBaseOnly runs the controller without a cluster: the base ruleset is applied and stays.
func TestBaseOnly(t *testing.T) {
	nfttest.NeedRoot(t)
	f := loadFixture(t)
	ns := newNS(t)
	fw := f.fw
	fw.DNSListen, fw.Kubeconfig = "", ""
	s := startController(t, ns, fw, false)
	want := renderedTable(t, Input{Firewall: fw})
	eventually(t, waitFor, func() string {
		if table(ns) == "" {
			return "no table yet"
		}
		if d := cmp.Diff(want, tableJSON(t, ns)); d != "" {
			return "kernel differs from the rendered base ruleset:\n" + d
		}
		return ""
	})
	if got := metric(s.scrape(t), `firewall_applies_total{result="full"}`); got != 1 {
		t.Errorf("full applies = %v, want 1", got)
	}
}

// TestFQDN resolves names through the controller's DNS proxy against a real upstream server and
// checks that the allowed name's address lands in the kernel's set and the other's does not.
func TestFQDN(t *testing.T) {
	nfttest.NeedRoot(t)
	f := loadFixture(t)
	c := kclient(t)
	ensureNamespaces(t, c, "firewall")
	upstream := startUpstream(t, map[string]string{
		"api.allowed.example.": "192.0.2.77",
		"www.allowed.example.": "192.0.2.78",
		"other.example.":       "192.0.2.99",
	})
	fw := f.fw
	fw.DNSListen, fw.DNSUpstream = "127.0.0.1:0", upstream
	ns := newNS(t)
	// Addresses stay allowed for their TTL clamped to [1s, 2s], so the test sees them leave.
	s := startController(t, ns, fw, true, func(cfg *Config) { cfg.DNS = DNSConfig{MinTTL: time.Second, MaxTTL: 2 * time.Second} })
	createObjects(t, c, []client.Object{&fwv1.ClusterwideNetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "firewall", Name: "allow-to-allowed"},
		Spec: fwv1.PolicySpec{Egress: []fwv1.EgressRule{{
			ToFQDNs: []fwv1.FQDNSelector{{MatchName: "api.allowed.example"}, {MatchPattern: "*.allowed.example"}},
			Ports:   []fwv1.PolicyPort{{Port: ptr(intstr.FromInt32(443))}},
		}}},
	}})
	waitStatus(t, c, "firewall", "allow-to-allowed", fwv1.StateApplied, "")
	proxy := s.c.Proxy()
	<-proxy.Ready()
	eventually(t, waitFor, func() string {
		if len(proxy.Selectors()) != 2 {
			return fmt.Sprintf("proxy selectors %v", proxy.Selectors())
		}
		return ""
	})
	udp, _ := proxy.Addr()
	for _, name := range []string{"api.allowed.example.", "other.example."} {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		in, _, err := (&dns.Client{Timeout: 5 * time.Second}).Exchange(m, udp.String())
		if err != nil {
			t.Fatalf("query %s: %v", name, err)
		}
		if len(in.Answer) != 1 {
			t.Fatalf("query %s: rcode %s, answer %v", name, dns.RcodeToString[in.Rcode], in.Answer)
		}
	}
	tbl := waitTable(t, ns, "192.0.2.77 in the FQDN sets", func(tbl string) bool {
		return strings.Contains(setBody(tbl, "fqdn_api_allowed_example"), "192.0.2.77") &&
			strings.Contains(setBody(tbl, "fqdn_x_allowed_example"), "192.0.2.77")
	})
	if strings.Contains(tbl, "192.0.2.99") {
		t.Errorf("address of a name no policy allows is in the table:\n%s", tbl)
	}
	if strings.Contains(tbl, "192.0.2.78") {
		t.Errorf("address of a name nobody asked for is in the table:\n%s", tbl)
	}
	// When the TTL runs out the address leaves the kernel's sets again.
	waitTable(t, ns, "192.0.2.77 expired from the FQDN sets", func(tbl string) bool {
		return strings.Contains(tbl, "set fqdn_api_allowed_example") && !strings.Contains(tbl, "192.0.2.77")
	})
}

// setBody returns the text of one set in an `nft list` output.
func setBody(tbl, name string) string {
	_, rest, ok := strings.Cut(tbl, "set "+strings.NewReplacer("-", "_", ".", "_").Replace(name)+" {")
	if !ok {
		return ""
	}
	body, _, _ := strings.Cut(rest, "}")
	return body
}

// startUpstream serves A records on 127.0.0.1 (UDP) until the test ends and returns its address.
func startUpstream(t *testing.T, records map[string]string) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		if ip, ok := records[strings.ToLower(q.Name)]; ok && q.Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{
				Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300},
				A:   netip.MustParseAddr(ip).AsSlice(),
			})
		} else if !ok {
			m.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go func() { _ = srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String()
}

// peer is a namespace on one side of the firewall namespace.
type peer struct{ ns *nfttest.NS }

func (p peer) sh(t testing.TB, script string) {
	t.Helper()
	p.ns.Run(t, "bash", "-c", script)
}

// wire puts a client (10.0.0.5 on tenant0) and a server (192.0.2.53 on ext0) around the firewall
// namespace fw, which forwards between them.
func wire(t testing.TB, fw *nfttest.NS) (client, server peer) {
	t.Helper()
	client, server = peer{newNS(t)}, peer{newNS(t)}
	fw.Veth(t, "tenant0", client.ns, "eth0")
	fw.Veth(t, "ext0", server.ns, "eth0")
	for _, c := range []struct {
		ns     *nfttest.NS
		script string
	}{
		{fw, "ip addr add 10.0.0.1/22 dev tenant0 && ip addr add 192.0.2.1/24 dev ext0 && ip link set tenant0 up && ip link set ext0 up && ip link set lo up && sysctl -qw net.ipv4.ip_forward=1"},
		{client.ns, "ip addr add 10.0.0.5/22 dev eth0 && ip link set eth0 up && ip link set lo up && ip route add default via 10.0.0.1"},
		{server.ns, "ip addr add 192.0.2.53/24 dev eth0 && ip link set eth0 up && ip link set lo up && ip route add default via 192.0.2.1"},
	} {
		c.ns.Run(t, "bash", "-c", c.script)
	}
	return client, server
}

// TestUnreachableCluster starts the controller against an API server that does not answer: on a
// fresh boot it applies the base ruleset after BaseTimeout, and a table left by an earlier run
// stays as it is.
func TestUnreachableCluster(t *testing.T) {
	nfttest.NeedRoot(t)
	f := loadFixture(t)
	fw := f.fw
	fw.DNSListen = ""
	nowhere := func(cfg *Config) {
		cfg.Kube = &rest.Config{Host: "https://127.0.0.1:1"} // connection refused
		cfg.BaseTimeout = 300 * time.Millisecond
	}

	t.Run("fresh boot gets the base ruleset", func(t *testing.T) {
		ns := newNS(t)
		startController(t, ns, fw, false, nowhere)
		waitTable(t, ns, "base ruleset", func(tbl string) bool {
			return strings.Contains(tbl, "policy drop;") && strings.Contains(tbl, "snat ip to 203.0.113.1-203.0.113.2")
		})
	})

	t.Run("earlier ruleset stays", func(t *testing.T) {
		ns := newNS(t)
		ns.Load(t, "table inet firewall {\n\tcounter dropped {\n\t}\n\tchain left_by_earlier_run {\n\t}\n}\n")
		startController(t, ns, fw, false, nowhere)
		time.Sleep(10 * 300 * time.Millisecond) // well past BaseTimeout
		if tbl := table(ns); !strings.Contains(tbl, "left_by_earlier_run") || strings.Contains(tbl, "snat") {
			t.Fatalf("the table of the earlier run was replaced while the cluster was unreachable:\n%s", tbl)
		}
	})
}
