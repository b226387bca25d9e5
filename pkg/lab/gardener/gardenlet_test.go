package gardener_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/metalforge/metalforge/pkg/lab/gardener"
)

// TestLoadManifestsStrict: the example manifests decode into gardener's types, and a misspelt
// field in any of them is an error, not silently dropped.
func TestLoadManifestsStrict(t *testing.T) {
	m, err := gardener.LoadManifests(exampleGardener)
	check(t, err)
	g := &gardener.Gardenlet{Manifests: m, UID: "uid"}
	if got, want := g.Namespace(), "shoot--demo--demo"; got != want {
		t.Errorf("namespace %q, want %q", got, want)
	}
	for _, tc := range []struct{ file, old, new string }{
		{"shoot.yaml", "  purpose: evaluation", "  purpose: evaluation\n  porpose: typo"},
		{"cloudprofile.yaml", "  type: metal", "  type: metal\n  flavour: x"},
		{"seed.yaml", "    region: lab", "    region: lab\n    regio: lab"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range []string{"shoot.yaml", "cloudprofile.yaml", "seed.yaml"} {
				raw, err := os.ReadFile(filepath.Join(exampleGardener, f))
				check(t, err)
				s := string(raw)
				if f == tc.file {
					if !strings.Contains(s, tc.old) {
						t.Fatalf("%s lacks %q", f, tc.old)
					}
					s = strings.Replace(s, tc.old, tc.new, 1)
				}
				check(t, os.WriteFile(filepath.Join(dir, f), []byte(s), 0o644))
			}
			if _, err := gardener.LoadManifests(dir); err == nil || !strings.Contains(err.Error(), tc.file) {
				t.Errorf("LoadManifests with an unknown field in %s: %v, want an error naming the file", tc.file, err)
			}
		})
	}
}
