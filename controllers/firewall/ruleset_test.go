package firewall

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/metalforge/metalforge/pkg/api"
	fwv1 "github.com/metalforge/metalforge/pkg/apis/firewall/v1"
	"github.com/metalforge/metalforge/pkg/nft"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func testScheme(t testing.TB) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := fwv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

// fixture holds the objects of testdata/fixture.yaml and the firewall config.
type fixture struct {
	fw       api.FirewallConfig
	policies []fwv1.ClusterwideNetworkPolicy
	services []corev1.Service
	nodes    []corev1.Node
	objects  []client.Object // in file order
}

func loadFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{}
	b, err := os.ReadFile("testdata/firewall.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &f.fw); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile("testdata/fixture.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dec := serializer.NewCodecFactory(testScheme(t)).UniversalDeserializer()
	r := utilyaml.NewYAMLReader(bufioReader(raw))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		obj, _, err := dec.Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("decode fixture: %v\n%s", err, doc)
		}
		switch o := obj.(type) {
		case *fwv1.ClusterwideNetworkPolicy:
			f.policies = append(f.policies, *o)
		case *corev1.Service:
			f.services = append(f.services, *o)
		case *corev1.Node:
			f.nodes = append(f.nodes, *o)
		default:
			t.Fatalf("unexpected fixture object %T", obj)
		}
		f.objects = append(f.objects, obj.(client.Object))
	}
	return f
}

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (run with -update): %v", err)
	}
	if d := cmp.Diff(string(want), got); d != "" {
		t.Errorf("%s differs (-want +got, -update rewrites it):\n%s", path, d)
	}
}

// render is the golden text of a plan: the outcomes as comments, then the ruleset.
func render(t *testing.T, p *Plan) string {
	t.Helper()
	var b strings.Builder
	var keys []string
	for k, o := range p.Policies {
		keys = append(keys, fmt.Sprintf("# policy %s: %s %s", k, o.State, o.Message))
	}
	sort.Strings(keys)
	for _, k := range keys {
		b.WriteString(strings.TrimSpace(k) + "\n")
	}
	for _, s := range p.Selectors {
		fmt.Fprintf(&b, "# dns selector set=%s name=%q pattern=%q\n", s.Set, s.MatchName, s.MatchPattern)
	}
	if err := nft.Render(&b, p.Ruleset); err != nil {
		t.Fatalf("render: %v", err)
	}
	return b.String()
}

func TestBuildGolden(t *testing.T) {
	f := loadFixture(t)
	fqdn := map[string][]netip.Addr{
		"example.com": {netip.MustParseAddr("93.184.215.14"), netip.MustParseAddr("2606:2800:21f:cb07:6820:80da:af6b:8b2c")},
	}
	tests := []struct {
		name   string
		golden string
		in     Input
	}{
		{"base only", "base.nft", Input{Firewall: f.fw}},
		{"fixture", "fixture.nft", Input{Firewall: f.fw, Policies: f.policies, Services: f.services, Nodes: f.nodes, FQDN: fqdn}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Build(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tt.golden, render(t, p))
			// Pure: the same input in another order gives the same ruleset.
			rev := tt.in
			rev.Policies = reversed(tt.in.Policies)
			rev.Services = reversed(tt.in.Services)
			rev.Nodes = reversed(tt.in.Nodes)
			p2, err := Build(rev)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(render(t, p), render(t, p2)); d != "" {
				t.Errorf("order changes the ruleset:\n%s", d)
			}
		})
	}
}

func reversed[T any](s []T) []T {
	out := make([]T, len(s))
	for i, v := range s {
		out[len(s)-1-i] = v
	}
	return out
}

