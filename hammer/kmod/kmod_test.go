package kmod

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestName(t *testing.T) {
	for in, want := range map[string]string{"kernel/fs/ext4/ext4.ko.xz": "ext4", "virtio-rng.ko": "virtio_rng", "a/b/crc32c_generic.ko.zst": "crc32c_generic"} {
		if got := Name(in); got != want {
			t.Errorf("Name(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestOrder(t *testing.T) {
	deps, err := ReadDeps("testdata")
	if err != nil {
		t.Fatal(err)
	}
	got, err := deps.Order([]string{"virtio_net", "virtio_pci", "ext4"})
	if err != nil {
		t.Fatal(err)
	}
	// Every module after its dependencies, each once.
	pos := map[string]int{}
	for i, n := range got {
		if _, dup := pos[n]; dup {
			t.Errorf("%s loaded twice", n)
		}
		pos[n] = i
	}
	for _, n := range got {
		for _, d := range deps[n].Deps {
			if pos[d] > pos[n] {
				t.Errorf("%s comes before its dependency %s: %v", n, d, got)
			}
		}
	}
	if len(got) != 12 {
		t.Errorf("order = %v, want 12 modules", got)
	}
	if _, err := deps.Order([]string{"nonexistent"}); err == nil {
		t.Error("unknown module: want error")
	}
	deps["failover"] = Module{Name: "failover", Deps: []string{"virtio_net"}}
	if _, err := deps.Order([]string{"virtio_net"}); err == nil || !strings.Contains(err.Error(), "cycle") {
		t.Errorf("cycle: %v", err)
	}
}

func TestLoadAll(t *testing.T) {
	var calls []string
	compressed := map[string]bool{}
	loaded, err := LoadAll(Config{
		Dir:   "testdata",
		First: []string{"crc32c_generic", "not_shipped"},
		Finit: func(path string, c bool) error {
			n := Name(path)
			calls = append(calls, n)
			compressed[filepath.Base(path)] = c
			switch n {
			case "ipmi_msghandler":
				return unix.ENODEV // no BMC: its dependants are skipped
			case "virtio":
				return unix.EEXIST // already loaded counts as loaded
			}
			return nil
		},
	})
	if calls[0] != "crc32c_generic" {
		t.Errorf("first load %s, want crc32c_generic", calls[0])
	}
	if !errors.Is(err, unix.ENODEV) || !strings.Contains(err.Error(), "ipmi_si: a dependency failed") {
		t.Errorf("err = %v", err)
	}
	if slices.Contains(calls, "ipmi_si") || slices.Contains(calls, "ipmi_devintf") {
		t.Errorf("modules depending on a failed one were loaded: %v", calls)
	}
	if !slices.Contains(loaded, "virtio") || len(loaded) != 15 {
		t.Errorf("loaded = %v (%d)", loaded, len(loaded))
	}
	if !compressed["ext4.ko.xz"] || compressed["plain-module.ko"] {
		t.Errorf("compressed flags = %v", compressed)
	}
}
