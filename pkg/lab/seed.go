package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/metalforge/metalforge/pkg/api"
)

// restClient is a small JSON client for metal-api used while setting the lab up.
type restClient struct {
	base, token string
	hc          *http.Client
}

// statusError is a non-2xx answer.
type statusError struct {
	Status int
	Body   string
}

func (e *statusError) Error() string { return fmt.Sprintf("status %d: %s", e.Status, e.Body) }

func (r *restClient) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		raw, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+r.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %w", method, path, &statusError{Status: resp.StatusCode, Body: strings.TrimSpace(string(raw))})
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

// waitHealthy polls /healthz until metal-api answers or ctx ends.
func (r *restClient) waitHealthy(ctx context.Context) error {
	var last error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.base+"/healthz", nil)
		resp, err := r.hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("healthz: status %d", resp.StatusCode)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("metal-api is not healthy: %w (last: %v)", ctx.Err(), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// doc is one seed object: the REST collection and the entity.
type doc struct {
	kind string // REST collection: partition, size, image, filesystemlayout, network, project
	id   string
	obj  any
}

// apply creates the object or, when it exists, updates it with the stored version.
func (r *restClient) apply(ctx context.Context, d doc) error {
	var cur struct {
		Version int64 `json:"version"`
	}
	err := r.do(ctx, http.MethodGet, "/v1/"+d.kind+"/"+d.id, nil, &cur)
	var se *statusError
	switch {
	case errors.As(err, &se) && se.Status == http.StatusNotFound:
		return r.do(ctx, http.MethodPost, "/v1/"+d.kind, d.obj, nil)
	case err != nil:
		return err
	}
	// Put the stored version into the body (optimistic concurrency).
	raw, err := json.Marshal(d.obj)
	if err != nil {
		return err
	}
	var fields map[string]any
	if err := json.Unmarshal(raw, &fields); err != nil {
		return err
	}
	fields["version"] = cur.Version
	return r.do(ctx, http.MethodPut, "/v1/"+d.kind+"/"+d.id, fields, nil)
}

// seedDocs is the lab's seed data in the shape of example/seed.yaml: partition lab booting the
// hammer from the boot-server, a size the lab's VMs match, the built images, a layout, networks
// and a project.
func seedDocs(c *Config, a Artifacts) []doc {
	bootURL := fmt.Sprintf("http://%s:%d", c.ServerIP(), c.BootHTTPPort)
	gi := int64(1 << 30)
	p := &api.Partition{Meta: api.Meta{ID: c.Partition, Name: c.Partition, Description: "metal-lab partition"},
		Boot:               api.BootConfig{Cmdline: "console=ttyS0"},
		MgmtServiceAddress: fmt.Sprintf("%s:%d", c.ServerIP(), c.GRPCPort),
		DNSServers:         []string{c.ServerIP().String()}, NTPServers: []string{c.ServerIP().String()}}
	if a.Kernel != "" {
		p.Boot.KernelURL = bootURL + "/assets/" + a.Kernel
		p.Boot.InitrdURL = bootURL + "/assets/" + a.Initrd
	}
	docs := []doc{
		{"partition", p.ID, p},
		{"size", "v1-small-x86", &api.Size{Meta: api.Meta{ID: "v1-small-x86", Name: "small", Description: "1-4 cores, 0.5-8 GiB memory (the lab's VMs)"},
			Constraints: []api.Constraint{{Type: api.ConstraintCores, Min: 1, Max: 4},
				{Type: api.ConstraintMemory, Min: uint64(gi / 2), Max: uint64(8 * gi)},
				{Type: api.ConstraintStorage, Min: uint64(gi), Max: uint64(100 * gi)}}}},
	}
	for _, img := range a.Images {
		docs = append(docs, doc{"image", img.Name, &api.Image{Meta: api.Meta{ID: img.Name, Name: img.Name, Description: "built by hack/images/build.sh"},
			URL: bootURL + "/assets/images/" + img.Name + ".tar.zst", SHA256: img.SHA256, OS: img.OS, OSVersion: img.OSVersion,
			Features: img.Features, Classification: api.ClassificationPreview}})
	}
	docs = append(docs,
		doc{"filesystemlayout", "default", &api.FilesystemLayout{Meta: api.Meta{ID: "default", Description: "EFI partition and one ext4 root on the first virtio disk"},
			Constraints: api.LayoutConstraints{Sizes: []string{"v1-small-x86"}, Images: map[string]string{"debian": "*"}},
			Disks: []api.Disk{{Device: "/dev/vda", WipeOnReinstall: true, Partitions: []api.DiskPartition{
				{Number: 1, Label: "efi", Size: 256, GPTType: "ef00"}, {Number: 2, Label: "root", Size: 0, GPTType: "8300"}}}},
			Filesystems: []api.Filesystem{{Device: "/dev/vda1", Format: "vfat", Label: "efi", Path: "/boot/efi"},
				{Device: "/dev/vda2", Format: "ext4", Label: "root", Path: "/"}}}},
		doc{"network", "tenant-super", &api.Network{Meta: api.Meta{ID: "tenant-super", Name: "tenant networks"}, Type: api.NetworkSuper,
			PartitionID: c.Partition, Prefixes: []string{"10.128.0.0/14"}, ChildPrefixLength: 22}},
		doc{"network", "underlay", &api.Network{Meta: api.Meta{ID: "underlay", Name: "underlay"}, Type: api.NetworkUnderlay,
			PartitionID: c.Partition, Prefixes: []string{"10.1.0.0/22"}}},
		doc{"network", "internet", &api.Network{Meta: api.Meta{ID: "internet", Name: "internet"}, Type: api.NetworkExternal,
			Prefixes: []string{"203.0.113.0/24"}, DestinationPrefixes: []string{"0.0.0.0/0"}, NAT: true, VRF: 104009}},
		doc{"project", "demo", &api.Project{Meta: api.Meta{ID: "demo", Name: "demo", Description: "a tenant to try things with"}}},
	)
	return docs
}

// seed applies the seed data and makes the lab's tokens.
func seed(ctx context.Context, r *restClient, c *Config, a Artifacts) (Tokens, error) {
	for _, d := range seedDocs(c, a) {
		if err := r.apply(ctx, d); err != nil {
			return Tokens{}, fmt.Errorf("seed %s %s: %w", d.kind, d.id, err)
		}
	}
	var t Tokens
	for _, x := range []struct {
		role string
		dst  *string
	}{{api.RoleService, &t.Service}, {"boot", &t.Boot}} {
		var tok api.Token
		in := api.Token{Meta: api.Meta{Name: "metal-lab " + x.role}, Role: x.role, PartitionID: c.Partition}
		if err := r.do(ctx, http.MethodPost, "/v1/token", in, &tok); err != nil {
			return Tokens{}, fmt.Errorf("create %s token: %w", x.role, err)
		}
		*x.dst = tok.Secret
	}
	return t, nil
}

// Tokens are the secrets the lab handed out.
type Tokens struct {
	// Admin is metal-api's admin token (metalctl).
	Admin string `json:"admin"`
	// Service is the partition service token of the boot-server and the bmc-agent.
	Service string `json:"service"`
	// Boot is the partition boot secret the hammers authenticate with.
	Boot string `json:"boot"`
}