func TestBuildPolicyErrors(t *testing.T) {
	f := loadFixture(t)
	tcp, sctp := corev1.ProtocolTCP, corev1.ProtocolSCTP
	port := func(p intstr.IntOrString) *intstr.IntOrString { return &p }
	end := func(e int32) *int32 { return &e }
	tests := []struct {
		name string
		spec fwv1.PolicySpec
		want string // substring of the Error message; "" = Applied
	}{
		{"ok", fwv1.PolicySpec{Egress: []fwv1.EgressRule{{To: []fwv1.IPBlock{{CIDR: "192.0.2.0/24"}}}}}, ""},
		{"host bits are masked", fwv1.PolicySpec{Egress: []fwv1.EgressRule{{To: []fwv1.IPBlock{{CIDR: "192.0.2.1/24"}}}}}, ""},
		{"bad cidr", fwv1.PolicySpec{Egress: []fwv1.EgressRule{{To: []fwv1.IPBlock{{CIDR: "192.0.2.300/24"}}}}}, "invalid cidr"},
		{"ipv6", fwv1.PolicySpec{Ingress: []fwv1.IngressRule{{From: []fwv1.IPBlock{{CIDR: "2001:db8::/32"}}}}}, ""},
		{"except of other family", fwv1.PolicySpec{Egress: []fwv1.EgressRule{{To: []fwv1.IPBlock{{CIDR: "0.0.0.0/0", Except: []string{"::/0"}}}}}}, "not inside"},
		{"except outside", fwv1.PolicySpec{Egress: []fwv1.EgressRule{{To: []fwv1.IPBlock{{CIDR: "192.0.2.0/24", Except: []string{"198.51.100.0/24"}}}}}}, "not inside"},
		{"named port", fwv1.PolicySpec{Egress: []fwv1.EgressRule{{To: []fwv1.IPBlock{{CIDR: "192.0.2.0/24"}}, Ports: []fwv1.PolicyPort{{Protocol: &tcp, Port: port(intstr.FromString("http"))}}}}}, "named port"},
		{"sctp", fwv1.PolicySpec{Egress: []fwv1.EgressRule{{To: []fwv1.IPBlock{{CIDR: "192.0.2.0/24"}}, Ports: []fwv1.PolicyPort{{Protocol: &sctp}}}}}, "unsupported protocol"},
		{"end before port", fwv1.PolicySpec{Egress: []fwv1.EgressRule{{To: []fwv1.IPBlock{{CIDR: "192.0.2.0/24"}}, Ports: []fwv1.PolicyPort{{Port: port(intstr.FromInt32(80)), EndPort: end(79)}}}}}, "invalid range"},
		{"end without port", fwv1.PolicySpec{Egress: []fwv1.EgressRule{{To: []fwv1.IPBlock{{CIDR: "192.0.2.0/24"}}, Ports: []fwv1.PolicyPort{{EndPort: end(79)}}}}}, "invalid range"},
		{"both selectors", fwv1.PolicySpec{Egress: []fwv1.EgressRule{{ToFQDNs: []fwv1.FQDNSelector{{MatchName: "a.example", MatchPattern: "*.example"}}}}}, "exactly one"},
		{"to and toFQDNs", fwv1.PolicySpec{Egress: []fwv1.EgressRule{{To: []fwv1.IPBlock{{CIDR: "192.0.2.0/24"}}, ToFQDNs: []fwv1.FQDNSelector{{MatchName: "a.example"}}}}}, "both to and toFQDNs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pol := fwv1.ClusterwideNetworkPolicy{Spec: tt.spec}
			pol.Name, pol.Namespace = "p", fwv1.Namespace
			p, err := Build(Input{Firewall: f.fw, Policies: []fwv1.ClusterwideNetworkPolicy{pol}})
			if err != nil {
				t.Fatal(err)
			}
			o := p.Policies[key(&pol)]
			if tt.want == "" {
				if o.State != fwv1.StateApplied {
					t.Fatalf("got %s %q, want Applied", o.State, o.Message)
				}
				if len(p.Ruleset.Egress)+len(p.Ruleset.Ingress) == 0 {
					t.Fatal("applied policy has no rules")
				}
				return
			}
			if o.State != fwv1.StateError || !strings.Contains(o.Message, tt.want) {
				t.Fatalf("got %s %q, want Error with %q", o.State, o.Message, tt.want)
			}
			if len(p.Ruleset.Egress)+len(p.Ruleset.Ingress) != 0 {
				t.Fatal("a policy in error left rules in the ruleset")
			}
		})
	}
}

