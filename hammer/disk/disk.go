// Package disk prepares the disks of a machine from an api.FilesystemLayout: GPT partition
// tables written by this package, file systems made with the mke2fs, mkfs.vfat and mkswap
// binaries of the initramfs, software RAID arrays made with mdadm and LVM volume groups and
// logical volumes made with lvm (both over partitions or arrays, without udev), and mounts
// below a target directory for the image.
package disk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/metalforge/metalforge/pkg/api"
)

// File system formats.
const (
	FormatExt4  = "ext4"
	FormatExt3  = "ext3"
	FormatExt2  = "ext2"
	FormatVFAT  = "vfat"
	FormatSwap  = "swap"
	FormatTmpfs = "tmpfs"
	FormatNone  = "none"
)

// ErrUnsupported marks layouts that use features this hammer does not implement yet.
var ErrUnsupported = errors.New("not supported yet")

// Default is the layout used when an install spec carries none: on the given disk an EFI system
// partition of 512 MiB mounted at /boot/efi and an ext4 root over the rest.
func Default(device string) api.FilesystemLayout {
	return api.FilesystemLayout{
		Meta: api.Meta{ID: "default"},
		Disks: []api.Disk{{Device: device, WipeOnReinstall: true, Partitions: []api.DiskPartition{
			{Number: 1, Label: "efi", Size: 512, GPTType: "ef00"},
			{Number: 2, Label: "root", Size: 0, GPTType: "8300"},
		}}},
		Filesystems: []api.Filesystem{
			{Device: PartitionDevice(device, 2), Format: FormatExt4, Label: "root", Path: "/"},
			{Device: PartitionDevice(device, 1), Format: FormatVFAT, Label: "efi", Path: "/boot/efi"},
		},
	}
}

// PartitionDevice is the device node of partition n of disk: /dev/sda1, /dev/nvme0n1p1,
// /dev/loop3p1.
func PartitionDevice(disk string, n int) string {
	if disk != "" && disk[len(disk)-1] >= '0' && disk[len(disk)-1] <= '9' {
		return fmt.Sprintf("%sp%d", disk, n)
	}
	return fmt.Sprintf("%s%d", disk, n)
}

// Validate checks a layout before anything is written.
func Validate(l api.FilesystemLayout) error {
	disks := map[string]bool{}
	devices := map[string]bool{}
	for _, d := range l.Disks {
		if !strings.HasPrefix(d.Device, "/dev/") || disks[d.Device] {
			return fmt.Errorf("layout %s: disk %q is not a unique /dev path", l.ID, d.Device)
		}
		disks[d.Device] = true
		for i, p := range d.Partitions {
			if p.Size == 0 && i != len(d.Partitions)-1 {
				return fmt.Errorf("layout %s: %s partition %d: size 0 (the rest) is only allowed last", l.ID, d.Device, p.Number)
			}
			if _, err := PartitionType(p.GPTType); err != nil {
				return fmt.Errorf("layout %s: %s partition %d: %w", l.ID, d.Device, p.Number, err)
			}
			devices[PartitionDevice(d.Device, p.Number)] = true
		}
	}
	for d := range disks {
		devices[d] = true
	}
	if err := validateVolumes(l, devices); err != nil {
		return err
	}
	paths := map[string]bool{}
	for _, fs := range l.Filesystems {
		switch fs.Format {
		case FormatExt4, FormatExt3, FormatExt2, FormatVFAT, FormatSwap, FormatNone:
			if fs.Device == "" {
				return fmt.Errorf("layout %s: %s file system without a device", l.ID, fs.Format)
			}
			if !devices[fs.Device] {
				return fmt.Errorf("layout %s: file system device %s is not a partition, disk, array or logical volume of the layout", l.ID, fs.Device)
			}
		case FormatTmpfs:
		default:
			return fmt.Errorf("layout %s: file system format %q: %w", l.ID, fs.Format, ErrUnsupported)
		}
		if fs.Path == "" {
			if fs.Format == FormatTmpfs {
				return fmt.Errorf("layout %s: tmpfs without a path", l.ID)
			}
			continue
		}
		if fs.Format == FormatSwap || fs.Format == FormatNone {
			return fmt.Errorf("layout %s: %s on %s can't be mounted at %s", l.ID, fs.Format, fs.Device, fs.Path)
		}
		if !path.IsAbs(fs.Path) || path.Clean(fs.Path) != fs.Path || paths[fs.Path] {
			return fmt.Errorf("layout %s: mount path %q is not a unique clean absolute path", l.ID, fs.Path)
		}
		paths[fs.Path] = true
	}
	if !paths["/"] {
		return fmt.Errorf("layout %s: no file system mounted at /", l.ID)
	}
	return nil
}

