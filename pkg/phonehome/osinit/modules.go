package osinit

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Modules is a parsed modules.dep plus modules.builtin of one kernel.
type Modules struct {
	// Dir is /lib/modules/<version>; paths in modules.dep are relative to it.
	Dir string
	// deps maps a module name to its file and its dependencies' names.
	deps    map[string]moduleEntry
	builtin map[string]bool
}

type moduleEntry struct {
	path string
	deps []string
}

// ModuleName normalises a module file or name: "kernel/fs/ext4/ext4.ko" and "crc32c-generic"
// become "ext4" and "crc32c_generic".
func ModuleName(s string) string {
	s = filepath.Base(s)
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		s = strings.TrimSuffix(s, ext)
	}
	s = strings.TrimSuffix(s, ".ko")
	return strings.ReplaceAll(s, "-", "_")
}

// ReadModules reads dir/modules.dep and, if present, dir/modules.builtin.
func ReadModules(dir string) (*Modules, error) {
	f, err := os.Open(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("read modules: %w", err)
	}
	defer f.Close()
	m := &Modules{Dir: dir, builtin: map[string]bool{}}
	if m.deps, err = ParseModulesDep(f); err != nil {
		return nil, err
	}
	if b, err := os.Open(filepath.Join(dir, "modules.builtin")); err == nil {
		defer b.Close()
		s := bufio.NewScanner(b)
		for s.Scan() {
			if line := strings.TrimSpace(s.Text()); line != "" {
				m.builtin[ModuleName(line)] = true
			}
		}
		if err := s.Err(); err != nil {
			return nil, fmt.Errorf("read modules.builtin: %w", err)
		}
	}
	return m, nil
}

// ParseModulesDep parses depmod's modules.dep: "path: dep-path dep-path ...".
func ParseModulesDep(r io.Reader) (map[string]moduleEntry, error) {
	out := map[string]moduleEntry{}
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 64*1024), 1024*1024)
	for n := 1; s.Scan(); n++ {
		line := strings.TrimSpace(s.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		path, rest, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("modules.dep line %d: no colon", n)
		}
		e := moduleEntry{path: path}
		for _, d := range strings.Fields(rest) {
			e.deps = append(e.deps, ModuleName(d))
		}
		out[ModuleName(path)] = e
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("read modules.dep: %w", err)
	}
	return out, nil
}

// LoadOrder returns the files to load for the named modules, dependencies first, each once.
// Built-in modules are skipped; an unknown module is an error.
func (m *Modules) LoadOrder(names ...string) ([]string, error) {
	var order []string
	seen := map[string]bool{}
	var visit func(name string, stack []string) error
	visit = func(name string, stack []string) error {
		name = ModuleName(name)
		if seen[name] || m.builtin[name] {
			return nil
		}
		for _, s := range stack {
			if s == name {
				return fmt.Errorf("module dependency cycle: %s", strings.Join(append(stack, name), " -> "))
			}
		}
		e, ok := m.deps[name]
		if !ok {
			return fmt.Errorf("module %s is not in %s/modules.dep", name, m.Dir)
		}
		// modules.dep lists the dependencies so that the last one is loaded first (modprobe order).
		for i := len(e.deps) - 1; i >= 0; i-- {
			if err := visit(e.deps[i], append(stack, name)); err != nil {
				return err
			}
		}
		seen[name] = true
		order = append(order, filepath.Join(m.Dir, e.path))
		return nil
	}
	for _, n := range names {
		if err := visit(n, nil); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// LoadModule loads one module file with finit_module. A module that is loaded already is fine.
// Compressed files are handed to the kernel to decompress (MODULE_INIT_COMPRESSED_FILE).
func LoadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("load module: %w", err)
	}
	defer f.Close()
	flags := 0
	if !strings.HasSuffix(path, ".ko") {
		flags |= unix.MODULE_INIT_COMPRESSED_FILE
	}
	if err := unix.FinitModule(int(f.Fd()), "", flags); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("load module %s: %w", filepath.Base(path), err)
	}
	return nil
}
