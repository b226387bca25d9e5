// Package mcm is metalforge's driver for gardener's machine-controller-manager (MCM): it implements
// MCM's driver.Driver over metal-api, so a MachineDeployment's machines are metal-api allocations.
//
// CreateMachine allocates a waiting machine of the MachineClass's partition and size to the
// cluster's project with the class's image and networks (metal-api spreads a project's machines
// over the racks of the partition), tagged with the cluster (cluster.metalforge.io/id=, the tag
// metal-ccm reads), the MCM machine name and the node group (the MachineClass name). It is
// idempotent: a machine already tagged with the MCM machine name is returned, never a second one
// allocated. DeleteMachine frees the machine (one that is gone is success), GetMachineStatus and
// ListMachines find the cluster's machines by tag, GetVolumeIDs returns no volumes (metalforge
// machines have local disks only; there is no provider volume a PersistentVolume could name) and
// InitializeMachine is Unimplemented (nothing to do after allocation).
//
// The provider ID is metal://<partition>/<machine-id>, exactly as metal-ccm writes it into
// Node.spec.providerID; the node name is the machine's hostname, the MCM machine name (cut to a
// 63-character DNS label with a hash when longer).
//
// The MachineClass's providerSpec is a ProviderSpec; its secret holds metal-api's URL and an
// editor token of the project (SecretMetalAPIURL, SecretMetalAPIToken) and the user data
// (SecretUserData). Errors are MCM's status errors with its codes (machinecodes), e.g.
// InvalidArgument for a bad spec, ResourceExhausted when no machine is waiting.
//
// Main runs the provider-side machine controller of MCM with this driver (MCM's app.Run and its
// flags); cmd/machine-controller-manager-provider-metal is that binary.
package mcm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"regexp"
	"strings"

	"github.com/gardener/machine-controller-manager/pkg/apis/machine/v1alpha1"
	"github.com/gardener/machine-controller-manager/pkg/util/provider/driver"
	"github.com/gardener/machine-controller-manager/pkg/util/provider/machinecodes/codes"
	"github.com/gardener/machine-controller-manager/pkg/util/provider/machinecodes/status"
	corev1 "k8s.io/api/core/v1"

	"github.com/metalforge/metalforge/pkg/client/wire"
	"github.com/metalforge/metalforge/pkg/providerid"
)

// ProviderName is MachineClass.provider and the scheme of provider IDs (metal-ccm's).
const ProviderName = providerid.Provider

// Machine tags the driver owns.
const (
	// TagCluster prefixes the cluster tag: cluster.metalforge.io/id=<cluster> (metal-ccm's).
	TagCluster = "cluster.metalforge.io/id="
	// TagMachine prefixes the MCM machine name: mcm.metalforge.io/machine=<name>.
	TagMachine = "mcm.metalforge.io/machine="
	// TagNodeGroup prefixes the node group, the MachineClass name: mcm.metalforge.io/node-group=<class>.
	TagNodeGroup = "mcm.metalforge.io/node-group="
)

// ProviderID is the provider ID of a machine: metal://<partition>/<machine-id>.
func ProviderID(partition, machineID string) string { return providerid.Format(partition, machineID) }

// ParseProviderID returns the machine ID of a provider ID (metal://<partition>/<id>, or
// metal://<id> as written by hand).
func ParseProviderID(providerID string) (string, error) { return providerid.Parse(providerID) }

// Config configures the driver.
type Config struct {
	// HTTPClient talks to metal-api (default: http.DefaultClient).
	HTTPClient *http.Client
	// Log receives one line per allocation and free (default: discard).
	Log *slog.Logger
}

// Driver implements MCM's driver.Driver over metal-api. It keeps no state: every call reads
// metal-api's URL and token from the request's secret.
type Driver struct {
	cfg Config
}

var _ driver.Driver = (*Driver)(nil)

// New returns a driver.
func New(cfg Config) *Driver {
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Driver{cfg: cfg}
}

