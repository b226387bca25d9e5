package nos

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/metalforge/metalforge/switch-agent/render"
)

type fakeFRR struct{ reloads [][]byte }

func (f *fakeFRR) Reload(_ context.Context, conf []byte) error {
	f.reloads = append(f.reloads, conf)
	return nil
}

func (f *fakeFRR) ShowJSON(context.Context, string, any) error { return nil }

func TestApply(t *testing.T) {
	root := t.TempDir()
	marker := filepath.Join(root, "ifreloads")
	frr := &fakeFRR{}
	d, err := New(Config{Root: root, FRR: frr, IfReload: []string{"sh", "-c", "echo x >> " + marker}})
	if err != nil {
		t.Fatal(err)
	}
	c := &render.Config{FRR: []byte("frr defaults datacenter\n"), Files: []render.File{
		{Path: render.CumulusFRRPath, Data: []byte("frr defaults datacenter\n")},
		{Path: render.CumulusInterfacesPath, Data: []byte("auto lo\n")},
	}}
	for range 2 {
		if err := d.Apply(context.Background(), c); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(filepath.Join(root, render.CumulusInterfacesPath))
	if err != nil || string(got) != "auto lo\n" {
		t.Fatalf("interfaces file: %q, %v", got, err)
	}
	runs, _ := os.ReadFile(marker)
	if n := strings.Count(string(runs), "x"); n != 1 {
		t.Errorf("ifreload ran %d times for one change, want 1", n)
	}
	if len(frr.reloads) != 2 {
		t.Errorf("frr reloaded %d times, want every apply (2)", len(frr.reloads))
	}
	c.Files[1].Data = []byte("auto lo\nauto swp1\n")
	if err := d.Apply(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	if runs, _ := os.ReadFile(marker); strings.Count(string(runs), "x") != 2 {
		t.Errorf("ifreload did not run after the interfaces changed")
	}
	entries, _ := os.ReadDir(filepath.Join(root, "etc/network"))
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
}

func TestApplyFailingIfReload(t *testing.T) {
	root := t.TempDir()
	fail := filepath.Join(root, "fail")
	if err := os.WriteFile(fail, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// ifreload fails while the file "fail" exists.
	d, err := New(Config{Root: root, FRR: &fakeFRR{}, IfReload: []string{"sh", "-c", "test ! -e " + fail}})
	if err != nil {
		t.Fatal(err)
	}
	c := &render.Config{Files: []render.File{{Path: render.CumulusInterfacesPath, Data: []byte("x")}}}
	if err := d.Apply(context.Background(), c); err == nil {
		t.Fatal("a failing ifreload was not reported")
	}
	if err := d.Apply(context.Background(), c); err == nil {
		t.Fatal("ifreload was not retried although the last one failed")
	}
	os.Remove(fail)
	if err := d.Apply(context.Background(), c); err != nil {
		t.Fatalf("retry after the failure was fixed: %v", err)
	}
}
