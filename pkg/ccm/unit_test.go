package ccm

import (
	"bytes"
	"flag"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/metalforge/metalforge/pkg/client/wire"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s (-want +got):\n%s", path, diff)
	}
}

func sampleState() lbState {
	return lbState{
		Pools: map[string][]netip.Addr{
			"internet":    {netip.MustParseAddr("185.1.2.3"), netip.MustParseAddr("185.1.2.4")},
			"Internet_V6": {netip.MustParseAddr("2001:db8::7")},
		},
		Peers: []peer{{Node: "node-a", Hostname: "node-a", ASN: 4200000001}, {Node: "node-b", Hostname: "b.example", ASN: 4200000002}},
	}
}

func renderYAML(t *testing.T, render func(Config, lbState) []*unstructured.Unstructured, cfg Config) []byte {
	t.Helper()
	var buf bytes.Buffer
	for _, o := range render(cfg, sampleState()) {
		b, err := yaml.Marshal(o.Object)
		if err != nil {
			t.Fatal(err)
		}
		buf.WriteString("---\n")
		buf.Write(b)
	}
	return buf.Bytes()
}

func TestRenderGolden(t *testing.T) {
	cfg := Config{Namespace: "metallb-system", PeerAddress: "127.0.0.1"}
	golden(t, "metallb.golden.yaml", renderYAML(t, renderMetalLB, cfg))
	golden(t, "cilium.golden.yaml", renderYAML(t, renderCilium, cfg))
}

func TestParseProviderID(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		err      bool
	}{
		{"metal://fra-equ01/00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000001", false},
		{"metal://m-1", "m-1", false},
		{"metal:///m-1", "m-1", false},
		{"metal://fra/", "", true},
		{"aws:///eu-central-1a/i-1", "", true},
		{"", "", true},
	} {
		got, err := ParseProviderID(tc.in)
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("ParseProviderID(%q) = %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
	if got, _ := ParseProviderID(ProviderID("p", "m")); got != "m" {
		t.Errorf("round trip: %q", got)
	}
}

func TestRegion(t *testing.T) {
	for _, tc := range []struct {
		p    wire.Partition
		want string
	}{
		{wire.Partition{ID: "fra-equ01"}, "fra"},
		{wire.Partition{ID: "lab"}, "lab"},
		{wire.Partition{ID: "fra-equ01", Labels: map[string]string{"region": "eu-central"}}, "eu-central"},
		{wire.Partition{ID: "x", Labels: map[string]string{"region": "r", corev1.LabelTopologyRegion: "topo"}}, "topo"},
		{wire.Partition{ID: "-x"}, "-x"},
	} {
		if got := Region(&tc.p); got != tc.want {
			t.Errorf("Region(%+v) = %q, want %q", tc.p, got, tc.want)
		}
	}
}

func TestDesiredLabels(t *testing.T) {
	m := &wire.Machine{ID: "m", PartitionID: "fra-equ01", SizeID: "c1-large", RackID: "rack 7",
		Tags: []string{"team=blue", "no-value", "bad key=x", "cluster.metalforge.io/id=c1", "x=" + strings.Repeat("v", 64),
			DefaultNodeTagPrefix + "owner=node"},
		Allocation: &wire.MachineAllocation{Networks: []*wire.MachineNetwork{
			{NetworkID: "internet", ASN: 0}, {NetworkID: "private", Private: true, ASN: 4200000001}}}}
	want := map[string]string{
		"team": "blue", "cluster.metalforge.io/id": "c1",
		LabelSize: "c1-large", LabelPartition: "fra-equ01", LabelASN: "4200000001",
		// "rack 7" is no label value: left out; the node owns tag.metalforge.io/owner.
	}
	if diff := cmp.Diff(want, desiredLabels(m, DefaultNodeTagPrefix)); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
}

func TestLabelPatch(t *testing.T) {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Labels:      map[string]string{"a": "1", "old": "x", "user": "u", "p/mine": "y"},
		Annotations: map[string]string{AnnotationLabels: "a,old,p/mine"},
	}}
	p, ok := labelPatch(node, map[string]string{"a": "1", "b": "2"}, "p/")
	if !ok || string(p) != `{"metadata":{"annotations":{"machine.metalforge.io/labels":"a,b"},"labels":{"b":"2","old":null}}}` {
		t.Errorf("patch %s, %v", p, ok)
	}
	node.Labels = map[string]string{"a": "1", "b": "2", "user": "u"}
	node.Annotations[AnnotationLabels] = "a,b"
	if p, ok := labelPatch(node, map[string]string{"a": "1", "b": "2"}, "p/"); ok {
		t.Errorf("patch %s for a node that is up to date", p)
	}
}

