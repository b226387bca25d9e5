// Package mcmtest runs the real machine-controller-manager for tests: its machine-deployment and
// machine-set controllers (cmd/machine-controller-manager) and the provider-side machine
// controller with pkg/mcm's driver (mcm.Main), each as a child process that is the test binary
// itself. MCM's app.Run takes no context, never returns and owns global flag and klog state, so it
// cannot share the test's process.
//
// A test package calls RunChild first thing in TestMain and exits with its code when it ran a
// child; Start then launches both controllers for one namespace and kills them by PID when the
// test ends. MCM runs without a target cluster (--target-kubeconfig=none): there is no kubelet, and
// in that mode a created machine counts as available.
package mcmtest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	mcmapp "github.com/gardener/machine-controller-manager/cmd/machine-controller-manager/app"
	mcmoptions "github.com/gardener/machine-controller-manager/cmd/machine-controller-manager/app/options"
	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/component-base/logs"

	"github.com/metalforge/metalforge/pkg/mcm"
)

// ChildEnv makes the test binary one of MCM's controllers instead of running tests.
const ChildEnv = "METALFORGE_MCM_CHILD"

// Child roles.
const (
	ChildProvider = "provider" // MCM's provider-side machine controller with pkg/mcm's driver
	ChildMCM      = "mcm"      // MCM's machine-deployment and machine-set controllers
)

// RunChild runs the child ChildEnv names and reports whether it did.
func RunChild() (int, bool) {
	switch os.Getenv(ChildEnv) {
	case ChildProvider:
		return mcm.Main("machine-controller-manager-provider-metal", os.Args[1:], os.Stderr), true
	case ChildMCM:
		fs := pflag.NewFlagSet("machine-controller-manager", pflag.ContinueOnError)
		s := mcmoptions.NewMCMServer()
		s.AddFlags(fs)
		if err := fs.Parse(os.Args[1:]); err != nil {
			fmt.Fprintf(os.Stderr, "machine-controller-manager: %v\n", err)
			return 2, true
		}
		logs.InitLogs()
		defer logs.FlushLogs()
		if err := mcmapp.Run(s); err != nil {
			fmt.Fprintf(os.Stderr, "machine-controller-manager: %v\n", err)
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

// Start runs both MCM controllers for namespace against the API server of cfg until the test
// ends. Machines get 10 minutes to be created and to become healthy.
func Start(t testing.TB, cfg *rest.Config, namespace string) {
	t.Helper()
	kubeconfig := WriteKubeconfig(t, cfg)
	common := []string{"--control-kubeconfig=" + kubeconfig, "--target-kubeconfig=none", "--namespace=" + namespace,
		"--leader-elect=false", "--address=127.0.0.1", "--kube-api-content-type=application/json", "--v=2"}
	StartChild(t, ChildMCM, append(common, "--port="+FreePort(t))...)
	StartChild(t, ChildProvider, append(common, "--port="+FreePort(t), "--machine-creation-timeout=10m", "--machine-health-timeout=10m")...)
}

// WriteKubeconfig writes cfg's credentials to a kubeconfig file in a temporary directory.
func WriteKubeconfig(t testing.TB, c *rest.Config) string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: c.Host, CertificateAuthorityData: c.CAData}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: c.CertData, ClientKeyData: c.KeyData, Token: c.BearerToken}
	kc.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "admin"}
	kc.CurrentContext = "envtest"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatalf("write kubeconfig: %v", err)
	}
	return path
}

// FreePort returns a loopback port that was free a moment ago.
func FreePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find free port: %v", err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// lockedBuffer collects a child's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// StartChild runs this test binary as one of MCM's controllers until the test ends, then kills it
// by PID; its output is shown when the test fails (or with METALFORGE_LOG=1). A child that exits
// before the test ends fails the test.
func StartChild(t testing.TB, role string, args ...string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), ChildEnv+"="+role)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", role, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case err := <-exited:
			t.Errorf("%s exited early: %v", role, err)
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() || os.Getenv("METALFORGE_LOG") != "" {
			lines := strings.Split(out.String(), "\n")
			if len(lines) > 200 {
				lines = lines[len(lines)-200:]
			}
			t.Logf("output of %s (pid %d):\n%s", role, cmd.Process.Pid, strings.Join(lines, "\n"))
		}
	})
}
