package mcm_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	mcmapp "github.com/gardener/machine-controller-manager/cmd/machine-controller-manager/app"
	mcmoptions "github.com/gardener/machine-controller-manager/cmd/machine-controller-manager/app/options"
	"github.com/go-logr/logr"
	"github.com/spf13/pflag"
	"k8s.io/component-base/logs"
	"k8s.io/klog/v2"

	"github.com/metalforge/metalforge/pkg/kubetest"
	"github.com/metalforge/metalforge/pkg/mcm"
)

// env is the package's control plane with MCM's CRDs: set once by TestMain, only read by tests.
var env *kubetest.Env

// childEnv makes the test binary one of MCM's controllers instead of running tests. MCM's app.Run
// functions take no context and never return, and they own global flag and klog state, so each runs
// in its own process: the test starts this binary again and kills it by PID when it is done.
const childEnv = "METALFORGE_MCM_CHILD"

// The children.
const (
	childProvider = "provider" // MCM's provider-side machine controller with the metal driver (mcm.Main)
	childMCM      = "mcm"      // MCM's machine-deployment and machine-set controllers (its cmd/machine-controller-manager)
)

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case childProvider:
		os.Exit(mcm.Main("machine-controller-manager-provider-metal", os.Args[1:], os.Stderr))
	case childMCM:
		os.Exit(runMCM(os.Args[1:]))
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

// runMCM is the main of MCM's cmd/machine-controller-manager, on a flag set of its own.
func runMCM(args []string) int {
	fs := pflag.NewFlagSet("machine-controller-manager", pflag.ContinueOnError)
	s := mcmoptions.NewMCMServer()
	s.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		fmt.Fprintf(os.Stderr, "machine-controller-manager: %v\n", err)
		return 2
	}
	logs.InitLogs()
	defer logs.FlushLogs()
	if err := mcmapp.Run(s); err != nil {
		fmt.Fprintf(os.Stderr, "machine-controller-manager: %v\n", err)
		return 1
	}
	return 0
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