func TestDesiredTags(t *testing.T) {
	const prefix, cluster = DefaultNodeTagPrefix, "cluster.metalforge.io/id=c1"
	long := strings.Repeat("v", 63)
	longPrefix := strings.Repeat("d", 63) + "." + strings.Repeat("d", 63) + ".example.com/" // 141 characters
	for _, tc := range []struct {
		name       string
		prefix     string
		tags       []string
		labels     map[string]string
		want, skip []string
	}{
		{name: "cluster tag added, others kept", tags: []string{"team=blue", "free form"},
			want: []string{cluster, "free form", "team=blue"}},
		{name: "node labels under the prefix become tags", tags: []string{cluster},
			labels: map[string]string{prefix + "app": "db", "team": "red", "kubernetes.io/hostname": "n"},
			want:   []string{cluster, prefix + "app=db"}},
		{name: "tags under the prefix without a label go", tags: []string{cluster, prefix + "old=1", prefix + "app=web"},
			labels: map[string]string{prefix + "app": "db"},
			want:   []string{cluster, prefix + "app=db"}},
		{name: "too long for a tag", prefix: longPrefix, tags: []string{cluster},
			labels: map[string]string{longPrefix + strings.Repeat("k", 63): long, longPrefix + "ok": ""},
			want:   []string{cluster, longPrefix + "ok="}, skip: []string{longPrefix + strings.Repeat("k", 63)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := prefix
			if tc.prefix != "" {
				p = tc.prefix
			}
			if err := validTagPrefix(p); err != nil {
				t.Fatal(err)
			}
			got, skipped := desiredTags(tc.tags, tc.labels, cluster, p)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("tags (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.skip, skipped); diff != "" {
				t.Errorf("skipped (-want +got):\n%s", diff)
			}
		})
	}
}

// TestNoPingPong applies both directions until nothing changes: one round each converges, and the
// second round changes neither the machine nor the node.
func TestNoPingPong(t *testing.T) {
	const prefix, cluster = DefaultNodeTagPrefix, "cluster.metalforge.io/id=c1"
	m := &wire.Machine{ID: "m", PartitionID: "p", SizeID: "s", RackID: "r1",
		Tags:       []string{"team=blue", prefix + "stale=1", "note=has space?"},
		Allocation: &wire.MachineAllocation{}}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n",
		Labels:      map[string]string{"team": "red", prefix + "app": "db", LabelRack: "wrong", "user": "u"},
		Annotations: map[string]string{}}}
	apply := func() (tagsChanged, labelsChanged bool) {
		tags, _ := desiredTags(m.Tags, node.Labels, cluster, prefix)
		if !slices.Equal(tags, normalTags(m.Tags)) {
			m.Tags, tagsChanged = tags, true
		}
		p, ok := labelPatch(node, desiredLabels(m, prefix), prefix)
		if ok {
			var patch struct {
				Metadata struct {
					Labels      map[string]*string `json:"labels"`
					Annotations map[string]string  `json:"annotations"`
				} `json:"metadata"`
			}
			if err := yaml.Unmarshal(p, &patch); err != nil {
				t.Fatal(err)
			}
			for k, v := range patch.Metadata.Labels {
				if v == nil {
					delete(node.Labels, k)
				} else {
					node.Labels[k] = *v
				}
			}
			maps.Copy(node.Annotations, patch.Metadata.Annotations)
		}
		return tagsChanged, ok
	}
	if tc, lc := apply(); !tc || !lc {
		t.Fatalf("first round changed tags %v, labels %v; want both", tc, lc)
	}
	if tc, lc := apply(); tc || lc {
		t.Errorf("second round changed tags %v, labels %v; want neither", tc, lc)
	}
	wantTags := []string{cluster, "note=has space?", prefix + "app=db", "team=blue"}
	if diff := cmp.Diff(wantTags, m.Tags); diff != "" {
		t.Errorf("machine tags (-want +got):\n%s", diff)
	}
	wantLabels := map[string]string{"team": "blue", prefix + "app": "db", LabelRack: "r1", "user": "u",
		LabelSize: "s", LabelPartition: "p", "cluster.metalforge.io/id": "c1"}
	if diff := cmp.Diff(wantLabels, node.Labels); diff != "" {
		t.Errorf("node labels (-want +got):\n%s", diff)
	}
}

