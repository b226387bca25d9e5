package osinit

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultModules are the modules loaded before looking for the root device: virtio PCI, block and
// net (the net driver stays loaded for the installed OS), SCSI disks, ext4 and its crc32c. Missing
// ones are skipped with a warning, so the list may name more than one kernel build has.
func DefaultModules() []string {
	return []string{"virtio_pci", "virtio_blk", "virtio_scsi", "sd_mod", "virtio_net", "crc32c_generic", "ext4"}
}

// Config configures Run; zero fields take defaults.
type Config struct {
	// Cmdline is the kernel command line; /proc/cmdline if empty.
	Cmdline string
	// ModulesDir is /lib/modules/<running kernel release> by default.
	ModulesDir string
	// Modules are loaded with their dependencies; DefaultModules() if nil.
	Modules []string
	// NewRoot is where the root file system is mounted before switching (/newroot).
	NewRoot string
	// RootWait bounds the wait for the root device (60s).
	RootWait time.Duration
}

func (c Config) withDefaults() (Config, error) {
	if c.Cmdline == "" {
		b, err := os.ReadFile("/proc/cmdline")
		if err != nil {
			return c, fmt.Errorf("read kernel command line: %w", err)
		}
		c.Cmdline = string(b)
	}
	if c.ModulesDir == "" {
		var u unix.Utsname
		if err := unix.Uname(&u); err != nil {
			return c, fmt.Errorf("uname: %w", err)
		}
		c.ModulesDir = filepath.Join("/lib/modules", unix.ByteSliceToString(u.Release[:]))
	}
	if c.Modules == nil {
		c.Modules = DefaultModules()
	}
	if c.NewRoot == "" {
		c.NewRoot = "/newroot"
	}
	if c.RootWait <= 0 {
		c.RootWait = 60 * time.Second
	}
	return c, nil
}

// Run is the whole initrd: kernel file systems, console, modules, root device, switch root. It
// returns only on failure; on success the process has become the new root's init.
func Run(ctx context.Context, c Config, log *slog.Logger) error {
	start := time.Now()
	if err := MountKernelFS(); err != nil {
		return err
	}
	Console()
	c, err := c.withDefaults()
	if err != nil {
		return err
	}
	cl, err := ParseCmdline(c.Cmdline)
	if err != nil {
		return err
	}
	loadModules(c, log)
	wctx, cancel := context.WithTimeout(ctx, c.RootWait)
	defer cancel()
	dev, err := WaitRoot(wctx, "/sys/class/block", "/dev", cl.Root)
	if err != nil {
		return err
	}
	var flags uintptr
	if cl.ReadOnly {
		flags |= unix.MS_RDONLY
	}
	if err := os.MkdirAll(c.NewRoot, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", c.NewRoot, err)
	}
	if err := unix.Mount(dev, c.NewRoot, cl.RootFSType, flags, cl.RootFlags); err != nil {
		return fmt.Errorf("mount root %s (%s) on %s: %w", dev, cl.RootFSType, c.NewRoot, err)
	}
	if _, err := os.Lstat(filepath.Join(c.NewRoot, cl.Init)); err != nil {
		return fmt.Errorf("init of the new root: %w", err)
	}
	log.Info("switching root", "root", cl.Root, "device", dev, "init", cl.Init, "took", time.Since(start).Round(time.Millisecond))
	return SwitchRoot(c.NewRoot, cl.Init, log)
}

// loadModules loads c.Modules; failures are logged, the root mount reports what really matters.
func loadModules(c Config, log *slog.Logger) {
	mods, err := ReadModules(c.ModulesDir)
	if err != nil {
		log.Warn("no modules to load", "err", err)
		return
	}
	for _, name := range c.Modules {
		files, err := mods.LoadOrder(name)
		if err != nil {
			log.Warn("module skipped", "module", name, "err", err)
			continue
		}
		for _, f := range files {
			if err := LoadModule(f); err != nil {
				log.Warn("module load failed", "module", ModuleName(f), "err", err)
			}
		}
	}
}

