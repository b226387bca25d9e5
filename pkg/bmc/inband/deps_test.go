package inband

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps keeps the package linkable into the hammer: the standard library, x/sys, the wire types
// and the vendor names only.
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	allowed := []string{"golang.org/x/sys", "github.com/metalforge/metalforge/pkg/api",
		"github.com/metalforge/metalforge/pkg/bmc/vendor", "github.com/metalforge/metalforge/pkg/bmc/inband"}
	for _, d := range strings.Fields(string(out)) {
		ok := false
		for _, a := range allowed {
			ok = ok || d == a || strings.HasPrefix(d, a+"/")
		}
		if !ok {
			t.Errorf("pkg/bmc/inband depends on %s", d)
		}
	}
}
