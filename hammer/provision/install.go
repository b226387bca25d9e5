package provision

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/metalforge/metalforge/hammer/disk"
	"github.com/metalforge/metalforge/hammer/image"
	"github.com/metalforge/metalforge/hammer/install"
	"github.com/metalforge/metalforge/pkg/api"
)

// install lays out the disks, streams the image, configures it, reports and boots it.
func (r *runner) install(ctx context.Context, spec api.InstallSpec) error {
	a := spec.Machine.Allocation
	if a == nil {
		return errors.New("install: the install spec has no allocation")
	}
	if spec.Machine.ID == "" {
		spec.Machine.ID = r.id
	}
	_ = r.event(ctx, api.EventInstalling, "image "+spec.Image.ID)
	layout, err := r.layout(spec)
	if err != nil {
		return err
	}
	if err := disk.Validate(layout); err != nil {
		return fmt.Errorf("install: %w", err)
	}
	var keep []string
	if r.reinstall {
		primary, data := primaryDisks(layout)
		keep = data
		rec, err := r.cfg.Wipe(ctx, primary)
		if err != nil {
			return fmt.Errorf("install: wipe primary disk: %w", err)
		}
		r.primaryWiped = true
		r.log.Info("primary disk wiped for reinstall", "disks", len(rec.Disks), "kept", keep)
	}
	res, err := disk.Apply(ctx, layout, disk.Options{Target: r.cfg.Target, Partitions: r.cfg.Partitions, Keep: keep, Log: r.log})
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	mounted := true
	defer func() {
		if mounted {
			if err := res.Unmount(); err != nil {
				r.log.Error("unmount after failure", "err", err)
			}
		}
	}()

	start := time.Now()
	progress, flush := r.progress(ctx)
	p, err := image.Stream(ctx, image.Config{URL: spec.Image.URL, SHA256: spec.Image.SHA256, Target: r.cfg.Target,
		Client: r.cfg.HTTPClient, Progress: progress})
	flush()
	if err != nil {
		if errors.Is(err, image.ErrChecksum) {
			// The tree is complete but untrusted: it must not survive to be booted by anyone.
			mounted = false
			err = errors.Join(err, res.Unmount(), r.wipeLayout(ctx, layout, keep))
		}
		return fmt.Errorf("install: %w", err)
	}
	r.log.Info("image written", "bytes", p.Written, "files", p.Files, "seconds", time.Since(start).Seconds(), "mbps", p.MBps())

	if err := install.Write(install.Config{Target: r.cfg.Target, Spec: spec, API: r.cfg.API, Fstab: res.Fstab()}); err != nil {
		return fmt.Errorf("install: %w", err)
	}
	root := res.Root()
	imageID := spec.Image.ID
	if imageID == "" {
		imageID = a.ImageID
	}
	bi, err := install.FindBootInfo(r.cfg.Target, install.BootOptions{RootUUID: root.UUID, Args: r.cfg.KernelArgs,
		ImageID: imageID, PrimaryDisk: root.Disk, OSPartition: root.Device})
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	if !r.cfg.Once {
		// kexec_file_load copies kernel and initrd, so the target can be unmounted afterwards.
		if err := r.cfg.Kexec(filepath.Join(r.cfg.Target, bi.Kernel), filepath.Join(r.cfg.Target, bi.Initrd), bi.Cmdline); err != nil {
			return fmt.Errorf("install: %w", err)
		}
	}
	mounted = false
	if err := res.Unmount(); err != nil {
		return fmt.Errorf("install: %w", err)
	}
	if err := r.report(ctx, api.InstallReport{Success: true, BootInfo: &bi}); err != nil {
		return fmt.Errorf("install: %w", err)
	}
	r.log.Info("installed", "kernel", bi.Kernel, "cmdline", bi.Cmdline, "seconds", time.Since(start).Seconds())
	_ = r.event(ctx, api.EventBootingNewKernel, bi.Kernel)
	if r.cfg.Once {
		return nil
	}
	if err := r.cfg.Exec(); err != nil {
		return fmt.Errorf("install: %w", err)
	}
	return nil
}

// layout returns the spec's layout or the default one on the first disk.
func (r *runner) layout(spec api.InstallSpec) (api.FilesystemLayout, error) {
	if spec.Layout != nil {
		return *spec.Layout, nil
	}
	if len(r.inv.Hardware.Disks) == 0 {
		return api.FilesystemLayout{}, fmt.Errorf("install: %w", errNoDisk)
	}
	return disk.Default("/dev/" + r.inv.Hardware.Disks[0].Name), nil
}

// primaryDisks splits the layout's disks for a reinstall: those marked wipeOnReinstall (or the
// first disk when none is marked) are wiped and rebuilt, the others keep their data.
func primaryDisks(l api.FilesystemLayout) (primary, data []string) {
	for _, d := range l.Disks {
		if d.WipeOnReinstall {
			primary = append(primary, d.Device)
		} else {
			data = append(data, d.Device)
		}
	}
	if len(primary) == 0 && len(data) > 0 {
		primary, data = data[:1], data[1:]
	}
	return primary, data
}

// wipeLayout scrubs the disks the install wrote to.
func (r *runner) wipeLayout(ctx context.Context, l api.FilesystemLayout, keep []string) error {
	var devices []string
	for _, d := range l.Disks {
		if !contains(keep, d.Device) {
			devices = append(devices, d.Device)
		}
	}
	_, err := r.cfg.Wipe(ctx, devices)
	return err
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// progress logs image progress and sends an "Installing" event per 10 % of the download, or
// every ProgressInterval when the size is unknown. Events go out in the background, one at a
// time, so a slow API never stalls the write; flush waits for the last one.
func (r *runner) progress(ctx context.Context) (func(image.Progress), func()) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	busy := false
	lastStep := 0.0
	lastEvent := time.Now()
	return func(p image.Progress) {
		msg := fmt.Sprintf("image %d MB written at %.0f MB/s", p.Written/1e6, p.MBps())
		pct := p.Percent()
		if pct >= 0 {
			msg = fmt.Sprintf("image %.0f%%, %s", pct, strings.TrimPrefix(msg, "image "))
		}
		r.log.Info("image progress", "read", p.Read, "total", p.Total, "written", p.Written, "mbps", p.MBps())
		due := (pct >= 0 && pct-lastStep >= 10) || (pct < 0 && time.Since(lastEvent) >= r.cfg.ProgressInterval)
		if !due || p.Done {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if busy {
			return
		}
		busy, lastEvent = true, time.Now()
		if pct >= 0 {
			lastStep = pct - float64(int(pct)%10)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = r.event(ctx, api.EventInstalling, msg)
			mu.Lock()
			busy = false
			mu.Unlock()
		}()
	}, wg.Wait
}
