package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/pgtest"
	"github.com/metalforge/metalforge/pkg/store"
	"github.com/metalforge/metalforge/pkg/store/postgres"
	"github.com/metalforge/metalforge/pkg/store/storetest"
)

// server is the package's one PostgreSQL server, started by TestMain; nil when PostgreSQL is not
// installed and we are not root (tests then skip with skipReason).
var (
	server     *pgtest.Server
	skipReason string
	icuSeq     atomic.Int64
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if _, err := pgtest.BinDir(); err != nil {
		if os.Geteuid() == 0 {
			fmt.Fprintf(os.Stderr, "postgres tests: %v; run hack/deps.sh to install postgresql\n", err)
			return 1
		}
		skipReason = fmt.Sprintf("%v; not root, so not installing it (run hack/deps.sh)", err)
		return m.Run()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	s, err := pgtest.New(ctx, "")
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "postgres tests: start server: %v\n", err)
		return 1
	}
	server = s
	code := m.Run()
	if err := s.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "postgres tests: stop server: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// newDB creates a fresh database for t and returns its DSN.
func newDB(t *testing.T) string {
	t.Helper()
	if server == nil {
		t.Skip(skipReason)
	}
	return server.NewDB(t)
}

// open opens a store on dsn that is closed when t ends.
func open(t *testing.T, dsn string) store.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return open(t, newDB(t)) })
}

// TestConformanceCollation runs the suite on databases whose default collation is not bytewise
// (ICU en-US, like the en_US.UTF-8 of most installations): IDs must still order as on SQLite.
func TestConformanceCollation(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		if server == nil {
			t.Skip(skipReason)
		}
		name := fmt.Sprintf("icu_%d", icuSeq.Add(1))
		conn, err := pgx.Connect(t.Context(), server.DSN())
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		defer conn.Close(context.WithoutCancel(t.Context()))
		_, err = conn.Exec(t.Context(), "CREATE DATABASE "+name+
			" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'")
		if err != nil {
			t.Fatalf("create database: %v", err)
		}
		dsn := strings.Replace(server.DSN(), "/postgres?", "/"+name+"?", 1)
		if dsn == server.DSN() {
			t.Fatalf("cannot derive a DSN for %s from %s", name, server.DSN())
		}
		return open(t, dsn)
	})
}

func TestBackend(t *testing.T) {
	s := open(t, newDB(t))
	defer s.Close()
	if got := s.Backend(); got != "postgres" {
		t.Errorf("Backend() = %q, want postgres", got)
	}
}

// TestReplicas runs two stores on one database, as two metal-api replicas do: changes committed by
// either reach the subscribers of both (LISTEN/NOTIFY), rolled-back ones reach nobody, and each sees
// the other's data.
func TestReplicas(t *testing.T) {
	dsn := newDB(t)
	a, b := open(t, dsn), open(t, dsn)
	defer a.Close()
	defer b.Close()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	chA, chB := a.Subscribe(ctx), b.Subscribe(ctx)
	machine := func(id string) store.Change { return store.Change{Kind: store.KindMachine, ID: id} }
	create := func(s store.Store, id string) error {
		return s.Write(ctx, func(tx store.Tx) error {
			return tx.Machines().Create(ctx, &api.Machine{Meta: api.Meta{ID: id}})
		})
	}

	if err := create(b, "m1"); err != nil {
		t.Fatalf("write on b: %v", err)
	}
	storetest.WantChanges(t, chA, machine("m1"))
	storetest.WantChanges(t, chB, machine("m1"))
	err := a.Read(ctx, func(tx store.Tx) error {
		_, err := tx.Machines().Get(ctx, "m1")
		return err
	})
	if err != nil {
		t.Errorf("read b's machine on a: %v", err)
	}

	if err := create(a, "m2"); err != nil {
		t.Fatalf("write on a: %v", err)
	}
	storetest.WantChanges(t, chB, machine("m2"))
	storetest.WantChanges(t, chA, machine("m2"))

	// Unique keys hold across replicas.
	if err := create(a, "m1"); !errors.Is(err, store.ErrDuplicate) {
		t.Errorf("create m1 on a: %v, want ErrDuplicate", err)
	}

	rollback := errors.New("rollback")
	err = b.Write(ctx, func(tx store.Tx) error {
		if err := tx.Machines().Create(ctx, &api.Machine{Meta: api.Meta{ID: "m3"}}); err != nil {
			return err
		}
		return rollback
	})
	if !errors.Is(err, rollback) {
		t.Fatalf("rolled-back write on b: %v", err)
	}
	storetest.WantQuiet(t, chA, 300*time.Millisecond)
	if err := create(b, "m4"); err != nil {
		t.Fatalf("write on b: %v", err)
	}
	storetest.WantChanges(t, chA, machine("m4"))
}

// TestReplicasConcurrent runs conflicting writers on two stores sharing a database: version checks
// and pool constraints hold across replicas, not only within one.
func TestReplicasConcurrent(t *testing.T) {
	dsn := newDB(t)
	a, b := open(t, dsn), open(t, dsn)
	defer a.Close()
	defer b.Close()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	err := a.Write(ctx, func(tx store.Tx) error {
		return tx.Partitions().Create(ctx, &api.Partition{Meta: api.Meta{ID: "p"}, Labels: map[string]string{}})
	})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	const workers, each = 10, 5
	var wg sync.WaitGroup
	errs := make(chan error, 2*workers)
	values := make(chan uint64, 2*workers*each)
	for w := range 2 * workers {
		s := []store.Store{a, b}[w%2]
		wg.Go(func() {
			for i := range each {
				var v uint64
				err := s.Write(ctx, func(tx store.Tx) error {
					p, err := tx.Partitions().Get(ctx, "p")
					if err != nil {
						return err
					}
					if p.Labels == nil {
						p.Labels = map[string]string{} // an empty map is stored as none
					}
					p.Labels[fmt.Sprintf("w%d-%d", w, i)] = "x"
					if err := tx.Partitions().Update(ctx, p); err != nil {
						return err
					}
					v, err = tx.Acquire(ctx, "vrf", 1, 1000, 0, fmt.Sprint(w))
					return err
				})
				if err != nil {
					errs <- err
					return
				}
				values <- v
			}
		})
	}
	wg.Wait()
	close(errs)
	close(values)
	for err := range errs {
		t.Errorf("write: %v", err)
	}
	seen := map[uint64]bool{}
	for v := range values {
		if seen[v] || v < 1 || v > 2*workers*each {
			t.Errorf("value %d: duplicate or outside 1..%d", v, 2*workers*each)
		}
		seen[v] = true
	}
	var p *api.Partition
	err = b.Read(ctx, func(tx store.Tx) error {
		var err error
		p, err = tx.Partitions().Get(ctx, "p")
		return err
	})
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if len(p.Labels) != 2*workers*each || p.Version != 1+2*workers*each {
		t.Errorf("partition: %d labels, version %d; want %d labels, version %d", len(p.Labels), p.Version,
			2*workers*each, 1+2*workers*each)
	}
}

// TestConcurrentOpen starts several replicas on one empty database at once, as a rolling deploy
// of a fresh installation does: schema creation must not fail on the race.
func TestConcurrentOpen(t *testing.T) {
	dsn := newDB(t)
	const replicas = 4
	var wg sync.WaitGroup
	errs := make(chan error, replicas)
	for range replicas {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			s, err := postgres.Open(ctx, dsn)
			if err != nil {
				errs <- err
				return
			}
			errs <- s.Close()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("open: %v", err)
		}
	}
}
