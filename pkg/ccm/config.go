package ccm

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// Config is what metal-ccm needs besides the Kubernetes connection.
type Config struct {
	// MetalAPIURL is metal-api's REST base URL, MetalAPIToken a token of the cluster's project
	// (role editor: it allocates and releases IPs).
	MetalAPIURL   string `json:"metalAPIURL"`
	MetalAPIToken string `json:"metalAPIToken"`
	// ProjectID is the cluster's project, ClusterID the cluster's ID (IPs are tagged with it).
	ProjectID string `json:"projectID"`
	ClusterID string `json:"clusterID"`
	// DefaultExternalNetwork is the network LoadBalancer IPs come from unless a Service names
	// another with the lb.metalforge.io/network annotation.
	DefaultExternalNetwork string `json:"defaultExternalNetwork"`
	// LoadBalancer is the backend that announces the IPs: metallb (default), cilium or none.
	LoadBalancer string `json:"loadBalancer"`
	// Namespace holds the MetalLB objects (default metallb-system); Cilium's are cluster-scoped.
	Namespace string `json:"namespace"`
	// PeerAddress is the BGP peer of every node's speaker: the FRR on the machine itself
	// (default 127.0.0.1), which announces the addresses to the leaves.
	PeerAddress string `json:"peerAddress"`
	// NodeTagPrefix: node labels whose key starts with it are owned by the Node and copied to its
	// machine as key=value tags (default tag.metalforge.io/, so the label tag.metalforge.io/team=blue
	// becomes the tag tag.metalforge.io/team=blue). Machine tags under the prefix that the Node does
	// not carry are removed; every other key=value tag is owned by the machine and becomes a label.
	NodeTagPrefix string `json:"nodeTagPrefix"`
	// HousekeepingInterval is how often node labels and the load balancer config are re-synced
	// (default 1m; METAL_HOUSEKEEPING_INTERVAL).
	HousekeepingInterval time.Duration `json:"-"`
	// HTTPClient talks to metal-api (default: 30s timeout).
	HTTPClient *http.Client `json:"-"`
}

// Defaults fills zero fields.
func (c *Config) Defaults() {
	if c.LoadBalancer == "" {
		c.LoadBalancer = BackendMetalLB
	}
	if c.Namespace == "" {
		c.Namespace = "metallb-system"
	}
	if c.PeerAddress == "" {
		c.PeerAddress = "127.0.0.1"
	}
	if c.NodeTagPrefix == "" {
		c.NodeTagPrefix = DefaultNodeTagPrefix
	}
	if c.HousekeepingInterval == 0 {
		c.HousekeepingInterval = time.Minute
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
}

// Validate reports the first missing or wrong setting.
func (c *Config) Validate() error {
	switch {
	case c.MetalAPIURL == "":
		return errors.New("metal-api url is not set")
	case c.MetalAPIToken == "":
		return errors.New("metal-api token is not set")
	case c.ProjectID == "":
		return errors.New("project id is not set")
	case c.ClusterID == "":
		return errors.New("cluster id is not set")
	}
	switch c.LoadBalancer {
	case BackendMetalLB, BackendCilium, BackendNone:
	default:
		return fmt.Errorf("load balancer backend %q is not metallb, cilium or none", c.LoadBalancer)
	}
	return validTagPrefix(c.NodeTagPrefix)
}

// validTagPrefix: the prefix starts label keys, and does not take over a key the machine owns.
func validTagPrefix(p string) error {
	if errs := validation.IsQualifiedName(p + "x"); len(errs) > 0 {
		return fmt.Errorf("node tag prefix %q does not start a label key: %s", p, strings.Join(errs, "; "))
	}
	for _, k := range []string{LabelASN, LabelRack, LabelSize, LabelPartition, strings.TrimSuffix(TagCluster, "=")} {
		if strings.HasPrefix(k, p) {
			return fmt.Errorf("node tag prefix %q covers the machine's label %s", p, k)
		}
	}
	return nil
}

// envKey is an environment variable that overrides the config file (or replaces it).
type envKey struct {
	name string
	set  func(c *Config, v string) error
}

func envKeys() []envKey {
	return []envKey{
		{"METAL_API_URL", func(c *Config, v string) error { c.MetalAPIURL = v; return nil }},
		{"METAL_API_TOKEN", func(c *Config, v string) error { c.MetalAPIToken = v; return nil }},
		{"METAL_PROJECT_ID", func(c *Config, v string) error { c.ProjectID = v; return nil }},
		{"METAL_CLUSTER_ID", func(c *Config, v string) error { c.ClusterID = v; return nil }},
		{"METAL_DEFAULT_EXTERNAL_NETWORK", func(c *Config, v string) error { c.DefaultExternalNetwork = v; return nil }},
		{"METAL_LOAD_BALANCER", func(c *Config, v string) error { c.LoadBalancer = v; return nil }},
		{"METAL_LB_NAMESPACE", func(c *Config, v string) error { c.Namespace = v; return nil }},
		{"METAL_PEER_ADDRESS", func(c *Config, v string) error { c.PeerAddress = v; return nil }},
		{"METAL_NODE_TAG_PREFIX", func(c *Config, v string) error { c.NodeTagPrefix = v; return nil }},
		{"METAL_HOUSEKEEPING_INTERVAL", func(c *Config, v string) error {
			d, err := time.ParseDuration(v)
			c.HousekeepingInterval = d
			return err
		}},
	}
}

// LoadConfig reads the cloud config file (YAML or JSON with Config's keys; "" for none), then lets
// the METAL_* environment variables (looked up with getenv) override it. The token may also come
// from a file: metalAPIToken: "@/path/to/token".
func LoadConfig(path string, getenv func(string) string) (Config, error) {
	var c Config
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("read cloud config: %w", err)
		}
		if err := yaml.UnmarshalStrict(b, &c); err != nil {
			return c, fmt.Errorf("cloud config %s: %w", path, err)
		}
	}
	for _, k := range envKeys() {
		if v := getenv(k.name); v != "" {
			if err := k.set(&c, v); err != nil {
				return c, fmt.Errorf("%s: %w", k.name, err)
			}
		}
	}
	if file, ok := strings.CutPrefix(c.MetalAPIToken, "@"); ok {
		b, err := os.ReadFile(file)
		if err != nil {
			return c, fmt.Errorf("read metal-api token: %w", err)
		}
		c.MetalAPIToken = strings.TrimSpace(string(b))
	}
	c.Defaults()
	if err := c.Validate(); err != nil {
		return c, err
	}
	return c, nil
}
