package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/metalforge/metalforge/pkg/client/clienttest"
	ipops "github.com/metalforge/metalforge/pkg/client/metalapi/ip"
	"github.com/metalforge/metalforge/pkg/client/metalapi/network"
	"github.com/metalforge/metalforge/pkg/client/metalapi/partition"
	"github.com/metalforge/metalforge/pkg/client/metalapi/project"
	"github.com/metalforge/metalforge/pkg/client/metalapi/token"
	"github.com/metalforge/metalforge/pkg/client/wire"
	"github.com/metalforge/metalforge/pkg/kubetest"
)

// env is the package's control plane, set by TestMain and only read by the tests.
var env *kubetest.Env

func TestMain(m *testing.M) {
	os.Exit(kubetest.Main(m, kubetest.Options{CRDDirs: []string{"../../pkg/ccm/testdata/crds"}}, &env))
}

// syncBuffer collects the process output for the failure message.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func writeKubeconfig(t *testing.T, path string) {
	t.Helper()
	c := env.Config
	kc := clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{"envtest": {Server: c.Host, CertificateAuthorityData: c.CAData}},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{"admin": {ClientCertificateData: c.CertData, ClientKeyData: c.KeyData}},
		Contexts:       map[string]*clientcmdapi.Context{"envtest": {Cluster: "envtest", AuthInfo: "admin"}},
		CurrentContext: "envtest",
	}
	if err := clientcmd.WriteToFile(kc, path); err != nil {
		t.Fatal(err)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestBinary runs the metal-ccm binary as a cluster would: flags, the METAL_* environment, leader
// election, /healthz and /metrics on the secure port, and a Service that gets its address from
// metal-api.
func TestBinary(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	bin := filepath.Join(dir, "metal-ccm")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	api := clienttest.Start(t)
	admin := api.Client(clienttest.AdminToken)
	_, err := admin.Partition.CreatePartitionContext(ctx, partition.NewCreatePartitionParams().WithBody(&wire.Partition{ID: "p1"}), nil)
	check(t, err)
	_, err = admin.Network.CreateNetworkContext(ctx, network.NewCreateNetworkParams().WithBody(&wire.Network{
		ID: "internet", Type: "external", Prefixes: []string{"100.64.0.0/24"}}), nil)
	check(t, err)
	p, err := admin.Project.CreateProjectContext(ctx, project.NewCreateProjectParams().WithBody(&wire.Project{Name: "tenant"}), nil)
	check(t, err)
	tok, err := admin.Token.CreateTokenContext(ctx, token.NewCreateTokenParams().WithBody(&wire.Token{
		Name: "metal-ccm", Role: "editor", ProjectID: p.Payload.ID}), nil)
	check(t, err)
	tokenFile := filepath.Join(dir, "token")
	check(t, os.WriteFile(tokenFile, []byte(tok.Payload.Secret), 0o600))
	cloudConfig := filepath.Join(dir, "cloud.yaml")
	check(t, os.WriteFile(cloudConfig, []byte(fmt.Sprintf("metalAPIURL: %s\nmetalAPIToken: \"@%s\"\nprojectID: %s\n",
		api.URL, tokenFile, p.Payload.ID)), 0o600))
	kubeconfig := filepath.Join(dir, "kubeconfig")
	writeKubeconfig(t, kubeconfig)
	if _, err := env.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "metallb-system"}},
		metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}

	port := freePort(t)
	cmd := exec.Command(bin, "--cloud-provider=metal", "--cloud-config="+cloudConfig, "--kubeconfig="+kubeconfig,
		"--leader-elect=true", "--leader-elect-resource-name=metal-ccm", "--leader-elect-resource-namespace=kube-system",
		"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", port), "--cert-dir="+filepath.Join(dir, "certs"),
		"--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics", "--concurrent-service-syncs=2", "--v=1")
	cmd.Env = append(os.Environ(), "METAL_CLUSTER_ID=c1", "METAL_DEFAULT_EXTERNAL_NETWORK=internet")
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	check(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() || os.Getenv("METALFORGE_CCM_LOG") != "" {
			t.Logf("metal-ccm output:\n%s", tail(out.String(), 80))
		}
	})

	// /healthz and /metrics on the secure port (self-signed certificate).
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	get := func(path string) (int, string) {
		r, err := hc.Get(fmt.Sprintf("https://127.0.0.1:%d%s", port, path))
		if err != nil {
			return 0, err.Error()
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		return r.StatusCode, string(b)
	}
	waitFor(t, exited, 60*time.Second, "/healthz ok", func() bool { code, _ := get("/healthz"); return code == http.StatusOK })

	// Leader election: the lease names this process.
	waitFor(t, exited, 60*time.Second, "leader lease", func() bool {
		l, err := env.Kube.CoordinationV1().Leases("kube-system").Get(ctx, "metal-ccm", metav1.GetOptions{})
		return err == nil && l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != ""
	})

	// A Service gets an address of metal-api.
	_, err = env.Kube.CoreV1().Services("default").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer,
			Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}},
	}, metav1.CreateOptions{})
	check(t, err)
	var ip string
	waitFor(t, exited, 60*time.Second, "ingress of service web", func() bool {
		s, err := env.Kube.CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{})
		if err != nil || len(s.Status.LoadBalancer.Ingress) == 0 {
			return false
		}
		ip = s.Status.LoadBalancer.Ingress[0].IP
		return true
	})
	if !strings.HasPrefix(ip, "100.64.0.") {
		t.Errorf("service web got %s, want an address of 100.64.0.0/24", ip)
	}

	code, body := get("/metrics")
	if code != http.StatusOK || !strings.Contains(body, "workqueue_adds_total") {
		t.Errorf("/metrics: %d, %d bytes; want 200 with the controllers' workqueue metrics", code, len(body))
	}
	check(t, env.Kube.CoreV1().Services("default").Delete(ctx, "web", metav1.DeleteOptions{}))
	waitFor(t, exited, 60*time.Second, "service web deleted", func() bool {
		_, err := env.Kube.CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{})
		return err != nil
	})
	left, err := admin.IP.FindIPsContext(ctx, ipops.NewFindIPsParams().WithBody(&wire.IPFindRequest{ProjectID: p.Payload.ID}), nil)
	check(t, err)
	if len(left.Payload.Items) != 0 {
		t.Errorf("ips of the project after the service was deleted: %+v", left.Payload.Items)
	}
}

// waitFor polls cond until it holds; it fails at the timeout or when the process exits.
func waitFor(t *testing.T, exited <-chan error, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for !cond() {
		select {
		case err := <-exited:
			t.Fatalf("%s: metal-ccm exited: %v", what, err)
		case <-ctx.Done():
			t.Fatalf("%s: not within %v", what, timeout)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
