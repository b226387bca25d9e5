// Package kubetest runs a real Kubernetes control plane (kube-apiserver and etcd, through
// controller-runtime's envtest) for the tests of controllers: one per test package, started from
// TestMain, with the package's CRDs installed from manifests in the repository.
//
// The binaries are built from source by hack/kube.sh into a cache directory outside the repository
// (see that script); KUBEBUILDER_ASSETS, when set, names another directory with kube-apiserver and
// etcd. When the cache is empty, Start runs hack/kube.sh itself (about 5 minutes on 2 cores, once per
// machine) unless METALFORGE_KUBE_BUILD=0, in which case it fails and says which command to run.
//
//	var env *kubetest.Env // set by TestMain, read-only in tests
//
//	func TestMain(m *testing.M) {
//		os.Exit(kubetest.Main(m, kubetest.Options{CRDDirs: []string{"testdata/crds"}}, &env))
//	}
package kubetest

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// Options configure the control plane.
type Options struct {
	// CRDDirs are directories (or files) of CRD manifests to install; relative paths are relative to
	// the test's working directory, i.e. its package directory. A missing path is an error.
	CRDDirs []string
	// StartTimeout bounds the start of each component (default 60s: CI machines are slow and the
	// first start after a build pays for page-cache misses).
	StartTimeout time.Duration
	// Log receives the timings and the build progress (default: text to stderr).
	Log *slog.Logger
	// Attach copies the output of kube-apiserver and etcd to stdout/stderr, for debugging.
	Attach bool
}

// Env is a running control plane.
type Env struct {
	// Config is an admin rest.Config for the API server.
	Config *rest.Config
	// Client is a controller-runtime client with client-go's scheme.
	Client client.Client
	// Kube is a typed client-go clientset, Dynamic an untyped one.
	Kube    kubernetes.Interface
	Dynamic dynamic.Interface
	// Assets is the directory the binaries came from.
	Assets string
	// Started is how long the control plane (and the CRD installation) took to come up.
	Started time.Duration

	env *envtest.Environment
	log *slog.Logger
}

// Start starts kube-apiserver and etcd, installs the CRDs and returns clients for them.
func Start(ctx context.Context, opts Options) (*Env, error) {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 60 * time.Second
	}
	assets, err := Assets(ctx, log)
	if err != nil {
		return nil, err
	}
	te := &envtest.Environment{
		BinaryAssetsDirectory:    assets,
		CRDDirectoryPaths:        opts.CRDDirs,
		ErrorIfCRDPathMissing:    true,
		ControlPlaneStartTimeout: opts.StartTimeout,
		ControlPlaneStopTimeout:  30 * time.Second,
		AttachControlPlaneOutput: opts.Attach,
	}
	// envtest resolves the binaries from KUBEBUILDER_ASSETS before BinaryAssetsDirectory; point both
	// at the same place so a stale variable can't win.
	te.ControlPlane.GetAPIServer().Path = filepath.Join(assets, "kube-apiserver")
	te.ControlPlane.Etcd = &envtest.Etcd{Path: filepath.Join(assets, "etcd")}
	begin := time.Now()
	cfg, err := te.Start()
	if err != nil {
		_ = te.Stop()
		return nil, fmt.Errorf("start kube-apiserver and etcd from %s: %w", assets, err)
	}
	e := &Env{Config: cfg, Assets: assets, env: te, log: log}
	if e.Client, err = client.New(cfg, client.Options{}); err != nil {
		_ = e.Stop()
		return nil, fmt.Errorf("controller-runtime client: %w", err)
	}
	if e.Kube, err = kubernetes.NewForConfig(cfg); err != nil {
		_ = e.Stop()
		return nil, fmt.Errorf("clientset: %w", err)
	}
	if e.Dynamic, err = dynamic.NewForConfig(cfg); err != nil {
		_ = e.Stop()
		return nil, fmt.Errorf("dynamic client: %w", err)
	}
	e.Started = time.Since(begin)
	log.Info("control plane started", "took", e.Started.Round(time.Millisecond), "crds", len(te.CRDs), "host", cfg.Host)
	return e, nil
}

// Stop stops the control plane and removes its data.
func (e *Env) Stop() error {
	begin := time.Now()
	if err := e.env.Stop(); err != nil {
		return fmt.Errorf("stop control plane: %w", err)
	}
	e.log.Info("control plane stopped", "took", time.Since(begin).Round(time.Millisecond))
	return nil
}

// UserConfig returns a rest.Config for a user authenticated by a client certificate, with the
// given groups (RBAC bindings are up to the test).
func (e *Env) UserConfig(name string, groups ...string) (*rest.Config, error) {
	u, err := e.env.AddUser(envtest.User{Name: name, Groups: groups}, e.Config)
	if err != nil {
		return nil, fmt.Errorf("add user %s: %w", name, err)
	}
	return u.Config(), nil
}

// Main is the body of a TestMain: it starts the control plane, stores it in *env, runs the tests,
// stops the control plane and returns the exit code for os.Exit. A control plane that can't start
// fails the package with the reason.
func Main(m *testing.M, opts Options, env **Env) int {
	// controller-runtime warns (with a stack trace) when its global logger is never set; route it
	// to slog at warning level instead.
	log := opts.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
		opts.Log = log
	}
	ctrllog.SetLogger(logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	e, err := Start(ctx, opts)
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "kubetest: %v\n", err)
		return 1
	}
	*env = e
	code := m.Run()
	if err := e.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "kubetest: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}
