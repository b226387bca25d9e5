package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gardencorev1beta1 "github.com/gardener/gardener/pkg/apis/core/v1beta1"
	extensionsv1alpha1 "github.com/gardener/gardener/pkg/apis/extensions/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/metalforge/metalforge/cmd/gardener-extension-provider-metal/app"
	"github.com/metalforge/metalforge/controllers/infrastructure/infratest"
	"github.com/metalforge/metalforge/pkg/apis/metal"
	"github.com/metalforge/metalforge/pkg/apis/metal/helper"
	"github.com/metalforge/metalforge/pkg/kubetest"
)

var env *kubetest.Env

func TestMain(m *testing.M) {
	crds, err := infratest.CRDs([]string{"clusters", "infrastructures", "workers"}, []string{"machineclasses", "machinedeployments", "machinesets", "machines"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(kubetest.Main(m, kubetest.Options{CRDDirs: crds}, &env))
}

func check(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestFlags(t *testing.T) {
	kubeconfig := writeKubeconfig(t)
	for _, tc := range []struct {
		args []string
		code int
		out  []string
	}{
		{args: []string{"--help"}, code: 0, out: []string{"--kubeconfig", "--controllers", "--ignore-operation-annotation",
			"--infrastructure-max-concurrent-reconciles", "--worker-max-concurrent-reconciles", "--leader-election"}},
		{args: []string{"--no-such-flag"}, code: 2, out: []string{"unknown flag: --no-such-flag"}},
		{args: []string{"--controllers", "dns", "--kubeconfig", kubeconfig}, code: 2, out: []string{`unknown controller "dns"`}},
	} {
		t.Run(strings.Join(tc.args[:1], " "), func(t *testing.T) {
			var out bytes.Buffer
			if code := app.Run(t.Context(), "gardener-extension-provider-metal", tc.args, &out); code != tc.code {
				t.Errorf("exit code %d, want %d; output:\n%s", code, tc.code, out.String())
			}
			for _, s := range tc.out {
				if !strings.Contains(out.String(), s) {
					t.Errorf("output lacks %q:\n%s", s, out.String())
				}
			}
		})
	}
}

// writeKubeconfig writes the control plane's admin credentials as a kubeconfig file.
func writeKubeconfig(t *testing.T) string {
	t.Helper()
	c := env.Config
	cfg := clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{"envtest": {Server: c.Host, CertificateAuthorityData: c.CAData}},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{"admin": {ClientCertificateData: c.CertData, ClientKeyData: c.KeyData, Token: c.BearerToken}},
		Contexts:       map[string]*clientcmdapi.Context{"envtest": {Cluster: "envtest", AuthInfo: "admin"}},
		CurrentContext: "envtest",
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	check(t, clientcmd.WriteToFile(cfg, path))
	return path
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	check(t, err)
	addr := l.Addr().String()
	check(t, l.Close())
	return addr
}

// TestBinaryReconcilesInfrastructure runs the extension as its main does (flags, kubeconfig,
// scheme, both controllers) against a real kube-apiserver and metal-api: it serves /healthz, an
// Infrastructure of type metal gets its network, egress IP and firewall, and the process stops
// cleanly when its context ends.
func TestBinaryReconcilesInfrastructure(t *testing.T) {
	f := infratest.Start(t)
	fwID := f.WaitingMachine(1)
	shoot := infratest.Shoot{Name: "binary", UID: "uid-binary"}
	ns := shoot.Namespace()
	scheme, err := app.NewScheme()
	check(t, err)
	k, err := client.New(env.Config, client.Options{Scheme: scheme})
	check(t, err)
	ctx := t.Context()
	check(t, k.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	check(t, k.Create(ctx, f.Cluster(shoot)))
	check(t, k.Create(ctx, f.CloudProviderSecret(ns)))
	check(t, k.Create(ctx, f.Infrastructure(shoot)))

	health := freePort(t)
	var out bytes.Buffer
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- app.Run(rctx, "gardener-extension-provider-metal", []string{"--kubeconfig", writeKubeconfig(t),
			"--metrics-bind-address", "0", "--health-bind-address", health, "--log-level", "error", "--log-format", "text"}, &out)
	}()
	stopped := false
	stop := func() int {
		if stopped {
			return 0
		}
		stopped = true
		cancel()
		select {
		case code := <-done:
			return code
		case <-time.After(30 * time.Second):
			t.Fatal("extension did not stop within 30s")
			return -1
		}
	}
	t.Cleanup(func() { stop() })

	deadline := time.Now().Add(60 * time.Second)
	infra := &extensionsv1alpha1.Infrastructure{}
	for {
		err := k.Get(ctx, client.ObjectKey{Namespace: ns, Name: "infra"}, infra)
		if err == nil && infra.Status.LastOperation != nil && infra.Status.LastOperation.State == gardencorev1beta1.LastOperationStateSucceeded {
			break
		}
		select {
		case code := <-done:
			t.Fatalf("extension exited with %d:\n%s", code, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("infrastructure not reconciled within 60s (last error %v, status %+v); output:\n%s", err, infra.Status.LastOperation, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	ps := &metal.InfrastructureStatus{}
	check(t, helper.Decode(infra.Status.ProviderStatus.Raw, ps))
	if ps.Firewall.MachineID != fwID {
		t.Errorf("firewall = %q, want %q", ps.Firewall.MachineID, fwID)
	}
	if m := f.Machine(fwID); m.Allocation == nil || m.Allocation.Role != "firewall" {
		t.Errorf("machine %s is not allocated as a firewall: %+v", fwID, m.Allocation)
	}
	resp, err := http.Get("http://" + health + "/healthz")
	check(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz: %s", resp.Status)
	}
	if code := stop(); code != 0 {
		t.Errorf("exit code %d after the context ended; output:\n%s", code, out.String())
	}
}