// Options for Apply.
type Options struct {
	// Target is where the root file system is mounted.
	Target string
	// PartitionTimeout bounds the wait for partition device nodes; default 10 s.
	PartitionTimeout time.Duration
	// Partitions makes the partitions of a freshly written table usable and returns the device
	// node of each partition by its layout name (PartitionDevice). nil asks the kernel to re-read
	// the table and waits for the nodes; tests on kernels without GPT support map loop devices.
	Partitions func(ctx context.Context, disk string, t Table) (map[string]string, error)
	// Keep lists disks whose partitions and file systems stay as they are (the data disks of a
	// reinstall): they are not partitioned, formatted or mounted, but appear in the fstab.
	Keep []string
	Log  *slog.Logger
}

// Mounted is a file system Apply made.
type Mounted struct {
	api.Filesystem
	// UUID is the file system UUID (the volume ID for vfat), as in /dev/disk/by-uuid.
	UUID string
	// Disk is the disk the device belongs to.
	Disk string
	// Node is the device node used for Device (the same path unless Options.Partitions maps it).
	Node string
	// Dir is where it is mounted now, "" when not mounted (swap, tmpfs, kept).
	Dir string
	// Kept is true for file systems on kept disks: not made, not mounted, UUID unknown.
	Kept bool
}

// Result is a prepared layout.
type Result struct {
	Filesystems []Mounted
	// teardown deactivates the volume groups and stops the arrays Apply made.
	teardown []Command
}

// Root is the file system mounted at /.
func (r *Result) Root() Mounted {
	for _, m := range r.Filesystems {
		if m.Path == "/" {
			return m
		}
	}
	return Mounted{}
}