// CreateMachine allocates a machine for the MCM machine, or returns the one already allocated for
// it (a retry after a crash or a lost response).
func (d *Driver) CreateMachine(ctx context.Context, req *driver.CreateMachineRequest) (*driver.CreateMachineResponse, error) {
	if req.Machine == nil {
		return nil, invalid("no machine")
	}
	name := req.Machine.Name
	host := hostnameFor(name)
	m, creds, err := d.connect(req.MachineClass, req.Secret, func() error {
		if !hostnameRE.MatchString(host) {
			return invalid("machine name %q makes no valid hostname", name)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	spec := m.spec
	existing, err := m.byName(ctx, name)
	switch {
	case err == nil:
		d.cfg.Log.Info("machine already allocated", "machine", name, "id", existing.ID)
		return &driver.CreateMachineResponse{ProviderID: ProviderID(existing.PartitionID, existing.ID),
			NodeName: hostname(existing), Addresses: addresses(existing)}, nil
	case !isNotFound(err):
		return nil, err
	}
	tags := append([]string{TagCluster + spec.ClusterID, TagMachine + name, TagNodeGroup + req.MachineClass.Name}, spec.Tags...)
	nets := make([]*wire.AllocationNetwork, 0, len(spec.Networks))
	for _, n := range spec.Networks {
		nets = append(nets, &wire.AllocationNetwork{NetworkID: n})
	}
	allocated, err := m.allocate(ctx, &wire.MachineAllocateRequest{
		ProjectID: spec.Project, PartitionID: spec.Partition, SizeID: spec.Size, ImageID: spec.Image,
		FilesystemLayoutID: spec.FilesystemLayout, Name: name, Hostname: host,
		Description: "machine " + name + " of cluster " + spec.ClusterID,
		Networks:    nets, Tags: tags, SSHPubKeys: spec.SSHKeys, UserData: creds.UserData,
		// Spread each cluster over the racks on its own, not together with the project's other clusters.
		SpreadTag: TagCluster + spec.ClusterID,
	})
	if err != nil {
		return nil, err
	}
	d.cfg.Log.Info("machine allocated", "machine", name, "id", allocated.ID, "partition", allocated.PartitionID, "rack", allocated.RackID)
	return &driver.CreateMachineResponse{ProviderID: ProviderID(allocated.PartitionID, allocated.ID),
		NodeName: hostname(allocated), Addresses: addresses(allocated)}, nil
}

// InitializeMachine is not needed: the hammer installs the machine after allocation.
func (d *Driver) InitializeMachine(context.Context, *driver.InitializeMachineRequest) (*driver.InitializeMachineResponse, error) {
	return nil, status.Error(codes.Unimplemented, "metalforge machines need no initialization after allocation")
}

// DeleteMachine frees the machine; one that is gone, free or not the cluster's is success.
func (d *Driver) DeleteMachine(ctx context.Context, req *driver.DeleteMachineRequest) (*driver.DeleteMachineResponse, error) {
	m, found, err := d.find(ctx, req.Machine, req.MachineClass, req.Secret)
	if isNotFound(err) {
		d.cfg.Log.Info("machine already gone", "machine", req.Machine.Name, "providerID", req.Machine.Spec.ProviderID)
		return &driver.DeleteMachineResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	if err := m.free(ctx, found.ID); err != nil && !isNotFound(err) {
		return nil, err
	}
	d.cfg.Log.Info("machine freed", "machine", req.Machine.Name, "id", found.ID)
	return &driver.DeleteMachineResponse{}, nil
}

// GetMachineStatus returns the machine's provider ID and node name, NotFound if it has none.
func (d *Driver) GetMachineStatus(ctx context.Context, req *driver.GetMachineStatusRequest) (*driver.GetMachineStatusResponse, error) {
	_, found, err := d.find(ctx, req.Machine, req.MachineClass, req.Secret)
	if err != nil {
		return nil, err
	}
	return &driver.GetMachineStatusResponse{ProviderID: ProviderID(found.PartitionID, found.ID),
		NodeName: hostname(found), Addresses: addresses(found)}, nil
}

// ListMachines returns the cluster's machines (by the cluster tag, in the class's project) as
// provider ID → MCM machine name.
func (d *Driver) ListMachines(ctx context.Context, req *driver.ListMachinesRequest) (*driver.ListMachinesResponse, error) {
	m, _, err := d.connect(req.MachineClass, req.Secret, nil)
	if err != nil {
		return nil, err
	}
	ms, err := m.findAll(ctx, []string{m.clusterTag()})
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(ms))
	for _, mc := range ms {
		out[ProviderID(mc.PartitionID, mc.ID)] = machineName(mc)
	}
	return &driver.ListMachinesResponse{MachineList: out}, nil
}

// GetVolumeIDs returns no volume IDs for any PV spec: metalforge has no provider volumes (a
// machine's disks are local), so no PersistentVolume needs detaching before a machine is freed.
func (d *Driver) GetVolumeIDs(context.Context, *driver.GetVolumeIDsRequest) (*driver.GetVolumeIDsResponse, error) {
	return &driver.GetVolumeIDsResponse{VolumeIDs: []string{}}, nil
}

// connect decodes the MachineClass and its secret and returns a metal-api client for them (its
// spec is the decoded one) and the secret's credentials. check, when not nil, runs between the
// two, so that a bad request is reported before a metal-api URL the client cannot use.
func (d *Driver) connect(class *v1alpha1.MachineClass, secret *corev1.Secret, check func() error) (*metal, *credentials, error) {
	spec, creds, err := decodeClass(class, secret)
	if err != nil {
		return nil, nil, err
	}
	if check != nil {
		if err := check(); err != nil {
			return nil, nil, err
		}
	}
	m, err := d.metal(creds, spec)
	if err != nil {
		return nil, nil, err
	}
	return m, creds, nil
}

// find connects to metal-api for the class and finds the MCM machine mc there; the error is
// InvalidArgument without a machine and NotFound when metal-api has none for it.
func (d *Driver) find(ctx context.Context, mc *v1alpha1.Machine, class *v1alpha1.MachineClass, secret *corev1.Secret) (*metal, *wire.Machine, error) {
	if mc == nil {
		return nil, nil, invalid("no machine")
	}
	m, _, err := d.connect(class, secret, nil)
	if err != nil {
		return nil, nil, err
	}
	found, err := m.find(ctx, mc)
	return m, found, err
}

// roleMachine is metal-api's allocation role of the machines MCM allocates (its default role).
// The cluster's firewall carries the cluster tag too, but it has role firewall and is the
// infrastructure actuator's: listed by ListMachines, MCM's safety controller would free it as an
// orphan VM.
const roleMachine = "machine"

// hostnameRE is a hostname metal-api accepts: one DNS label.
var hostnameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// hostnameFor is the hostname, and so the node name, of an MCM machine: its name, with dots made
// dashes, and cut to 63 characters with a hash of the whole name when it is longer (gardener's
// machine names can be: shoot namespace, pool, zone and two hashes).
func hostnameFor(name string) string {
	h := strings.ReplaceAll(name, ".", "-")
	if len(h) <= 63 {
		return h
	}
	sum := sha256.Sum256([]byte(name))
	return strings.TrimRight(h[:56], "-") + "-" + hex.EncodeToString(sum[:])[:6]
}

// hostname is the node name: the allocation's hostname.
func hostname(m *wire.Machine) string {
	if m.Allocation != nil && m.Allocation.Hostname != "" {
		return m.Allocation.Hostname
	}
	return machineName(m)
}

// machineName is the MCM machine name from the machine's tag.
func machineName(m *wire.Machine) string {
	for _, t := range m.Tags {
		if n, ok := strings.CutPrefix(t, TagMachine); ok {
			return n
		}
	}
	if m.Allocation != nil {
		return m.Allocation.Name
	}
	return ""
}

// addresses are the machine's hostname and the addresses on its private network.
func addresses(m *wire.Machine) []corev1.NodeAddress {
	var out []corev1.NodeAddress
	if m.Allocation == nil {
		return nil
	}
	for _, n := range m.Allocation.Networks {
		if n == nil {
			continue
		}
		typ := corev1.NodeExternalIP
		if n.Private {
			typ = corev1.NodeInternalIP
		}
		for _, ip := range n.Ips {
			out = append(out, corev1.NodeAddress{Type: typ, Address: ip})
		}
	}
	return out
}

// isNotFound reports whether err is an MCM NotFound status error.
func isNotFound(err error) bool {
	if err == nil {
		return false
	}
	var s *status.Status
	if errors.As(err, &s) {
		return s.Code() == codes.NotFound
	}
	st, ok := status.FromError(err)
	return ok && st.Code() == codes.NotFound
}

// machineRef is the MCM machine's name and provider ID (empty before creation finished).
func machineRef(mc *v1alpha1.Machine) (name, providerID string) {
	return mc.Name, mc.Spec.ProviderID
}
