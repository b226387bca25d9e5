package rest

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/netip"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/apierror"
	"github.com/metalforge/metalforge/pkg/size"
	"github.com/metalforge/metalforge/pkg/store"
)

var idRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._:-]{0,127}$`)

func validID(id string) error {
	if !idRE.MatchString(id) {
		return apierror.Invalid("id %q must be 1-128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit", id)
	}
	return nil
}

func validURL(field, s string, schemes ...string) error {
	if s == "" {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" && u.Scheme != "file" || !slices.Contains(schemes, u.Scheme) {
		return apierror.Invalid("%s %q is not a %s URL", field, s, strings.Join(schemes, "/"))
	}
	return nil
}

func validAddrs(field string, ss []string) error {
	for _, s := range ss {
		if _, err := netip.ParseAddr(s); err != nil {
			return apierror.Invalid("%s: %q is not an IP address", field, s)
		}
	}
	return nil
}

func exists[T any](ctx context.Context, t store.Table[T], kind, id string) error {
	if _, err := t.Get(ctx, id); err != nil {
		return apierror.Invalid("%s %q does not exist", kind, id)
	}
	return nil
}

// validBootURL accepts an http(s) URL or an absolute path on the partition's boot-server.
func validBootURL(field, s string) error {
	if strings.HasPrefix(s, "/") && path.Clean(s) == s {
		return nil
	}
	return validURL(field, s, "http", "https")
}

func validatePartition(_ context.Context, _ store.Tx, p, _ *api.Partition) error {
	if err := validBootURL("kernel url", p.Boot.KernelURL); err != nil {
		return err
	}
	if err := validBootURL("initrd url", p.Boot.InitrdURL); err != nil {
		return err
	}
	if err := validAddrs("dns servers", p.DNSServers); err != nil {
		return err
	}
	for _, n := range p.NTPServers {
		if n == "" || strings.ContainsAny(n, " /") {
			return apierror.Invalid("ntp server %q is not a host name or address", n)
		}
	}
	return nil
}

func partitionInUse(ctx context.Context, tx store.Tx, p *api.Partition) error {
	for _, c := range []struct {
		kind string
		n    func() (int, error)
	}{
		{"machines", func() (int, error) { return tx.Machines().Count(ctx, store.Query{Partition: p.ID}) }},
		{"networks", func() (int, error) { return tx.Networks().Count(ctx, store.Query{Partition: p.ID}) }},
		{"switches", func() (int, error) { return tx.Switches().Count(ctx, store.Query{Partition: p.ID}) }},
	} {
		n, err := c.n()
		if err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("partition %s still has %d %s: %w", p.ID, n, c.kind, apierror.ErrInUse)
		}
	}
	return nil
}

func validateSize(ctx context.Context, tx store.Tx, s, _ *api.Size) error {
	if err := size.Validate(s); err != nil {
		return apierror.Invalid("%v", err)
	}
	all, _, err := tx.Sizes().List(ctx, store.Query{})
	if err != nil {
		return err
	}
	if other := size.FirstOverlap(s, all); other != "" {
		return apierror.Invalid("size %s overlaps size %s: one machine could match both", s.ID, other)
	}
	return nil
}

func sizeInUse(ctx context.Context, tx store.Tx, s *api.Size) error {
	n, err := tx.Machines().Count(ctx, store.Query{Key1: s.ID})
	if err != nil {
		return err
	}
	if n > 0 {
		return fmt.Errorf("size %s is the size of %d machines: %w", s.ID, n, apierror.ErrInUse)
	}
	r, err := tx.SizeReservations().Count(ctx, store.Query{Key1: s.ID})
	if err != nil {
		return err
	}
	if r > 0 {
		return fmt.Errorf("size %s has %d reservations: %w", s.ID, r, apierror.ErrInUse)
	}
	return nil
}

func validateReservation(ctx context.Context, tx store.Tx, r, _ *api.SizeReservation) error {
	if r.Amount <= 0 {
		return apierror.Invalid("reservation amount must be positive, not %d", r.Amount)
	}
	if len(r.PartitionIDs) == 0 {
		return apierror.Invalid("reservation needs at least one partition")
	}
	if err := exists(ctx, tx.Sizes(), "size", r.SizeID); err != nil {
		return err
	}
	if err := exists(ctx, tx.Projects(), "project", r.ProjectID); err != nil {
		return err
	}
	for _, p := range r.PartitionIDs {
		if err := exists(ctx, tx.Partitions(), "partition", p); err != nil {
			return err
		}
	}
	return nil
}

func validateImage(_ context.Context, _ store.Tx, img, _ *api.Image) error {
	if err := validURL("image url", img.URL, "http", "https"); err != nil {
		return err
	}
	if img.URL == "" {
		return apierror.Invalid("image needs a url")
	}
	if b, err := hex.DecodeString(img.SHA256); err != nil || len(b) != 32 {
		return apierror.Invalid("sha256 %q is not 64 hex digits", img.SHA256)
	}
	if img.OS == "" || img.OSVersion == "" {
		return apierror.Invalid("image needs os and osVersion")
	}
	if len(img.Features) == 0 {
		return apierror.Invalid("image needs at least one feature (machine, firewall)")
	}
	for _, f := range img.Features {
		if f != api.FeatureMachine && f != api.FeatureFirewall {
			return apierror.Invalid("image feature %q is not machine or firewall", f)
		}
	}
	switch img.Classification {
	case "", api.ClassificationPreview, api.ClassificationSupported, api.ClassificationDeprecated:
	default:
		return apierror.Invalid("classification %q is not preview, supported or deprecated", img.Classification)
	}
	return nil
}

func imageInUse(ctx context.Context, tx store.Tx, img *api.Image) error {
	ms, _, err := tx.Machines().List(ctx, store.Query{Key2: store.MachineStatusAllocated})
	if err != nil {
		return err
	}
	for _, m := range ms {
		if m.Allocation.ImageID == img.ID {
			return fmt.Errorf("image %s is installed on machine %s: %w", img.ID, m.ID, apierror.ErrInUse)
		}
	}
	return nil
}

var formats = []string{"ext4", "ext3", "vfat", "swap", "tmpfs", "none"}

func validateLayout(ctx context.Context, tx store.Tx, l, _ *api.FilesystemLayout) error {
	devices := map[string]bool{}
	for _, d := range l.Disks {
		if !strings.HasPrefix(d.Device, "/dev/") {
			return apierror.Invalid("disk %q is not a /dev path", d.Device)
		}
		seen := map[int]bool{}
		for i, p := range d.Partitions {
			if p.Number < 1 || seen[p.Number] {
				return apierror.Invalid("disk %s: partition number %d is not positive and unique", d.Device, p.Number)
			}
			seen[p.Number] = true
			if p.Size == 0 && i != len(d.Partitions)-1 {
				return apierror.Invalid("disk %s: only the last partition may take the rest (size 0)", d.Device)
			}
			devices[partitionDevice(d.Device, p.Number)] = true
		}
		devices[d.Device] = true
	}
	for _, r := range l.Raid {
		if !slices.Contains([]string{"0", "1", "5", "6", "10"}, r.Level) {
			return apierror.Invalid("raid %s: level %q is not 0, 1, 5, 6 or 10", r.ArrayName, r.Level)
		}
		for _, d := range r.Devices {
			if !devices[d] {
				return apierror.Invalid("raid %s: device %s is not a partition of the layout", r.ArrayName, d)
			}
		}
		devices[r.ArrayName] = true
	}
	vgs := map[string]bool{}
	for _, vg := range l.VolumeGroups {
		for _, d := range vg.Devices {
			if !devices[d] {
				return apierror.Invalid("volume group %s: device %s is not in the layout", vg.Name, d)
			}
		}
		vgs[vg.Name] = true
	}
	for _, lv := range l.LogicalVolumes {
		if !vgs[lv.VolumeGroup] {
			return apierror.Invalid("logical volume %s: volume group %s is not in the layout", lv.Name, lv.VolumeGroup)
		}
		devices["/dev/"+lv.VolumeGroup+"/"+lv.Name] = true
	}
	if len(l.Filesystems) == 0 {
		return apierror.Invalid("layout needs at least one filesystem")
	}
	mounts := map[string]bool{}
	for _, f := range l.Filesystems {
		if !slices.Contains(formats, f.Format) {
			return apierror.Invalid("filesystem %s: format %q is not one of %s", f.Device, f.Format, strings.Join(formats, ", "))
		}
		if f.Format != "tmpfs" && !devices[f.Device] {
			return apierror.Invalid("filesystem device %s is not in the layout", f.Device)
		}
		if f.Path != "" {
			if !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path {
				return apierror.Invalid("mount path %q is not a clean absolute path", f.Path)
			}
			if mounts[f.Path] {
				return apierror.Invalid("mount path %s is used twice", f.Path)
			}
			mounts[f.Path] = true
		}
	}
	if !mounts["/"] {
		return apierror.Invalid("layout has no root filesystem")
	}
	for _, s := range l.Constraints.Sizes {
		if err := exists(ctx, tx.Sizes(), "size", s); err != nil {
			return err
		}
	}
	return nil
}

// partitionDevice names partition n of a disk: /dev/sda1, /dev/vda1, /dev/nvme0n1p1.
func partitionDevice(disk string, n int) string {
	if last := disk[len(disk)-1]; last >= '0' && last <= '9' {
		return fmt.Sprintf("%sp%d", disk, n)
	}
	return fmt.Sprintf("%s%d", disk, n)
}

func validateProject(_ context.Context, _ store.Tx, p, _ *api.Project) error {
	for name, q := range map[string]*int{"machines": p.Quotas.Machines, "ips": p.Quotas.IPs, "networks": p.Quotas.Networks} {
		if q != nil && *q < 0 {
			return apierror.Invalid("quota for %s is negative", name)
		}
	}
	return nil
}

func projectInUse(ctx context.Context, tx store.Tx, p *api.Project) error {
	for kind, n := range map[string]func() (int, error){
		"machines": func() (int, error) { return tx.Machines().Count(ctx, store.Query{Project: p.ID}) },
		"networks": func() (int, error) { return tx.Networks().Count(ctx, store.Query{Project: p.ID}) },
		"ips":      func() (int, error) { return tx.IPs().Count(ctx, store.Query{Project: p.ID}) },
	} {
		c, err := n()
		if err != nil {
			return err
		}
		if c > 0 {
			return fmt.Errorf("project %s still has %d %s: %w", p.ID, c, kind, apierror.ErrInUse)
		}
	}
	return nil
}

func validateSwitch(ctx context.Context, tx store.Tx, s, _ *api.Switch) error {
	if err := exists(ctx, tx.Partitions(), "partition", s.PartitionID); err != nil {
		return err
	}
	if s.ManagementIP != "" {
		if err := validAddrs("management ip", []string{s.ManagementIP}); err != nil {
			return err
		}
	}
	names := map[string]bool{}
	for _, p := range s.Ports {
		if p.Name == "" || names[p.Name] {
			return apierror.Invalid("switch port name %q is empty or given twice", p.Name)
		}
		names[p.Name] = true
	}
	return nil
}