func TestValidTagPrefix(t *testing.T) {
	for _, tc := range []struct {
		prefix string
		ok     bool
	}{
		{DefaultNodeTagPrefix, true},
		{"metalforge.io/tag.", true},
		{"example.com/", true},
		{"machine.metalforge.io/", false}, // the machine's labels
		{"cluster.metalforge.io/", false}, // the cluster tag
		{"bad prefix/", false},
		{"a/b/", false},
	} {
		if err := validTagPrefix(tc.prefix); (err == nil) != tc.ok {
			t.Errorf("validTagPrefix(%q) = %v, want ok %v", tc.prefix, err, tc.ok)
		}
	}
}

func TestObjectName(t *testing.T) {
	for _, tc := range []struct {
		in, want string // want "" means a hashed name
	}{
		{"internet", "metal-internet"},
		{"Internet", "metal-internet"},
		{"inter_net", ""},
		{"", ""},
		{"trailing-", ""},
		{strings.Repeat("a", 57), "metal-" + strings.Repeat("a", 57)},
		{strings.Repeat("a", 58), ""},
	} {
		got := objectName("metal-", tc.in)
		if tc.want != "" {
			if got != tc.want {
				t.Errorf("objectName(%q) = %q, want %q", tc.in, got, tc.want)
			}
			continue
		}
		if len(got) != len("metal-")+16 || !strings.HasPrefix(got, "metal-") || got != objectName("metal-", tc.in) {
			t.Errorf("objectName(%q) = %q, want metal- and 16 hex digits of a hash", tc.in, got)
		}
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "cloud.yaml")
	if err := os.WriteFile(file, []byte("metalAPIURL: http://metal\nmetalAPIToken: \"@"+tokenFile+"\"\nprojectID: p\nclusterID: c\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"METAL_DEFAULT_EXTERNAL_NETWORK": "internet", "METAL_LOAD_BALANCER": "cilium", "METAL_HOUSEKEEPING_INTERVAL": "30s"}
	c, err := LoadConfig(file, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.MetalAPIToken != "secret" || c.DefaultExternalNetwork != "internet" || c.LoadBalancer != BackendCilium ||
		c.HousekeepingInterval.String() != "30s" || c.PeerAddress != "127.0.0.1" || c.ProjectID != "p" {
		t.Errorf("config %+v", c)
	}
	if _, err := LoadConfig(file, func(k string) string { return map[string]string{"METAL_LOAD_BALANCER": "f5"}[k] }); err == nil {
		t.Error("load balancer f5: no error")
	}
	if err := os.WriteFile(file, []byte("metalAPIURL: x\nunknownKey: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(file, func(string) string { return "" }); err == nil {
		t.Error("unknown key: no error")
	}
}

func TestIPCacheReplaceKeepsNewerChanges(t *testing.T) {
	a, b, c, d := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3"), netip.MustParseAddr("10.0.0.4")
	cache := newIPCache()
	if _, loaded := cache.pools(); loaded {
		t.Fatal("a new cache says it is loaded")
	}
	cache.set(a, "n1")
	cache.set(b, "n1")
	start := cache.begin()
	// While the full list is in flight: c is allocated, b released.
	cache.set(c, "n2")
	cache.drop(b)
	// The list was taken before both changes, and knows d (allocated by an earlier, lost run) but
	// not a (released by someone else).
	cache.replace(start, map[netip.Addr]string{b: "n1", d: "n1"})
	got, loaded := cache.pools()
	for _, as := range got {
		slices.SortFunc(as, func(x, y netip.Addr) int { return x.Compare(y) })
	}
	want := map[string][]netip.Addr{"n1": {d}, "n2": {c}}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" || !loaded {
		t.Errorf("pools after replace (-want +got), loaded %v:\n%s", loaded, diff)
	}
	// A later list wins over older changes.
	cache.replace(cache.begin(), map[netip.Addr]string{a: "n1"})
	got, _ = cache.pools()
	if diff := cmp.Diff(map[string][]netip.Addr{"n1": {a}}, got, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
		t.Errorf("pools after the second replace (-want +got):\n%s", diff)
	}
}
