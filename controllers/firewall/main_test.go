package firewall

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netns"
	"k8s.io/klog/v2"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/kubetest"
	"github.com/metalforge/metalforge/pkg/nft"
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

// testNS is a network namespace a test creates and removes.
type testNS struct {
	name string
	fd   int
}

var nsSeq atomic.Int32

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces and program nftables")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("needs the nft binary: hack/deps.sh nftables")
	}
}

func newNS(t testing.TB) *testNS {
	t.Helper()
	name := fmt.Sprintf("mffwc-%d-%d", os.Getpid(), nsSeq.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	h, err := netns.GetFromName(name)
	if err != nil {
		_ = exec.Command("ip", "netns", "del", name).Run()
		t.Fatalf("open netns %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = h.Close()
		_ = exec.Command("ip", "netns", "del", name).Run()
	})
	return &testNS{name: name, fd: int(h)}
}

// nft runs nft in the namespace and returns its output and error.
func (n *testNS) nft(args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", n.name, "nft"}, args...)...).CombinedOutput()
	return string(out), err
}

// table returns `nft list table inet firewall`, "" when there is none.
func (n *testNS) table() string {
	out, err := n.nft("list", "table", "inet", nft.TableName)
	if err != nil {
		return ""
	}
	return out
}

// tableJSON is the table as nft JSON objects without handles and metainfo, ordered by kind and
// name (rules stay in chain order), for a structural comparison.
func (n *testNS) tableJSON(t testing.TB) []any {
	t.Helper()
	out, err := n.nft("-j", "list", "table", "inet", nft.TableName)
	if err != nil {
		t.Fatalf("nft list: %v: %s", err, out)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("parse nft json: %v", err)
	}
	var objs []any
	for _, o := range v["nftables"].([]any) {
		m := o.(map[string]any)
		if _, ok := m["metainfo"]; ok {
			continue
		}
		objs = append(objs, stripHandles(m))
	}
	sort.SliceStable(objs, func(i, j int) bool { return objKey(objs[i]) < objKey(objs[j]) })
	return objs
}

func objKey(o any) string {
	for kind, v := range o.(map[string]any) {
		m, _ := v.(map[string]any)
		if kind == "rule" {
			return fmt.Sprintf("rule/%v", m["chain"])
		}
		return fmt.Sprintf("%s/%v", kind, m["name"])
	}
	return ""
}

func stripHandles(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := map[string]any{}
		for k, e := range x {
			if k != "handle" {
				m[k] = stripHandles(e)
			}
		}
		return m
	case []any:
		s := make([]any, len(x))
		for i, e := range x {
			s[i] = stripHandles(e)
		}
		return s
	}
	return v
}

// load loads text with `nft -f` into the namespace.
func (n *testNS) load(t testing.TB, text string) {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "ruleset-*.nft")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	if out, err := n.nft("-f", f.Name()); err != nil {
		t.Fatalf("nft -f: %v: %s", err, out)
	}
}

// ownTable replaces the namespace's firewall table by one owned by an `nft -i` process of the
// test (flags owner): no other netlink socket may change or delete it until the returned func
// ends the process, which also removes the table.
func (n *testNS) ownTable(t testing.TB) func() {
	t.Helper()
	_, _ = n.nft("delete", "table", "inet", nft.TableName)
	cmd := exec.Command("ip", "netns", "exec", n.name, "nft", "-i")
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
		if !strings.Contains(n.table(), "owned_by_test") {
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
	ns  *testNS
	reg *prometheus.Registry
}

// startController runs a controller against ns until the test ends; kube nil means no cluster.
func startController(t *testing.T, ns *testNS, fw api.FirewallConfig, kube bool, opts ...func(*Config)) *started {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg := Config{
		Firewall:               fw,
		NetNSFd:                ns.fd,
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
