package nft

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/metalforge/metalforge/pkg/nft/nfttest"
)

// newNS creates a namespace for this package's tests that is removed when the test ends.
func newNS(t testing.TB, name string) *nfttest.NS {
	t.Helper()
	return nfttest.New(t, "mfnft-"+name)
}

// applyText loads the rendered ruleset with `nft -f`.
func applyText(t testing.TB, n *nfttest.NS, rs *Ruleset) {
	t.Helper()
	var b strings.Builder
	if err := Render(&b, rs); err != nil {
		t.Fatal(err)
	}
	n.Load(t, b.String())
}

func assertSameTable(t *testing.T, goNS, textNS *nfttest.NS) {
	t.Helper()
	want, got := textNS.TableJSON(t, "inet", TableName), goNS.TableJSON(t, "inet", TableName)
	if len(want) < 10 {
		t.Fatalf("nft -f produced only %d objects", len(want))
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("go-applied table differs from nft -f of rendered text (-nft +go):\n%s", d)
	}
}

// newApplier returns an Applier for n that is closed when the test ends.
func newApplier(t testing.TB, n *nfttest.NS) *Applier {
	a := NewApplier(Config{NetNSFd: n.Fd})
	t.Cleanup(func() {
		if err := a.Close(); err != nil {
			t.Errorf("close applier: %v", err)
		}
	})
	return a
}
