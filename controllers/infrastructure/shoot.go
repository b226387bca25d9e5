package infrastructure

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	extensionscontroller "github.com/gardener/gardener/extensions/pkg/controller"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/metalforge/metalforge/pkg/apis/metal"
	"github.com/metalforge/metalforge/pkg/apis/metal/helper"
	metalclient "github.com/metalforge/metalforge/pkg/client"
	"github.com/metalforge/metalforge/pkg/client/metalapi"
	"github.com/metalforge/metalforge/pkg/mcm"
)

// Type is the provider type the actuators serve (Infrastructure.spec.type, Worker.spec.type).
const Type = "metal"

// Keys of the cloudprovider secret (the shoot's credentials, Infrastructure.spec.secretRef). They
// are pkg/mcm's MachineClass secret keys, so one secret layout serves the extension and the driver.
const (
	// SecretMetalAPIURL is metal-api's base URL, optional: without it the endpoint of the
	// partition's control plane in the CloudProfileConfig (metalControlPlanes.<name>.endpoint) is
	// used. The secret wins because MCM merges this secret (a MachineClass's credentialsSecretRef)
	// over the class's own secret, so the driver sees the same URL as the actuators.
	SecretMetalAPIURL = mcm.SecretMetalAPIURL
	// SecretMetalAPIToken is an editor token of the shoot's project.
	SecretMetalAPIToken = mcm.SecretMetalAPIToken
)

// ClusterID is the metalforge cluster ID of a shoot: the shoot's status.uid (stable across seeds),
// else its metadata.uid, else the Cluster's name (the shoot's technical ID). Machines, IPs and
// networks of the cluster carry it as the tag/label mcm.TagCluster+ClusterID, the one metal-ccm and
// the MCM driver read.
func ClusterID(c *extensionscontroller.Cluster) string {
	if c != nil && c.Shoot != nil {
		if c.Shoot.Status.UID != "" {
			return string(c.Shoot.Status.UID)
		}
		if c.Shoot.UID != "" {
			return string(c.Shoot.UID)
		}
	}
	if c != nil {
		return c.ObjectMeta.Name
	}
	return ""
}

// ClusterTag is the machine and IP tag of a cluster: cluster.metalforge.io/id=<id>.
func ClusterTag(clusterID string) string { return mcm.TagCluster + clusterID }

// ClusterLabel is the network label key holding the cluster ID (networks have labels, not tags).
const ClusterLabel = "cluster.metalforge.io/id"

// Access is how the actuators reach metal-api for one shoot.
type Access struct {
	URL   string
	Token string
}

// CloudProfileConfig decodes the provider config of the Cluster's CloudProfile (nil when it has
// none).
func CloudProfileConfig(codec *helper.Codec, c *extensionscontroller.Cluster) (*metal.CloudProfileConfig, error) {
	if c == nil || c.CloudProfile == nil || c.CloudProfile.Spec.ProviderConfig == nil || len(c.CloudProfile.Spec.ProviderConfig.Raw) == 0 {
		return nil, nil
	}
	cfg := &metal.CloudProfileConfig{}
	if err := codec.Decode(c.CloudProfile.Spec.ProviderConfig.Raw, cfg); err != nil {
		return nil, fmt.Errorf("decode cloud profile config: %w", err)
	}
	return cfg, nil
}

// ReadAccess reads the token and URL from the cloudprovider secret; without a URL there, the
// endpoint of the partition's metal control plane in the CloudProfileConfig is used.
func ReadAccess(ctx context.Context, c client.Reader, ref corev1.SecretReference, profile *metal.CloudProfileConfig, partition string) (Access, error) {
	s := &corev1.Secret{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, s); err != nil {
		return Access{}, fmt.Errorf("get cloudprovider secret %s/%s: %w", ref.Namespace, ref.Name, err)
	}
	a := Access{
		URL:   strings.TrimSpace(string(s.Data[SecretMetalAPIURL])),
		Token: strings.TrimSpace(string(s.Data[SecretMetalAPIToken])),
	}
	if _, cp, _, ok := helper.FindPartition(profile, partition); ok && a.URL == "" {
		a.URL = cp.Endpoint
	}
	switch {
	case a.URL == "":
		return Access{}, fmt.Errorf("cloudprovider secret %s/%s: no key %s and no control plane endpoint for partition %q in the cloud profile", ref.Namespace, ref.Name, SecretMetalAPIURL, partition)
	case a.Token == "":
		return Access{}, fmt.Errorf("cloudprovider secret %s/%s: no key %s", ref.Namespace, ref.Name, SecretMetalAPIToken)
	}
	return a, nil
}

// Client returns a metal-api client for the access; hc nil takes http.DefaultClient.
func (a Access) Client(hc *http.Client) (*metalapi.MetalAPI, error) {
	api, err := metalclient.NewWithHTTPClient(a.URL, a.Token, hc)
	if err != nil {
		return nil, fmt.Errorf("metal-api client: %w", err)
	}
	return api, nil
}
