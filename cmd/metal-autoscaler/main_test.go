package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	pb "github.com/metalforge/metalforge/pkg/autoscaler/externalgrpc"
	"github.com/metalforge/metalforge/pkg/client/clienttest"
	"github.com/metalforge/metalforge/pkg/client/metalapi/partition"
	"github.com/metalforge/metalforge/pkg/client/metalapi/project"
	"github.com/metalforge/metalforge/pkg/client/metalapi/size"
	"github.com/metalforge/metalforge/pkg/client/wire"
)

func check(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// syncBuffer is the log of the binary, written by its goroutines.
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

// TestRunMutualTLS runs the binary's flags end to end: a node groups file, a token file and mutual
// TLS; a client with a certificate of the CA gets the node groups and a template, one without is
// turned away.
func TestRunMutualTLS(t *testing.T) {
	api := clienttest.Start(t)
	admin := api.Client(clienttest.AdminToken)
	ctx := t.Context()
	_, err := admin.Partition.CreatePartitionContext(ctx, partition.NewCreatePartitionParams().WithBody(&wire.Partition{ID: "fra-equ01",
		Boot: &wire.BootConfig{KernelURL: "http://boot/vmlinuz", InitrdURL: "http://boot/initrd"}}), nil)
	check(t, err)
	_, err = admin.Size.CreateSizeContext(ctx, size.NewCreateSizeParams().WithBody(&wire.Size{ID: "s1", Constraints: []*wire.Constraint{
		{Type: "cores", Min: 4, Max: 8}, {Type: "memory", Min: 8 << 30, Max: 16 << 30}}}), nil)
	check(t, err)
	p, err := admin.Project.CreateProjectContext(ctx, project.NewCreateProjectParams().WithBody(&wire.Project{Name: "tenant"}), nil)
	check(t, err)

	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		check(t, os.WriteFile(path, []byte(content), 0o600))
		return path
	}
	tokenFile := write("token", clienttest.AdminToken+"\n")
	configFile := write("node-groups.yaml", `nodeGroups:
- id: workers
  cluster: shoot-a
  partition: fra-equ01
  size: s1
  project: `+p.Payload.ID+`
  image: debian-12
  min: 0
  max: 4
`)
	ca := newCA(t)
	serverCert, serverKey := ca.issue(t, "metal-autoscaler", true)
	clientCert, clientKey := ca.issue(t, "cluster-autoscaler", false)
	args := []string{"--listen", "127.0.0.1:0", "--api-url", api.URL, "--token-file", tokenFile, "--config", configFile,
		"--tls-cert", write("tls.crt", serverCert), "--tls-key", write("tls.key", serverKey), "--tls-client-ca", write("ca.crt", ca.pem)}

	runCtx, cancel := context.WithCancel(context.Background())
	ready := make(chan net.Addr, 1)
	done := make(chan error, 1)
	var log syncBuffer
	go func() { done <- run(runCtx, args, &log, func(a net.Addr) { ready <- a }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v\n%s", err, log.String())
		}
	})
	var addr net.Addr
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("run ended: %v\n%s", err, log.String())
	case <-time.After(30 * time.Second):
		t.Fatal("not serving within 30s")
	}

	dial := func(certs []tls.Certificate) pb.CloudProviderClient {
		conn, err := grpc.NewClient(addr.String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
			RootCAs: ca.pool, Certificates: certs, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12})))
		check(t, err)
		t.Cleanup(func() { conn.Close() })
		return pb.NewCloudProviderClient(conn)
	}
	pair, err := tls.X509KeyPair([]byte(clientCert), []byte(clientKey))
	check(t, err)
	cp := dial([]tls.Certificate{pair})
	groups, err := cp.NodeGroups(ctx, &pb.NodeGroupsRequest{})
	check(t, err)
	if len(groups.GetNodeGroups()) != 1 || groups.GetNodeGroups()[0].GetId() != "workers" || groups.GetNodeGroups()[0].GetMaxSize() != 4 {
		t.Errorf("node groups %v, want workers with max 4", groups.GetNodeGroups())
	}
	tmpl, err := cp.NodeGroupTemplateNodeInfo(ctx, &pb.NodeGroupTemplateNodeInfoRequest{Id: "workers"})
	check(t, err)
	var node corev1.Node
	check(t, node.Unmarshal(tmpl.GetNodeBytes()))
	if cpu := node.Status.Capacity[corev1.ResourceCPU]; cpu.Cmp(resource.MustParse("4")) != 0 {
		t.Errorf("template cpu %s, want 4", cpu.String())
	}
	if _, err := dial(nil).NodeGroups(ctx, &pb.NodeGroupsRequest{}); err == nil {
		t.Error("a client without a certificate was served")
	}
}

func TestRunFlagErrors(t *testing.T) {
	dir := t.TempDir()
	groups := filepath.Join(dir, "groups.yaml")
	check(t, os.WriteFile(groups, []byte("nodeGroups:\n- id: a\n  cluster: c\n  partition: p\n  size: s\n  project: x\n  image: i\n  max: 1\n"), 0o600))
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"no config", []string{"--api-url", "http://127.0.0.1:1"}, "--config is required"},
		{"no token", []string{"--api-url", "http://127.0.0.1:1", "--config", groups}, "no metal-api token"},
		{"key without cert", []string{"--api-url", "http://127.0.0.1:1", "--config", groups, "--tls-key", "k"}, "go together"},
		{"unknown field", []string{"--config", filepath.Join("testdata", "bad.yaml")}, "unknown field"},
		{"argument", []string{"extra"}, "unexpected arguments"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(envPrefix+"TOKEN", map[bool]string{true: "", false: "t"}[tt.name == "no token"])
			var out bytes.Buffer
			err := run(t.Context(), append([]string{"--listen", "127.0.0.1:0"}, tt.args...), &out, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("run %v: %v, want an error with %q", tt.args, err, tt.want)
			}
		})
	}
}

// ca is a test certificate authority.
type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  string
	pool *x509.CertPool
}

func newCA(t *testing.T) *ca {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	check(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	check(t, err)
	cert, err := x509.ParseCertificate(der)
	check(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &ca{cert: cert, key: key, pool: pool, pem: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))}
}

// issue returns a PEM certificate and key signed by the CA, for 127.0.0.1 as a server or a client.
func (c *ca) issue(t *testing.T, cn string, server bool) (string, string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	check(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	check(t, err)
	kd, err := x509.MarshalECPrivateKey(key)
	check(t, err)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}))
}
