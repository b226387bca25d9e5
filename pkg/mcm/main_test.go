package mcm_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"

	"github.com/metalforge/metalforge/pkg/kubetest"
	"github.com/metalforge/metalforge/pkg/mcm/mcmtest"
)

// env is the package's control plane with MCM's CRDs: set once by TestMain, only read by tests.
var env *kubetest.Env

func TestMain(m *testing.M) {
	// The MCM processes of TestMachineDeployment are this binary again (see mcmtest).
	if code, ok := mcmtest.RunChild(); ok {
		os.Exit(code)
	}
	if os.Getenv("METALFORGE_KLOG") == "" {
		klog.SetLogger(logr.Discard())
	}
	crds, err := mcmCRDs()
	if err != nil {
		fmt.Fprintf(os.Stderr, "mcm tests: %v\n", err)
		os.Exit(1)
	}
	os.Exit(kubetest.Main(m, kubetest.Options{CRDDirs: crds}, &env))
}

// mcmCRDs are the machine.sapcloud.io CRDs in MCM's module (the version go.mod requires).
func mcmCRDs() ([]string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/gardener/machine-controller-manager").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, ee.Stderr)
		}
		return nil, fmt.Errorf("find the machine-controller-manager module: %w", err)
	}
	files, err := filepath.Glob(filepath.Join(strings.TrimSpace(string(out)), "kubernetes", "crds", "machine.sapcloud.io_*.yaml"))
	if err != nil || len(files) != 4 {
		return nil, fmt.Errorf("want MCM's 4 CRDs, found %v (%v)", files, err)
	}
	return files, nil
}
