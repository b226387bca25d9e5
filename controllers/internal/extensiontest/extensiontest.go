// Package extensiontest holds the scaffolding the tests of metalforge's Gardener extension
// controllers (controllers/controlplane, controllers/healthcheck, controllers/worker) share: the
// paths of CRD manifests in Go modules for TestMain, the controllers' test logger, a scheme, a
// client and a controller-runtime manager run against the package's kube-apiserver until the test
// ends (polling is clienttest.WaitFor). The fixtures (metal-api, Gardener objects) stay in the
// packages and in controllers/infrastructure/infratest.
package extensiontest

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// ModuleFiles returns the paths of files in a module of the build list (e.g. CRD manifests that
// gardener or machine-controller-manager ship), for kubetest.Options.CRDDirs.
func ModuleFiles(module string, paths ...string) ([]string, error) {
	dir, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", module).Output()
	if err != nil {
		return nil, fmt.Errorf("find module %s: %w", module, err)
	}
	out := make([]string, 0, len(paths))
	for _, p := range paths {
		out = append(out, filepath.Join(strings.TrimSpace(string(dir)), p))
	}
	return out, nil
}

// Log is the logger the controllers get in tests: discarded unless METALFORGE_LOG is set.
func Log() logr.Logger {
	if os.Getenv("METALFORGE_LOG") == "" {
		return logr.Discard()
	}
	return logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, nil))
}

// Scheme is client-go's scheme with the API groups adds register.
func Scheme(t testing.TB, adds ...func(*runtime.Scheme) error) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	for _, add := range append([]func(*runtime.Scheme) error{clientgoscheme.AddToScheme}, adds...) {
		if err := add(s); err != nil {
			t.Fatalf("build scheme: %v", err)
		}
	}
	return s
}

// Client is a client of cfg's API server with scheme.
func Client(t testing.TB, cfg *rest.Config, scheme *runtime.Scheme) client.Client {
	t.Helper()
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	return c
}

// StartManager runs a manager against cfg with the controllers add registers until the test
// ends, and fails the test when the manager returns an error. Metrics and health probes are off;
// controller names may repeat, so each test can run its own manager.
func StartManager(t testing.TB, cfg *rest.Config, scheme *runtime.Scheme, add func(context.Context, manager.Manager) error) {
	t.Helper()
	mgr, err := manager.New(cfg, manager.Options{
		Scheme:                 scheme,
		Logger:                 Log(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: new(true)},
	})
	if err != nil {
		t.Fatalf("new manager: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := add(ctx, mgr); err != nil {
		cancel()
		t.Fatalf("add controllers: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
}