// Apply validates the layout, partitions the disks, makes the file systems and mounts them below
// opts.Target (root first, then by path). On error it unmounts what it mounted.
func Apply(ctx context.Context, l api.FilesystemLayout, opts Options) (*Result, error) {
	if err := Validate(l); err != nil {
		return nil, err
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.PartitionTimeout <= 0 {
		opts.PartitionTimeout = 10 * time.Second
	}
	if opts.Partitions == nil {
		opts.Partitions = func(ctx context.Context, disk string, t Table) (map[string]string, error) {
			return kernelPartitions(ctx, disk, t, opts.PartitionTimeout)
		}
	}
	diskOf, nodes := map[string]string{}, map[string]string{}
	kept := map[string]bool{}
	for _, d := range l.Disks {
		diskOf[d.Device], nodes[d.Device] = d.Device, d.Device
		if slices.Contains(opts.Keep, d.Device) {
			kept[d.Device] = true
			for _, p := range d.Partitions {
				name := PartitionDevice(d.Device, p.Number)
				diskOf[name], nodes[name] = d.Device, name
			}
			continue
		}
		parts, err := partition(ctx, d, opts)
		if err != nil {
			return nil, err
		}
		for name, node := range parts {
			diskOf[name], nodes[name] = d.Device, node
		}
	}
	teardown, err := buildVolumes(ctx, l, nodes, diskOf, kept, opts)
	if err != nil {
		return nil, err
	}
	res := &Result{teardown: teardown}
	for _, fs := range l.Filesystems {
		m := Mounted{Filesystem: fs, Disk: diskOf[fs.Device], Node: nodes[fs.Device]}
		if fs.Device != "" && m.Node == "" {
			return nil, fmt.Errorf("file system device %s has no node", fs.Device)
		}
		if kept[m.Disk] {
			if fs.Path == "/" {
				return nil, fmt.Errorf("the root file system is on %s, which is to be kept", m.Disk)
			}
			m.Kept = true
			res.Filesystems = append(res.Filesystems, m)
			continue
		}
		mk := fs
		mk.Device = m.Node
		if m.UUID, err = mkfs(ctx, mk); err != nil {
			return nil, errors.Join(err, stopVolumes(teardown))
		}
		opts.Log.Info("file system made", "device", fs.Device, "format", fs.Format, "uuid", m.UUID, "path", fs.Path)
		res.Filesystems = append(res.Filesystems, m)
	}
	if err := res.mount(opts.Target); err != nil {
		return nil, errors.Join(err, res.Unmount())
	}
	return res, nil
}

// partition writes the GPT of one disk and returns its partition nodes.
func partition(ctx context.Context, d api.Disk, opts Options) (map[string]string, error) {
	t, err := writeTable(d)
	if err != nil {
		return nil, fmt.Errorf("partition %s: %w", d.Device, err)
	}
	opts.Log.Info("partitioned", "device", d.Device, "partitions", len(t.Partitions))
	nodes, err := opts.Partitions(ctx, d.Device, t)
	if err != nil {
		return nil, fmt.Errorf("partition %s: %w", d.Device, err)
	}
	return nodes, nil
}

func writeTable(d api.Disk) (Table, error) {
	f, err := os.OpenFile(d.Device, os.O_RDWR|unix.O_EXCL|unix.O_CLOEXEC, 0)
	if err != nil {
		return Table{}, err
	}
	defer f.Close()
	sectorSize, sectors, err := geometry(f)
	if err != nil {
		return Table{}, err
	}
	req := make([]PlanPartition, 0, len(d.Partitions))
	for _, p := range d.Partitions {
		req = append(req, PlanPartition{Number: p.Number, SizeMiB: p.Size, Type: p.GPTType, Name: p.Label})
	}
	t, err := Plan(sectorSize, sectors, req)
	if err != nil {
		return t, err
	}
	return t, t.Write(f)
}

// kernelPartitions asks the kernel to re-read the table and waits for the partition nodes
// (devtmpfs creates them).
func kernelPartitions(ctx context.Context, disk string, t Table, timeout time.Duration) (map[string]string, error) {
	f, err := os.OpenFile(disk, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	err = ioctl(f, unix.BLKRRPART, 0)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("re-read partition table: %w", err)
	}
	nodes := map[string]string{}
	deadline := time.Now().Add(timeout)
	for _, p := range t.Partitions {
		dev := PartitionDevice(disk, p.Number)
		for {
			if fi, err := os.Stat(dev); err == nil && fi.Mode()&os.ModeDevice != 0 {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return nil, fmt.Errorf("%s did not appear (does the kernel parse gpt?)", dev)
			}
			time.Sleep(20 * time.Millisecond)
		}
		nodes[dev] = dev
	}
	return nodes, nil
}

// geometry returns the logical sector size and the number of sectors of a block device (512 and
// the file size for regular files).
func geometry(f *os.File) (uint64, uint64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	if fi.Mode().IsRegular() {
		return 512, uint64(fi.Size()) / 512, nil
	}
	var ssz int32
	var size uint64
	if err := ioctl(f, unix.BLKSSZGET, uintptr(unsafe.Pointer(&ssz))); err != nil {
		return 0, 0, fmt.Errorf("sector size: %w", err)
	}
	if err := ioctl(f, unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&size))); err != nil {
		return 0, 0, fmt.Errorf("device size: %w", err)
	}
	return uint64(ssz), size / uint64(ssz), nil
}

func ioctl(f *os.File, req, arg uintptr) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), req, arg)
	if errno != 0 {
		return errno
	}
	return nil
}

