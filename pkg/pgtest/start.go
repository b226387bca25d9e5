package pgtest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
)

// Start starts a server for tb (see New) and registers its Stop with
// tb.Cleanup. When PostgreSQL is not installed it skips tb if not running as
// root (a developer machine that cannot install packages), and fails tb as
// root: CI runs as root and must have run hack/deps.sh.
//
// A package whose tests share one server starts it in TestMain with New and
// Stop instead.
func Start(tb testing.TB) *Server {
	tb.Helper()
	if _, err := BinDir(); err != nil {
		if os.Geteuid() != 0 {
			tb.Skipf("pgtest: %v; not root, so skipping (install the postgresql package, e.g. with hack/deps.sh as root, to run this test)", err)
		}
		tb.Fatalf("pgtest: %v; run hack/deps.sh to install postgresql", err)
	}
	ctx, cancel := context.WithTimeout(tb.Context(), readyTimeout)
	defer cancel()
	s, err := New(ctx, "")
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Stop(); err != nil {
			tb.Errorf("pgtest: stop: %v", err)
		}
	})
	return s
}

// NewDB creates an empty database for tb, named after the test plus a
// sequence number (so repeated and parallel tests never collide), and returns
// its DSN. It fails tb on error.
func (s *Server) NewDB(tb testing.TB) string {
	tb.Helper()
	dsn, err := s.CreateDB(tb.Context(), s.dbName(tb.Name()))
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	return dsn
}

// dbName turns a test name into a lower-case database name of at most 63
// bytes that is unique on this server.
func (s *Server) dbName(testName string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(testName) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	suffix := fmt.Sprintf("_%d", s.dbSeq.Add(1))
	name := b.String()
	if len(name) > 63-len(suffix) {
		name = name[:63-len(suffix)]
	}
	return name + suffix
}
