package firewall

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/klog/v2"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/kubetest"
	"github.com/metalforge/metalforge/pkg/nft"
	"github.com/metalforge/metalforge/pkg/nft/nfttest"
)

// env is the package's control plane, set once by TestMain and only read by the tests. The tests
// that use it run one after the other and remove the objects they create.
var env *kubetest.Env

func TestMain(m *testing.M) {
	if os.Getenv("METALFORGE_KLOG") == "" {
		klog.SetLogger(logr.Discard())
	}
	os.Exit(kubetest.Main(m, kubetest.Options{CRDDirs: []string{"../../charts/firewall-controller/crds"}}, &env))
}

// newNS creates a network namespace that is removed when the test ends.
func newNS(t testing.TB) *nfttest.NS {
	t.Helper()
	return nfttest.New(t, "mffwc")
}

// table returns `nft list table inet firewall` in n, "" when there is none.
func table(n *nfttest.NS) string { return n.Table("inet", nft.TableName) }

// tableJSON is the firewall table of n as nft JSON, for a structural comparison.
func tableJSON(t testing.TB, n *nfttest.NS) []any {
	t.Helper()
	return n.TableJSON(t, "inet", nft.TableName)
}

// renderedTable is the table `nft -f`, in a namespace of its own, makes of the rendered ruleset
// Build returns for in: what the controller must leave in the kernel.
func renderedTable(t testing.TB, in Input) []any {
	t.Helper()
	p, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	if err := nft.Render(&text, p.Ruleset); err != nil {
		t.Fatal(err)
	}
	ref := newNS(t)
	ref.Load(t, text.String())
	return tableJSON(t, ref)
}

// ownTable replaces the namespace's firewall table by one owned by an `nft -i` process of the
// test (flags owner): no other netlink socket may change or delete it until the returned func
// ends the process, which also removes the table.
func ownTable(t testing.TB, n *nfttest.NS) func() {
	t.Helper()
	_, _ = n.Nft("delete", "table", "inet", nft.TableName)
	cmd := exec.Command("ip", "netns", "exec", n.Name, "nft", "-i")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nft -i: %v", err)
	}
	var once sync.Once
	release := func() {
		once.Do(func() {
			_ = stdin.Close()
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
		})
	}
	t.Cleanup(release)
	fmt.Fprintf(stdin, "add table inet %s { flags owner; }\nadd chain inet %s owned_by_test\n", nft.TableName, nft.TableName)
	eventually(t, 10*time.Second, func() string {
		if !strings.Contains(table(n), "owned_by_test") {
			return "owned table not there"
		}
		return ""
	})
	return release
}

// eventually polls cond every 100ms until it returns "" or the timeout passes; then it fails with
// cond's last message. Slow machines only make it wait longer, never fail earlier.
func eventually(t testing.TB, timeout time.Duration, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s: %s", timeout, msg)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// started is a controller running for one test.
type started struct {
	c   *Controller
	ns  *nfttest.NS
	reg *prometheus.Registry
}

// startController runs a controller against ns until the test ends; kube nil means no cluster.
func startController(t *testing.T, ns *nfttest.NS, fw api.FirewallConfig, kube bool, opts ...func(*Config)) *started {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg := Config{
		Firewall:               fw,
		NetNSFd:                ns.Fd,
		Registry:               reg,
		MetricsBindAddress:     "127.0.0.1:0",
		HealthProbeBindAddress: "127.0.0.1:0",
		RetryMin:               100 * time.Millisecond,
		RetryMax:               time.Second,
	}
	if kube {
		cfg.Kube = env.Config
	}
	for _, o := range opts {
		o(&cfg)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if os.Getenv("METALFORGE_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	c, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("controller: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("controller did not stop")
		}
	})
	eventually(t, 30*time.Second, func() string {
		if c.MetricsAddr() == nil || c.HealthAddr() == nil {
			return "http servers not listening"
		}
		return ""
	})
	return &started{c: c, ns: ns, reg: reg}
}

// scrape fetches /metrics from the controller's HTTP server.
func (s *started) scrape(t testing.TB) string {
	t.Helper()
	resp, err := http.Get("http://" + s.c.MetricsAddr().String() + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %d %v", resp.StatusCode, err)
	}
	return string(b)
}

// metric returns the value of one sample line (name with labels as exposed), -1 when absent.
func metric(text, sample string) float64 {
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, sample+" ") {
			var v float64
			if _, err := fmt.Sscanf(strings.TrimPrefix(l, sample+" "), "%g", &v); err == nil {
				return v
			}
		}
	}
	return -1
}
