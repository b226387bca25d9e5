package phonehome_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestBinaryImports keeps the binaries that go into machine images small and free of the control
// plane: no Kubernetes, no store implementation, no SQL driver; the initrd's init uses the
// standard library and x/sys only, plus pkg/api and pkg/frr for the firewall's first-boot setup
// (both of which use the standard library only, which the listing of every dependency checks).
func TestBinaryImports(t *testing.T) {
	const module = "github.com/metalforge/metalforge"
	tests := []struct {
		pkg     string
		allowed func(dep string) bool
	}{
		{"./cmd/metal-phonehome", func(d string) bool {
			for _, bad := range []string{"k8s.io/", "sigs.k8s.io/", module + "/pkg/store/", "modernc.org/", "github.com/jackc/"} {
				if strings.HasPrefix(d, bad) {
					return false
				}
			}
			return true
		}},
		{"./cmd/metal-osinit", func(d string) bool {
			return !strings.Contains(strings.Split(d, "/")[0], ".") || strings.HasPrefix(d, "golang.org/x/sys/") ||
				strings.HasPrefix(d, module+"/pkg/phonehome/osinit") || d == module+"/cmd/metal-osinit" ||
				d == module+"/pkg/api" || d == module+"/pkg/frr"
		}},
	}
	for _, tt := range tests {
		cmd := exec.Command("go", "list", "-deps", tt.pkg)
		cmd.Dir = "../.."
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", tt.pkg, err)
		}
		n := 0
		for _, d := range strings.Fields(string(out)) {
			n++
			if !tt.allowed(d) {
				t.Errorf("%s depends on %s", tt.pkg, d)
			}
		}
		if n < 10 {
			t.Errorf("%s: only %d dependencies listed, go list output looks wrong", tt.pkg, n)
		}
	}
}