// mount mounts the mountable file systems below target, shortest path first.
func (r *Result) mount(target string) error {
	order := make([]int, 0, len(r.Filesystems))
	for i, m := range r.Filesystems {
		if m.Path != "" && m.Format != FormatTmpfs && !m.Kept {
			order = append(order, i)
		}
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return strings.Count(r.Filesystems[a].Path, "/") - strings.Count(r.Filesystems[b].Path, "/")
	})
	for _, i := range order {
		m := &r.Filesystems[i]
		dir := path.Join(target, m.Path)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("mount %s: %w", m.Device, err)
		}
		flags, data := mountOptions(m.MountOptions)
		if err := unix.Mount(m.Node, dir, m.Format, flags, data); err != nil {
			return fmt.Errorf("mount %s on %s: %w", m.Device, dir, err)
		}
		m.Dir = dir
	}
	return nil
}

// Unmount syncs and unmounts everything mounted, deepest mount point first (whatever order the
// layout listed the file systems in), then deactivates the volume groups and stops the arrays
// Apply made, so that nothing holds the disks (a wipe opens them exclusively).
func (r *Result) Unmount() error {
	unix.Sync()
	order := make([]int, 0, len(r.Filesystems))
	for i, m := range r.Filesystems {
		if m.Dir != "" {
			order = append(order, i)
		}
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return strings.Count(r.Filesystems[b].Dir, "/") - strings.Count(r.Filesystems[a].Dir, "/")
	})
	var errs []error
	for _, i := range order {
		m := &r.Filesystems[i]
		if err := unmount(m.Dir); err != nil {
			errs = append(errs, err)
			continue
		}
		m.Dir = ""
	}
	if len(errs) == 0 && len(r.teardown) > 0 {
		if err := stopVolumes(r.teardown); err != nil {
			errs = append(errs, err)
		}
		r.teardown = nil
	}
	return errors.Join(errs...)
}

// unmount unmounts dir, retrying briefly while it is busy; an error names what holds it.
func unmount(dir string) error {
	var err error
	for i := range 5 {
		if err = unix.Unmount(dir, 0); err == nil || !errors.Is(err, unix.EBUSY) {
			break
		}
		time.Sleep(time.Duration(i+1) * 50 * time.Millisecond)
	}
	if errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("unmount %s: %w (held by %s)", dir, err, busyHolders(dir))
	}
	if err != nil {
		return fmt.Errorf("unmount %s: %w", dir, err)
	}
	return nil
}

// busyHolders lists the open files and mounts below dir, for the error message.
func busyHolders(dir string) string {
	var out []string
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		fds, _ := os.ReadDir(filepath.Join("/proc", p.Name(), "fd"))
		for _, fd := range fds {
			if t, err := os.Readlink(filepath.Join("/proc", p.Name(), "fd", fd.Name())); err == nil && strings.HasPrefix(t, dir) {
				out = append(out, "pid "+p.Name()+" fd "+t)
			}
		}
		if cwd, err := os.Readlink(filepath.Join("/proc", p.Name(), "cwd")); err == nil && strings.HasPrefix(cwd, dir) {
			out = append(out, "pid "+p.Name()+" cwd "+cwd)
		}
	}
	if mounts, err := os.ReadFile("/proc/self/mounts"); err == nil {
		for _, l := range strings.Split(string(mounts), "\n") {
			if f := strings.Fields(l); len(f) > 1 && strings.HasPrefix(f[1], dir+"/") {
				out = append(out, "mount "+f[1])
			}
		}
	}
	if len(out) == 0 {
		return "nothing visible"
	}
	return strings.Join(out, ", ")
}

// mountOptions splits options into mount flags and the file system's data string.
func mountOptions(opts []string) (uintptr, string) {
	known := map[string]uintptr{"ro": unix.MS_RDONLY, "noatime": unix.MS_NOATIME, "nodiratime": unix.MS_NODIRATIME,
		"relatime": unix.MS_RELATIME, "nodev": unix.MS_NODEV, "noexec": unix.MS_NOEXEC, "nosuid": unix.MS_NOSUID, "sync": unix.MS_SYNCHRONOUS}
	var flags uintptr
	var data []string
	for _, o := range opts {
		switch f, ok := known[o]; {
		case ok:
			flags |= f
		case o == "defaults" || o == "rw" || o == "nofail" || o == "auto" || strings.HasPrefix(o, "x-"):
		default:
			data = append(data, o)
		}
	}
	return flags &^ unix.MS_RDONLY, strings.Join(data, ",") // the installer always needs to write
}
