// Package kmod loads kernel modules the way modprobe would, without modprobe: it reads
// modules.dep (written by depmod) and loads each module after its dependencies with
// finit_module(2). The hammer initramfs carries only the modules it needs, so it loads them all.
package kmod

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// Config says where the modules are and how to load one.
type Config struct {
	// Dir is the module directory with modules.dep, e.g. /lib/modules/6.1.0-28-amd64; "" is the
	// directory of the running kernel.
	Dir string
	// First are module names loaded before all others, for dependencies modules.dep does not
	// record (ext4 needs the crc32c crypto driver, a soft dependency).
	First []string
	// Finit loads one module file; nil uses finit_module(2).
	Finit func(path string, compressed bool) error
	Log   *slog.Logger
}

// Deps maps a module name (underscores, no suffix) to its file and dependencies.
type Deps map[string]Module

// Module is one line of modules.dep.
type Module struct {
	Name string
	Path string   // relative to the module directory
	Deps []string // names, as listed (modprobe loads them last to first)
}

// Name turns a module file name into a module name: kernel/fs/ext4/ext4.ko.xz -> ext4,
// virtio-rng.ko -> virtio_rng.
func Name(path string) string {
	base := filepath.Base(path)
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return strings.ReplaceAll(base, "-", "_")
}

// ReadDeps parses modules.dep in dir.
func ReadDeps(dir string) (Deps, error) {
	f, err := os.Open(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("read modules.dep: %w", err)
	}
	defer f.Close()
	deps := Deps{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		file, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		m := Module{Name: Name(file), Path: file}
		for _, d := range strings.Fields(rest) {
			m.Deps = append(m.Deps, Name(d))
		}
		deps[m.Name] = m
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read modules.dep: %w", err)
	}
	return deps, nil
}

// Order returns names and all their dependencies, each after its dependencies, each once.
// Unknown names are an error.
func (d Deps) Order(names []string) ([]string, error) {
	var out []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(string, []string) error
	visit = func(n string, chain []string) error {
		switch state[n] {
		case 2:
			return nil
		case 1:
			return fmt.Errorf("dependency cycle: %s", strings.Join(append(chain, n), " -> "))
		}
		m, ok := d[n]
		if !ok {
			return fmt.Errorf("module %s is not in modules.dep", n)
		}
		state[n] = 1
		// modules.dep lists the deepest dependency last; load from the end like modprobe.
		for i := len(m.Deps) - 1; i >= 0; i-- {
			if err := visit(m.Deps[i], append(chain, n)); err != nil {
				return err
			}
		}
		state[n] = 2
		out = append(out, n)
		return nil
	}
	for _, n := range names {
		if err := visit(strings.ReplaceAll(n, "-", "_"), nil); err != nil {
			return out, err
		}
	}
	return out, nil
}

// LoadAll loads cfg.First and then every module of modules.dep in dependency order. A module
// that fails (no such hardware, ENODEV) does not stop the others; the errors are returned
// joined, with the names that did load.
func LoadAll(cfg Config) ([]string, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Dir == "" {
		var u unix.Utsname
		if err := unix.Uname(&u); err != nil {
			return nil, fmt.Errorf("load modules: %w", err)
		}
		cfg.Dir = filepath.Join("/lib/modules", unix.ByteSliceToString(u.Release[:]))
	}
	if cfg.Finit == nil {
		cfg.Finit = finit
	}
	deps, err := ReadDeps(cfg.Dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, n := range cfg.First {
		if _, ok := deps[n]; ok { // built in, or not shipped: nothing to load
			names = append(names, n)
		}
	}
	rest := make([]string, 0, len(deps))
	for n := range deps {
		rest = append(rest, n)
	}
	slices.Sort(rest)
	order, err := deps.Order(append(names, rest...))
	if err != nil {
		return nil, fmt.Errorf("load modules: %w", err)
	}
	var loaded []string
	var errs []error
	failed := map[string]bool{}
	for _, n := range order {
		m := deps[n]
		if slices.ContainsFunc(m.Deps, func(d string) bool { return failed[d] }) {
			failed[n] = true
			errs = append(errs, fmt.Errorf("%s: a dependency failed", n))
			continue
		}
		compressed := !strings.HasSuffix(m.Path, ".ko")
		err := cfg.Finit(filepath.Join(cfg.Dir, m.Path), compressed)
		switch {
		case err == nil || errors.Is(err, unix.EEXIST):
			loaded = append(loaded, n)
		default:
			failed[n] = true
			errs = append(errs, fmt.Errorf("%s: %w", n, err))
			cfg.Log.Warn("module not loaded", "module", n, "err", err)
		}
	}
	cfg.Log.Info("modules loaded", "count", len(loaded), "failed", len(failed))
	return loaded, errors.Join(errs...)
}

func finit(path string, compressed bool) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	flags := 0
	if compressed {
		flags = unix.MODULE_INIT_COMPRESSED_FILE
	}
	return unix.FinitModule(int(f.Fd()), "", flags)
}
