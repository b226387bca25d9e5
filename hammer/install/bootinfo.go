package install

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/metalforge/metalforge/pkg/api"
)

// BootOptions describe the installed OS for BootInfo.
type BootOptions struct {
	// RootUUID is the UUID of the root file system.
	RootUUID string
	// Args are appended to "root=UUID=<uuid> rw", e.g. console=ttyS0 and the kept mf.api=.
	Args        []string
	ImageID     string
	PrimaryDisk string
	OSPartition string
}

// FindBootInfo finds the newest kernel in /boot of the target (vmlinuz-<version>, with
// initrd.img-<version>), falling back to the /vmlinuz and /initrd.img links. Kernel and Initrd
// are paths inside the target.
func FindBootInfo(target string, opts BootOptions) (api.BootInfo, error) {
	if opts.RootUUID == "" {
		return api.BootInfo{}, fmt.Errorf("find boot info: no root file system uuid")
	}
	root, err := os.OpenRoot(target)
	if err != nil {
		return api.BootInfo{}, fmt.Errorf("find boot info: %w", err)
	}
	defer root.Close()
	kernel, initrd, err := findKernel(root)
	if err != nil {
		return api.BootInfo{}, fmt.Errorf("find boot info in %s: %w", target, err)
	}
	cmdline := append([]string{"root=UUID=" + opts.RootUUID, "rw"}, opts.Args...)
	return api.BootInfo{
		ImageID:     opts.ImageID,
		PrimaryDisk: opts.PrimaryDisk,
		OSPartition: opts.OSPartition,
		Kernel:      kernel,
		Initrd:      initrd,
		Cmdline:     strings.Join(cmdline, " "),
	}, nil
}

func findKernel(root *os.Root) (string, string, error) {
	var versions []string
	if ents, err := fs.ReadDir(root.FS(), "boot"); err == nil {
		for _, e := range ents {
			if v, ok := strings.CutPrefix(e.Name(), "vmlinuz-"); ok && e.Type().IsRegular() {
				versions = append(versions, v)
			}
		}
	}
	slices.SortFunc(versions, compareVersions)
	for i := len(versions) - 1; i >= 0; i-- {
		v := versions[i]
		initrd := "/boot/initrd.img-" + v
		if !regular(root, initrd) {
			continue // a kernel without an initrd does not boot a Debian root from disk
		}
		return "/boot/vmlinuz-" + v, initrd, nil
	}
	kernel, kerr := link(root, "vmlinuz")
	initrd, ierr := link(root, "initrd.img")
	if kerr == nil && ierr == nil {
		return kernel, initrd, nil
	}
	return "", "", fmt.Errorf("no /boot/vmlinuz-* with an initrd.img and no /vmlinuz and /initrd.img links")
}

func regular(root *os.Root, name string) bool {
	fi, err := root.Stat(strings.TrimPrefix(name, "/"))
	return err == nil && fi.Mode().IsRegular()
}

// link resolves a top-level symlink like /vmlinuz -> boot/vmlinuz-6.1.0-28-amd64 inside the
// root and checks that it leads to a regular file.
func link(root *os.Root, name string) (string, error) {
	target, err := root.Readlink(name)
	if err != nil {
		return "", err
	}
	p := target
	if !path.IsAbs(p) {
		p = path.Join("/", p)
	}
	p = path.Clean(p)
	if !regular(root, p) {
		return "", fmt.Errorf("%s -> %s is not a regular file", name, target)
	}
	return p, nil
}

// compareVersions orders kernel versions by their numeric fields: 6.1.0-9 < 6.1.0-28 < 6.12.1.
func compareVersions(a, b string) int {
	fa, fb := versionFields(a), versionFields(b)
	for i := range min(len(fa), len(fb)) {
		na, ea := strconv.Atoi(fa[i])
		nb, eb := strconv.Atoi(fb[i])
		switch {
		case ea == nil && eb == nil && na != nb:
			return na - nb
		case ea != nil || eb != nil:
			if c := strings.Compare(fa[i], fb[i]); c != 0 {
				return c
			}
		}
	}
	return len(fa) - len(fb)
}

func versionFields(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool { return r == '.' || r == '-' || r == '+' || r == '~' })
}
