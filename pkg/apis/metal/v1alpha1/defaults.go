package v1alpha1

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Defaults applied when a field is left out. Every default of this API version lives here.
const (
	// DefaultFirewallHealthTimeout is how long a created firewall may stay unhealthy before it is
	// considered dead and replaced.
	DefaultFirewallHealthTimeout = 20 * time.Minute
	// DefaultFirewallCreateTimeout is how long a firewall may stay in creation before it is
	// recreated.
	DefaultFirewallCreateTimeout = 10 * time.Minute
	// DefaultNetworkAccessType is the network access of a cluster that does not ask for one.
	DefaultNetworkAccessType = NetworkAccessBaseline
)

// SetDefaults_Firewall fills in the firewall timeouts. An explicit zero health timeout is kept:
// it disables the timeout.
func SetDefaults_Firewall(f *Firewall) {
	if f.FirewallHealthTimeout == nil {
		f.FirewallHealthTimeout = &metav1.Duration{Duration: DefaultFirewallHealthTimeout}
	}
	if f.FirewallCreateTimeout == nil {
		f.FirewallCreateTimeout = &metav1.Duration{Duration: DefaultFirewallCreateTimeout}
	}
}

// SetDefaults_ControlPlaneConfig sets the network access type to baseline when it is not given.
func SetDefaults_ControlPlaneConfig(c *ControlPlaneConfig) {
	if c.NetworkAccessType == nil {
		t := DefaultNetworkAccessType
		c.NetworkAccessType = &t
	}
}