// MountKernelFS mounts devtmpfs on /dev, proc on /proc and sysfs on /sys; mounted ones are fine.
func MountKernelFS() error {
	mounts := []struct {
		fstype, target string
		flags          uintptr
	}{
		{"devtmpfs", "/dev", unix.MS_NOSUID},
		{"proc", "/proc", unix.MS_NOSUID | unix.MS_NOEXEC | unix.MS_NODEV},
		{"sysfs", "/sys", unix.MS_NOSUID | unix.MS_NOEXEC | unix.MS_NODEV},
	}
	for _, m := range mounts {
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", m.target, err)
		}
		err := unix.Mount(m.fstype, m.target, m.fstype, m.flags, "")
		if err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.target, err)
		}
	}
	return nil
}

// Console makes sure file descriptors 0-2 are open: without a /dev/console node in the initrd the
// kernel starts init without them, and a PID 1 without output cannot say why it failed.
func Console() {
	if _, err := unix.FcntlInt(2, unix.F_GETFD, 0); err == nil {
		return
	}
	fd, err := unix.Open("/dev/console", unix.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return
	}
	for i := 0; i < 3; i++ {
		if i != fd {
			_ = unix.Dup3(fd, i, 0)
		}
	}
	if fd > 2 {
		unix.Close(fd)
	}
}

// SwitchRoot moves /dev, /proc and /sys into newRoot, frees the initramfs, makes newRoot the root
// and execs init in it. It refuses to run unless / is an initramfs (ramfs or tmpfs).
func SwitchRoot(newRoot, init string, log *slog.Logger) error {
	var st unix.Statfs_t
	if err := unix.Statfs("/", &st); err != nil {
		return fmt.Errorf("switch root: %w", err)
	}
	if st.Type != unix.RAMFS_MAGIC && st.Type != unix.TMPFS_MAGIC {
		return fmt.Errorf("switch root: / is not an initramfs (type %#x)", st.Type)
	}
	for _, m := range []string{"/dev", "/proc", "/sys"} {
		target := filepath.Join(newRoot, m)
		if err := os.MkdirAll(target, 0o755); err != nil {
			return fmt.Errorf("switch root: %w", err)
		}
		if err := unix.Mount(m, target, "", unix.MS_MOVE, ""); err != nil {
			log.Warn("move mount failed, unmounting", "mount", m, "err", err)
			_ = unix.Unmount(m, unix.MNT_DETACH)
		}
	}
	if err := freeInitramfs(newRoot); err != nil {
		log.Warn("free initramfs failed", "err", err)
	}
	if err := unix.Chdir(newRoot); err != nil {
		return fmt.Errorf("switch root: %w", err)
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("switch root: move %s to /: %w", newRoot, err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("switch root: chroot: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("switch root: %w", err)
	}
	env := os.Environ()
	if err := unix.Exec(init, []string{init}, env); err != nil {
		return fmt.Errorf("switch root: exec %s: %w", init, err)
	}
	return nil
}

// freeInitramfs deletes the initramfs' files (they hold RAM for good otherwise), staying on its
// device: mount points such as newRoot are skipped.
func freeInitramfs(newRoot string) error {
	var root unix.Stat_t
	if err := unix.Lstat("/", &root); err != nil {
		return err
	}
	var dirs []string
	err := filepath.WalkDir("/", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if path == newRoot || strings.HasPrefix(path, newRoot+"/") {
			return filepath.SkipDir
		}
		var st unix.Stat_t
		if unix.Lstat(path, &st) != nil || st.Dev != root.Dev {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			if path != "/" {
				dirs = append(dirs, path)
			}
			return nil
		}
		return os.Remove(path)
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		_ = os.Remove(dirs[i]) // mount points (/dev, ...) stay
	}
	return err
}
