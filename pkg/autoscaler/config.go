package autoscaler

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// Defaults.
const (
	DefaultListen     = ":8086"
	DefaultAPITimeout = 30 * time.Second
)

// Config of the externalgrpc cloud provider.
type Config struct {
	// Listen is the gRPC listen address (DefaultListen).
	Listen string
	// TLS, when set, serves gRPC over TLS; set ClientAuth and ClientCAs in it for mutual TLS (what
	// cluster-autoscaler's externalgrpc cloud config offers with cert, key and cacert).
	TLS *tls.Config
	// MetalAPIURL is metal-api's REST base URL.
	MetalAPIURL string
	// Token allocates and frees machines: an editor (or owner) of the node groups' project, or admin.
	Token string
	// CapacityToken counts the waiting machines before a scale-up; project tokens don't see
	// unallocated machines, so it needs the service or admin role. Empty: Token.
	CapacityToken string
	// APITimeout bounds each metal-api call (DefaultAPITimeout).
	APITimeout time.Duration
	// NodeGroups are the node groups the provider offers.
	NodeGroups []NodeGroup
	// Ready, if set, is called with the listen address once the server accepts connections.
	Ready func(net.Addr)
}

// NodeGroup is a set of machines of one size in one partition, allocated to one cluster. Its
// members are the machines of the project tagged with the cluster tag (TagCluster, as metal-ccm
// uses it) and the node group tag (TagNodeGroup).
type NodeGroup struct {
	// ID names the node group towards cluster-autoscaler; unique.
	ID string `json:"id"`
	// Cluster is the cluster ID of the cluster tag.
	Cluster string `json:"cluster"`
	// Partition and Size of the machines.
	Partition string `json:"partition"`
	Size      string `json:"size"`
	// Project the machines are allocated to.
	Project string `json:"project"`
	// Image and FilesystemLayout (empty: metal-api's choice) to install.
	Image            string `json:"image"`
	FilesystemLayout string `json:"filesystemLayout,omitempty"`
	// Networks to attach; empty: metal-api picks the project's private network in the partition.
	Networks []string `json:"networks,omitempty"`
	// Min and Max bound the number of machines.
	Min int `json:"min"`
	Max int `json:"max"`
	// Tags are extra machine tags; key=value tags become node labels (metal-ccm copies them), and
	// so labels of the template node.
	Tags []string `json:"tags,omitempty"`
	// SSHPubKeys and UserData of the installed machines.
	SSHPubKeys []string `json:"sshPubKeys,omitempty"`
	UserData   string   `json:"userData,omitempty"`
}

// File is the node groups file (YAML or JSON).
type File struct {
	NodeGroups []NodeGroup `json:"nodeGroups"`
}

// LoadNodeGroups reads the node groups file.
func LoadNodeGroups(path string) ([]NodeGroup, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read node groups: %w", err)
	}
	var f File
	if err := yaml.UnmarshalStrict(raw, &f); err != nil {
		return nil, fmt.Errorf("parse node groups %s: %w", path, err)
	}
	return f.NodeGroups, nil
}

// Defaults fills in the unset fields.
func (c *Config) Defaults() {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.APITimeout <= 0 {
		c.APITimeout = DefaultAPITimeout
	}
	if c.CapacityToken == "" {
		c.CapacityToken = c.Token
	}
}

// Validate reports the first problem of the config (after Defaults).
func (c *Config) Validate() error {
	if c.MetalAPIURL == "" {
		return errors.New("no metal-api url")
	}
	if c.Token == "" {
		return errors.New("no metal-api token")
	}
	if len(c.NodeGroups) == 0 {
		return errors.New("no node groups")
	}
	seen := map[string]bool{}
	for i := range c.NodeGroups {
		g := &c.NodeGroups[i]
		if err := g.validate(); err != nil {
			return fmt.Errorf("node group %d (%q): %w", i, g.ID, err)
		}
		if seen[g.ID] {
			return fmt.Errorf("node group %q: defined twice", g.ID)
		}
		seen[g.ID] = true
	}
	return nil
}

func (g *NodeGroup) validate() error {
	for _, f := range []struct{ name, v string }{{"id", g.ID}, {"cluster", g.Cluster}, {"partition", g.Partition},
		{"size", g.Size}, {"project", g.Project}, {"image", g.Image}} {
		if f.v == "" {
			return fmt.Errorf("no %s", f.name)
		}
	}
	// Both tags are node labels too (metal-ccm copies key=value machine tags).
	for _, v := range []string{g.ID, g.Cluster} {
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			return fmt.Errorf("%q is not a valid label value: %s", v, strings.Join(errs, "; "))
		}
	}
	switch {
	case g.Min < 0:
		return fmt.Errorf("min %d is negative", g.Min)
	case g.Max < g.Min:
		return fmt.Errorf("max %d is below min %d", g.Max, g.Min)
	case g.Max == 0:
		return errors.New("max is 0")
	}
	return nil
}

// clusterTag and groupTag are the membership tags of the node group's machines.
func (g *NodeGroup) clusterTag() string { return TagCluster + g.Cluster }
func (g *NodeGroup) groupTag() string   { return TagNodeGroup + g.ID }