func TestNamer(t *testing.T) {
	n := newNamer()
	long := strings.Repeat("a", 80)
	tests := []struct{ kind, in, prefix string }{
		{"p", "allow-dns", "allow-dns"},
		{"p", "allow.dns", "allow.dns-"}, // collides with allow-dns after nft's mapping: hashed
		{"p", "1st", "p-1st"},
		{"s", "a b", "a_b-"},
		{"p", long, "aaaa"},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		got := n.name(tt.kind, tt.in)
		if len(got) > maxName || !isLetter(got[0]) || badChars.MatchString(got) {
			t.Errorf("name(%q) = %q: not a valid nft name", tt.in, got)
		}
		id := strings.NewReplacer("-", "_", ".", "_").Replace(got)
		if seen[id] {
			t.Errorf("name(%q) = %q collides", tt.in, got)
		}
		seen[id] = true
		if !strings.HasPrefix(got, tt.prefix) || got == tt.in && tt.in != tt.prefix {
			t.Errorf("name(%q) = %q, want prefix %q", tt.in, got, tt.prefix)
		}
	}
}

func TestBaseConfigErrors(t *testing.T) {
	f := loadFixture(t)
	tests := []struct {
		name string
		mod  func(*api.FirewallConfig)
	}{
		{"no networks", func(c *api.FirewallConfig) { c.Networks = nil }},
		{"bad prefix", func(c *api.FirewallConfig) { c.Networks[0].Prefixes = []string{"10.0.0.0/33"} }},
		{"bad egress ip", func(c *api.FirewallConfig) { c.EgressIPs = []string{"x"} }},
		{"non-contiguous egress", func(c *api.FirewallConfig) { c.EgressIPs = []string{"203.0.113.1", "203.0.113.9"} }},
		{"no external", func(c *api.FirewallConfig) { c.ExternalInterface = "" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fw := f.fw
			fw.Networks = append([]api.FirewallNetwork(nil), f.fw.Networks...)
			tt.mod(&fw)
			if _, err := Build(Input{Firewall: fw}); err == nil {
				t.Fatal("Build accepted an invalid firewall config")
			}
		})
	}
}

func TestBuildKeepsLastGood(t *testing.T) {
	f := loadFixture(t)
	good := fwv1.ClusterwideNetworkPolicy{Spec: fwv1.PolicySpec{Egress: []fwv1.EgressRule{{ToFQDNs: []fwv1.FQDNSelector{{MatchPattern: "*.example.com"}}}}}}
	good.Name, good.Namespace, good.UID, good.Generation = "p", fwv1.Namespace, "uid-1", 1
	bad := *good.DeepCopy()
	bad.Generation = 2
	bad.Spec.Egress[0].ToFQDNs[0].MatchPattern = "a..example.com"
	other := *bad.DeepCopy()
	other.UID = "uid-2" // deleted and created again: nothing to keep

	want, err := Build(Input{Firewall: f.fw, Policies: []fwv1.ClusterwideNetworkPolicy{good}})
	if err != nil {
		t.Fatal(err)
	}
	last := map[types.NamespacedName]fwv1.ClusterwideNetworkPolicy{key(&good): good}
	tests := []struct {
		name  string
		pol   fwv1.ClusterwideNetworkPolicy
		kept  bool
		rules int
	}{
		{"invalid update keeps the last good rules", bad, true, len(want.Ruleset.Egress)},
		{"new object with the same name keeps nothing", other, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Build(Input{Firewall: f.fw, Policies: []fwv1.ClusterwideNetworkPolicy{tt.pol}, LastGood: last})
			if err != nil {
				t.Fatal(err)
			}
			o := p.Policies[key(&tt.pol)]
			if o.State != fwv1.StateError || (o.Kept != nil) != tt.kept {
				t.Fatalf("outcome %+v, want Error with kept=%v", o, tt.kept)
			}
			if tt.kept && !strings.Contains(o.Message, "keeps the rules of generation 1") {
				t.Errorf("message %q does not say which rules stay", o.Message)
			}
			if len(p.Ruleset.Egress) != tt.rules {
				t.Errorf("%d egress rules, want %d", len(p.Ruleset.Egress), tt.rules)
			}
			if tt.kept {
				if d := cmp.Diff(render(t, want)[strings.Index(render(t, want), "add table"):], render(t, p)[strings.Index(render(t, p), "add table"):]); d != "" {
					t.Errorf("kept ruleset differs from the last good one:\n%s", d)
				}
			}
		})
	}
}
