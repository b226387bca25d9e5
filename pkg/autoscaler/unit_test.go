package autoscaler_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/metalforge/metalforge/pkg/autoscaler"
	"github.com/metalforge/metalforge/pkg/ccm"
	"github.com/metalforge/metalforge/pkg/client/wire"
)

// TestSameAsCCM: provider IDs, the cluster tag, node labels and regions are metal-ccm's, so nodes
// and machines metal-ccm manages are the autoscaler's instances.
func TestSameAsCCM(t *testing.T) {
	if got, want := autoscaler.ProviderID("fra-equ01", "m1"), ccm.ProviderID("fra-equ01", "m1"); got != want {
		t.Errorf("provider id %q, metal-ccm's %q", got, want)
	}
	for _, c := range [][2]string{
		{autoscaler.ProviderName, ccm.ProviderName},
		{autoscaler.TagCluster, ccm.TagCluster},
		{autoscaler.LabelSize, ccm.LabelSize},
		{autoscaler.LabelPartition, ccm.LabelPartition},
	} {
		if c[0] != c[1] {
			t.Errorf("%q, metal-ccm's %q", c[0], c[1])
		}
	}
	for _, p := range []*wire.Partition{
		{ID: "fra-equ01"}, {ID: "lab"}, {ID: "x-1", Labels: map[string]string{"region": "eu"}},
		{ID: "x-1", Labels: map[string]string{"topology.kubernetes.io/region": "de", "region": "eu"}},
	} {
		if got, want := autoscaler.Region(p), ccm.Region(p); got != want {
			t.Errorf("region of %v: %q, metal-ccm's %q", p, got, want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	ok := autoscaler.NodeGroup{ID: "workers", Cluster: "c", Partition: "p", Size: "s", Project: "x", Image: "i", Min: 1, Max: 3}
	tests := []struct {
		name string
		mod  func(*autoscaler.Config)
		want string // "" for valid
	}{
		{"valid", func(*autoscaler.Config) {}, ""},
		{"no url", func(c *autoscaler.Config) { c.MetalAPIURL = "" }, "no metal-api url"},
		{"no token", func(c *autoscaler.Config) { c.Token = "" }, "no metal-api token"},
		{"no groups", func(c *autoscaler.Config) { c.NodeGroups = nil }, "no node groups"},
		{"twice", func(c *autoscaler.Config) { c.NodeGroups = append(c.NodeGroups, ok) }, "defined twice"},
		{"no image", func(c *autoscaler.Config) { c.NodeGroups[0].Image = "" }, "no image"},
		{"no project", func(c *autoscaler.Config) { c.NodeGroups[0].Project = "" }, "no project"},
		{"max below min", func(c *autoscaler.Config) { c.NodeGroups[0].Max = 0 }, "max 0 is below min 1"},
		{"max zero", func(c *autoscaler.Config) { c.NodeGroups[0].Min, c.NodeGroups[0].Max = 0, 0 }, "max is 0"},
		{"negative min", func(c *autoscaler.Config) { c.NodeGroups[0].Min = -1 }, "min -1 is negative"},
		{"id no label value", func(c *autoscaler.Config) { c.NodeGroups[0].ID = "a b" }, "not a valid label value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := autoscaler.Config{MetalAPIURL: "http://127.0.0.1:1", Token: "t", NodeGroups: []autoscaler.NodeGroup{ok}}
			tt.mod(&c)
			c.Defaults()
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("valid config refused: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("error %v, want one with %q", err, tt.want)
			}
			if _, err := autoscaler.New(c, nil); (err == nil) != (tt.want == "") {
				t.Errorf("New: %v", err)
			}
		})
	}
	c := autoscaler.Config{Token: "t"}
	c.Defaults()
	if d := cmp.Diff(autoscaler.Config{Token: "t", CapacityToken: "t", Listen: autoscaler.DefaultListen, APITimeout: autoscaler.DefaultAPITimeout}, c,
		cmp.FilterPath(func(p cmp.Path) bool { return p.String() == "Ready" || p.String() == "TLS" }, cmp.Ignore())); d != "" {
		t.Errorf("defaults (-want +got):\n%s", d)
	}
}

func TestLoadNodeGroups(t *testing.T) {
	path := filepath.Join(t.TempDir(), "groups.yaml")
	if err := os.WriteFile(path, []byte(`nodeGroups:
- id: workers
  cluster: shoot-a
  partition: fra-equ01
  size: c1-large
  project: p1
  image: debian-12
  filesystemLayout: default
  networks: [internet]
  min: 1
  max: 10
  tags: [pool=workers]
  sshPubKeys: [ssh-ed25519 AAAA]
  userData: "#cloud-config"
`), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := autoscaler.LoadNodeGroups(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []autoscaler.NodeGroup{{ID: "workers", Cluster: "shoot-a", Partition: "fra-equ01", Size: "c1-large", Project: "p1",
		Image: "debian-12", FilesystemLayout: "default", Networks: []string{"internet"}, Min: 1, Max: 10, Tags: []string{"pool=workers"},
		SSHPubKeys: []string{"ssh-ed25519 AAAA"}, UserData: "#cloud-config"}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("node groups (-want +got):\n%s", d)
	}
	if _, err := autoscaler.LoadNodeGroups(filepath.Join(t.TempDir(), "none")); err == nil {
		t.Error("a missing file loaded")
	}
}

func TestTemplateNodeNeedsCoresAndMemory(t *testing.T) {
	g := &autoscaler.NodeGroup{ID: "g", Cluster: "c", Partition: "p", Size: "s"}
	p := &wire.Partition{ID: "p"}
	for _, sz := range []*wire.Size{
		{ID: "s", Constraints: []*wire.Constraint{{Type: "memory", Min: 1}}},
		{ID: "s", Constraints: []*wire.Constraint{{Type: "cores", Min: 1}}},
	} {
		if _, err := autoscaler.TemplateNode(g, sz, p); err == nil {
			t.Errorf("template of size %v without cores or memory", sz.Constraints)
		}
	}
	if _, err := autoscaler.TemplateNode(g, nil, p); err == nil {
		t.Error("template without a size")
	}
}
