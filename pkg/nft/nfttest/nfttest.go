// Package nfttest gives tests real network namespaces to program nftables in: it creates and
// removes them, wires them with veth pairs, runs commands inside them and reads a table back as
// nft JSON for a structural comparison. Tests that use it need root and the nft binary; NeedRoot
// skips them otherwise.
package nfttest

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"

	"github.com/vishvananda/netns"

	labnetns "github.com/metalforge/metalforge/pkg/lab/netns"
)

// NS is a named network namespace a test created; it is removed when the test ends.
type NS struct {
	// Name is the name under /run/netns, for `ip netns exec` and `ip link ... netns`.
	Name string
	// Fd is an open handle of the namespace, for nftables.WithNetNSFd and netns.Set.
	Fd int
}

// NeedRoot skips the test unless it runs as root and finds the nft binary.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces and program nftables")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("needs the nft binary: hack/deps.sh nftables")
	}
}

// New creates a namespace named prefix-<pid>-<random> that is removed when the test ends.
func New(t testing.TB, prefix string) *NS {
	t.Helper()
	name := fmt.Sprintf("%s-%d-%08x", prefix, os.Getpid(), rand.Uint32())
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
	return &NS{Name: name, Fd: int(h)}
}

// Exec runs a command inside the namespace and returns its combined output and error.
func (n *NS) Exec(args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", n.Name}, args...)...).CombinedOutput()
	return string(out), err
}

// Run runs a command inside the namespace and fails the test when it fails.
func (n *NS) Run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := n.Exec(args...)
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return out
}

// Nft runs nft inside the namespace and returns its output and error.
func (n *NS) Nft(args ...string) (string, error) {
	return n.Exec(append([]string{"nft"}, args...)...)
}

// Do runs fn on a locked OS thread switched into the namespace; sockets created by fn stay in it.
func (n *NS) Do(fn func() error) error { return labnetns.Do(n.Name, fn) }

// Veth creates a veth pair: link name in n, its peer peerName in peer. Both stay down.
func (n *NS) Veth(t testing.TB, name string, peer *NS, peerName string) {
	t.Helper()
	n.Run(t, "ip", "link", "add", name, "type", "veth", "peer", "name", peerName, "netns", peer.Name)
}

// Load loads a ruleset text with `nft -f` into the namespace.
func (n *NS) Load(t testing.TB, text string) {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "ruleset-*.nft")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	if out, err := n.Nft("-f", f.Name()); err != nil {
		t.Fatalf("nft -f: %v: %s", err, out)
	}
}

// Table returns `nft list table <family> <name>`, "" when there is none.
func (n *NS) Table(family, name string) string {
	out, err := n.Nft("list", "table", family, name)
	if err != nil {
		return ""
	}
	return out
}

// TableJSON returns `nft -j list table <family> <name>` as nft JSON objects without handles and
// metainfo, for a structural comparison. Chains and sets added by an incremental update are
// listed after the others, so objects are ordered by kind and name and rules by chain (stable:
// the order of rules in a chain still counts).
func (n *NS) TableJSON(t testing.TB, family, name string) []any {
	t.Helper()
	out, err := n.Nft("-j", "list", "table", family, name)
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
