package deptest

import (
	"encoding/json"
	"go/parser"
	"go/token"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/metalforge/metalforge"

type pkg struct {
	ImportPath string
	Dir        string
	Standard   bool
	Deps       []string
	GoFiles    []string
}

// list runs `go list -json` with the given arguments from the module root.
func list(t *testing.T, args ...string) []pkg {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list", "-e", "-json"}, args...)...)
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %v: %v", args, err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	var ps []pkg
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	return ps
}

// forbidden import path prefixes per package (or binary) and for everything.
var (
	everywhere = []string{"github.com/metal-stack/"}
	rules      = map[string][]string{
		// Wire types: the standard library only.
		module + "/pkg/api": {"!std"},
		// Partition components, the hammer and the installed OS's agents never import Kubernetes or
		// a store implementation (pkg/store itself is interfaces and sentinel errors only).
		module + "/pkg/bootrpc":         {"k8s.io/", "sigs.k8s.io/", module + "/pkg/store/"},
		module + "/cmd/metalctl":        {"k8s.io/", module + "/pkg/store/"},
		module + "/hammer":              {"k8s.io/", "sigs.k8s.io/", module + "/pkg/store/"},
		module + "/cmd/boot-server":     {"k8s.io/", "sigs.k8s.io/", module + "/pkg/store/"},
		module + "/cmd/bmc-agent":       {"k8s.io/", "sigs.k8s.io/", module + "/pkg/store/"},
		module + "/cmd/metal-phonehome": {"k8s.io/", "sigs.k8s.io/", module + "/pkg/store/"},
		module + "/cmd/metal-osinit":    {"k8s.io/", "sigs.k8s.io/", module + "/pkg/store"},
		module + "/cmd/switch-agent":    {"k8s.io/", "sigs.k8s.io/", module + "/pkg/store/"},
		// Cluster components talk to metal-api through its client only.
		module + "/pkg/ccm":        {module + "/pkg/store"},
		module + "/pkg/autoscaler": {module + "/pkg/store"},
		// The provider config API stays light: apimachinery only, no Gardener or controller-runtime.
		module + "/pkg/apis/metal": {"github.com/gardener/", "sigs.k8s.io/controller-runtime", "k8s.io/client-go", "k8s.io/apiserver", module + "/pkg/store"},
	}
)

func TestImports(t *testing.T) {
	all := list(t, "-deps=false", "./...")
	stdOf := map[string]bool{}
	for _, p := range list(t, "-deps", "./...") {
		stdOf[p.ImportPath] = p.Standard
	}
	for _, p := range all {
		for _, d := range p.Deps {
			for _, bad := range everywhere {
				if strings.HasPrefix(d, bad) {
					t.Errorf("%s depends on %s: metalforge builds its own", p.ImportPath, d)
				}
			}
		}
		for prefix, bans := range rules {
			if p.ImportPath != prefix && !strings.HasPrefix(p.ImportPath, prefix+"/") {
				continue
			}
			for _, d := range p.Deps {
				for _, bad := range bans {
					switch {
					case bad == "!std":
						if !stdOf[d] && !strings.HasPrefix(d, module+"/pkg/api") {
							t.Errorf("%s imports %s: only the standard library is allowed", p.ImportPath, d)
						}
					case strings.HasPrefix(d, bad):
						t.Errorf("%s imports %s, which it must not", p.ImportPath, d)
					}
				}
			}
		}
	}
}

// TestPackageDocs: every package has a doc comment saying what it is for.
func TestPackageDocs(t *testing.T) {
	for _, p := range list(t, "./...") {
		if len(p.GoFiles) == 0 {
			continue
		}
		documented := false
		for _, f := range p.GoFiles {
			file, err := parser.ParseFile(token.NewFileSet(), filepath.Join(p.Dir, f), nil, parser.PackageClauseOnly|parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			if file.Doc != nil && strings.TrimSpace(file.Doc.Text()) != "" {
				documented = true
				break
			}
		}
		if !documented {
			t.Errorf("package %s has no doc comment", p.ImportPath)
		}
	}
}
