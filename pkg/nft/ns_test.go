package nft

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netns"
)

// testNS is a named network namespace a test creates and removes.
type testNS struct {
	name string
	fd   int
}

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces and program nftables")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("needs the nft binary: hack/deps.sh nftables")
	}
}

// newNS creates a namespace that is removed when the test ends.
func newNS(t testing.TB, name string) *testNS {
	t.Helper()
	name = fmt.Sprintf("mfnft-%s-%d", name, os.Getpid())
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

// run runs a command inside the namespace.
func (n *testNS) run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", n.name}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// do runs fn on a locked OS thread switched into the namespace; sockets
// created by fn stay in it.
func (n *testNS) do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("get netns: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(netns.NsHandle(n.fd)); err != nil {
			errc <- fmt.Errorf("set netns: %w", err)
			return
		}
		err = fn()
		if e := netns.Set(orig); e == nil {
			runtime.UnlockOSThread() // else the thread dies with the goroutine
		}
		errc <- err
	}()
	return <-errc
}

// listTable returns `nft -j list table inet firewall` without handles and
// metainfo, for structural comparison.
func listTable(t testing.TB, n *testNS) []any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal([]byte(n.run(t, "nft", "-j", "list", "table", "inet", TableName)), &v); err != nil {
		t.Fatalf("parse nft json: %v", err)
	}
	var out []any
	for _, o := range v["nftables"].([]any) {
		m := o.(map[string]any)
		if _, ok := m["metainfo"]; ok {
			continue
		}
		out = append(out, stripHandles(m))
	}
	// Chains and sets added by an incremental update are listed after the
	// others; order objects by kind and name, rules by chain (stable, so
	// the order of rules in a chain still counts).
	sort.SliceStable(out, func(i, j int) bool { return objKey(out[i]) < objKey(out[j]) })
	return out
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

// applyText loads the rendered ruleset with `nft -f`.
func applyText(t testing.TB, n *testNS, rs *Ruleset) {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "ruleset-*.nft")
	if err != nil {
		t.Fatal(err)
	}
	if err := Render(f, rs); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	n.run(t, "nft", "-f", f.Name())
}

func assertSameTable(t *testing.T, goNS, textNS *testNS) {
	t.Helper()
	want, got := listTable(t, textNS), listTable(t, goNS)
	if len(want) < 10 {
		t.Fatalf("nft -f produced only %d objects", len(want))
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("go-applied table differs from nft -f of rendered text (-nft +go):\n%s", d)
	}
}

// newApplier returns an Applier for n that is closed when the test ends.
func newApplier(t testing.TB, n *testNS) *Applier {
	a := NewApplier(Config{NetNSFd: n.fd})
	t.Cleanup(func() {
		if err := a.Close(); err != nil {
			t.Errorf("close applier: %v", err)
		}
	})
	return a
}
