package mcm

import (
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/gardener/machine-controller-manager/pkg/apis/machine/v1alpha1"
	"github.com/gardener/machine-controller-manager/pkg/util/provider/machinecodes/codes"
	corev1 "k8s.io/api/core/v1"
)

// Keys of the MachineClass secret (secretRef and credentialsSecretRef; MCM hands the driver both
// merged into one).
const (
	// SecretUserData is the cloud-init/ignition user data of new machines (MCM's convention).
	SecretUserData = "userData"
	// SecretMetalAPIURL is metal-api's base URL, e.g. https://metal-api.example.com.
	SecretMetalAPIURL = "metalAPIURL"
	// SecretMetalAPIToken is a token of the cluster's project with the editor role.
	SecretMetalAPIToken = "metalAPIToken"
)

// ProviderSpec is the JSON in MachineClass.providerSpec: where and what to allocate.
type ProviderSpec struct {
	// Partition is the metal-api partition (the failure domain, a Kubernetes zone).
	Partition string `json:"partition"`
	// Size is the hardware class to allocate.
	Size string `json:"size"`
	// Image is the OS image id.
	Image string `json:"image"`
	// FilesystemLayout is the layout id; empty lets metal-api choose the default.
	FilesystemLayout string `json:"filesystemLayout,omitempty"`
	// Project is the metal-api project the cluster's machines belong to; metal-api spreads a
	// project's machines in a partition over the racks.
	Project string `json:"project"`
	// Networks are the network ids to attach: the cluster's private network first (the one the
	// infrastructure created), then external networks.
	Networks []string `json:"networks"`
	// ClusterID identifies the cluster: machines get the tag cluster.metalforge.io/id=<clusterID>,
	// the same tag metal-ccm reads, and ListMachines finds them by it.
	ClusterID string `json:"clusterID"`
	// Tags are extra machine tags.
	Tags []string `json:"tags,omitempty"`
	// SSHKeys are public keys installed for the machine's default user.
	SSHKeys []string `json:"sshKeys,omitempty"`
}

// credentials are what the secret gives besides the spec.
type credentials struct {
	URL, Token, UserData string
}

// dnsLabel is a partition, size, image or project id that metal-api accepts (and a hostname).
var dnsLabel = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$`)

// invalid is an InvalidArgument error for MCM.
func invalid(format string, args ...any) error {
	return statusError(codes.InvalidArgument, fmt.Sprintf(format, args...))
}

// Validate checks the spec; the errors name the field.
func (s *ProviderSpec) Validate() error {
	var errs []string
	for _, f := range []struct{ name, value string }{
		{"partition", s.Partition}, {"size", s.Size}, {"image", s.Image}, {"project", s.Project}, {"clusterID", s.ClusterID},
	} {
		switch {
		case f.value == "":
			errs = append(errs, f.name+" is required")
		case f.name != "project" && f.name != "clusterID" && !dnsLabel.MatchString(f.value):
			errs = append(errs, fmt.Sprintf("%s %q is not a valid id", f.name, f.value))
		case strings.ContainsAny(f.value, " ,=/"):
			errs = append(errs, fmt.Sprintf("%s %q contains a space, comma, '=' or '/'", f.name, f.value))
		}
	}
	if len(s.Networks) == 0 {
		errs = append(errs, "networks: at least the cluster's private network is required")
	}
	for i, n := range s.Networks {
		if n == "" {
			errs = append(errs, fmt.Sprintf("networks[%d] is empty", i))
		}
	}
	for i, t := range s.Tags {
		for _, reserved := range []string{TagCluster, TagMachine, TagNodeGroup} {
			if strings.HasPrefix(t, reserved) {
				errs = append(errs, fmt.Sprintf("tags[%d] %q: the driver owns tags starting with %s", i, t, reserved))
			}
		}
		if t == "" {
			errs = append(errs, fmt.Sprintf("tags[%d] is empty", i))
		}
	}
	for i, k := range s.SSHKeys {
		if !strings.HasPrefix(k, "ssh-") && !strings.HasPrefix(k, "ecdsa-") && !strings.HasPrefix(k, "sk-") {
			errs = append(errs, fmt.Sprintf("sshKeys[%d] is not an OpenSSH public key", i))
		}
	}
	if len(errs) > 0 {
		return invalid("invalid providerSpec: %s", strings.Join(errs, "; "))
	}
	return nil
}

// decodeClass parses and validates the MachineClass's providerSpec and reads the secret.
func decodeClass(class *v1alpha1.MachineClass, secret *corev1.Secret) (*ProviderSpec, *credentials, error) {
	if class == nil {
		return nil, nil, invalid("no machine class")
	}
	if class.Provider != "" && class.Provider != ProviderName {
		return nil, nil, invalid("machine class %s is for provider %q, not %q", class.Name, class.Provider, ProviderName)
	}
	var spec ProviderSpec
	if len(class.ProviderSpec.Raw) == 0 {
		return nil, nil, invalid("machine class %s has no providerSpec", class.Name)
	}
	dec := json.NewDecoder(strings.NewReader(string(class.ProviderSpec.Raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&spec); err != nil {
		return nil, nil, invalid("decode providerSpec of machine class %s: %v", class.Name, err)
	}
	if err := spec.Validate(); err != nil {
		return nil, nil, err
	}
	creds, err := readSecret(secret)
	if err != nil {
		return nil, nil, err
	}
	return &spec, creds, nil
}

// readSecret returns metal-api's URL and token and the user data.
func readSecret(secret *corev1.Secret) (*credentials, error) {
	if secret == nil {
		return nil, invalid("no secret for the machine class")
	}
	c := &credentials{
		URL:      strings.TrimSpace(string(secret.Data[SecretMetalAPIURL])),
		Token:    strings.TrimSpace(string(secret.Data[SecretMetalAPIToken])),
		UserData: string(secret.Data[SecretUserData]),
	}
	var errs []string
	if c.URL == "" {
		errs = append(errs, "key "+SecretMetalAPIURL+" is missing")
	} else if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Sprintf("%s %q is not an http(s) URL", SecretMetalAPIURL, c.URL))
	}
	if c.Token == "" {
		errs = append(errs, "key "+SecretMetalAPIToken+" is missing")
	}
	if len(errs) > 0 {
		return nil, invalid("invalid secret %s/%s: %s", secret.Namespace, secret.Name, strings.Join(errs, "; "))
	}
	return c, nil
}
