package apiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/bootrpc"
	"github.com/metalforge/metalforge/pkg/bootrpc/bootpb"
	"github.com/metalforge/metalforge/pkg/machine/machinetest"
	"github.com/metalforge/metalforge/pkg/pgtest"
	"github.com/metalforge/metalforge/pkg/store/postgres"
)

const admin = "replica-test-admin"

type replica struct{ rest, grpc string }

// startReplicas runs n metal-api replicas on one PostgreSQL database.
func startReplicas(t *testing.T, dsn string, n int) []replica {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	var out []replica
	for range n {
		ready := make(chan replica, 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := Start(ctx, Config{DB: dsn, Listen: "127.0.0.1:0", GRPCListen: "127.0.0.1:0", AdminToken: admin,
				Ready: func(r, g net.Addr) { ready <- replica{r.String(), g.String()} }}, slog.New(slog.DiscardHandler))
			if err != nil && ctx.Err() == nil {
				t.Errorf("replica: %v", err)
			}
		}()
		select {
		case r := <-ready:
			out = append(out, r)
		case <-time.After(30 * time.Second):
			t.Fatal("replica did not start")
		}
	}
	return out
}

func call(ctx context.Context, addr, method, path string, body, out any) (int, error) {
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, bytes.NewReader(b))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if out != nil && resp.StatusCode < 300 {
		return resp.StatusCode, json.Unmarshal(raw, out)
	}
	return resp.StatusCode, nil
}

// TestReplicaStorm: 50 clients allocate through two metal-api replicas sharing PostgreSQL until
// the 200 waiting machines are gone: exactly 200 allocations succeed and no machine, IP or ASN is
// handed out twice.
func TestReplicaStorm(t *testing.T) {
	pg := pgtest.Start(t)
	dsn := pg.NewDB(t)
	ctx := context.Background()
	st, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const machines = 200
	machinetest.Seed(t, st, machines)
	rs := startReplicas(t, dsn, 2)

	var ok, unavailable atomic.Int64
	var seen sync.Map
	var wg sync.WaitGroup
	sctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	start := time.Now()
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for sctx.Err() == nil {
				var m api.Machine
				code, err := call(sctx, rs[i%2].rest, "POST", "/v1/machine/allocate", machinetest.AllocateRequest(), &m)
				switch {
				case err != nil:
					t.Errorf("allocate: %v", err)
					return
				case code == http.StatusCreated:
					ok.Add(1)
					if _, dup := seen.LoadOrStore(m.ID, true); dup {
						t.Errorf("machine %s allocated twice", m.ID)
					}
				case code == http.StatusConflict:
					unavailable.Add(1)
					return // none left
				default:
					t.Errorf("allocate: status %d", code)
					return
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d allocations through 2 replicas in %s", ok.Load(), time.Since(start).Round(time.Millisecond))
	for _, r := range rs {
		t.Logf("replica %s: %s", r.rest, storeMetrics(t, r.rest))
	}
	if ok.Load() != machines {
		t.Fatalf("%d allocations succeeded, want %d", ok.Load(), machines)
	}
	if got := len(machinetest.CheckInvariants(t, st)); got != machines {
		t.Fatalf("%d machines allocated in the store, want %d", got, machines)
	}
}

// TestWaitWakesOnOtherReplica: a hammer waits on replica A, the allocation is made on replica B,
// and A's Wait stream returns the install spec (LISTEN/NOTIFY between replicas).
func TestWaitWakesOnOtherReplica(t *testing.T) {
	pg := pgtest.Start(t)
	dsn := pg.NewDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	machinetest.Seed(t, st, 1)
	rs := startReplicas(t, dsn, 2)

	client, closer, err := bootrpc.Dial(ctx, rs[0].grpc, admin)
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	var m api.Machine
	if code, err := call(ctx, rs[0].rest, "GET", "/v1/machine/m-000", nil, &m); err != nil || code != 200 {
		t.Fatalf("get machine: %d %v", code, err)
	}
	// Not waiting any more once the stream has started, so clear the fixture's flag first.
	stream, err := client.Wait(ctx, &bootpb.WaitRequest{MachineId: m.ID})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *api.InstallSpec, 1)
	go func() {
		for {
			resp, err := stream.Recv()
			if err != nil {
				close(got)
				return
			}
			if !resp.Keepalive {
				var spec api.InstallSpec
				if err := json.Unmarshal(resp.InstallSpecJson, &spec); err != nil {
					t.Errorf("decode spec: %v", err)
				}
				got <- &spec
				return
			}
		}
	}()
	time.Sleep(200 * time.Millisecond) // let the stream register as waiting
	req := machinetest.AllocateRequest()
	req.Hostname = "woken"
	if code, err := call(ctx, rs[1].rest, "POST", "/v1/machine/allocate", req, nil); err != nil || code != http.StatusCreated {
		t.Fatalf("allocate on replica B: %d %v", code, err)
	}
	start := time.Now()
	select {
	case spec, ok := <-got:
		if !ok || spec.Machine.Allocation == nil || spec.Machine.Allocation.Hostname != "woken" {
			t.Fatalf("wait on replica A returned %+v", spec)
		}
		t.Logf("replica A woke %s after the allocation on replica B", time.Since(start).Round(time.Millisecond))
	case <-time.After(5 * time.Second):
		t.Fatal("wait on replica A did not wake within 5s (its periodic recheck is 10s, so LISTEN/NOTIFY failed)")
	}
}

// storeMetrics scrapes the store's write and retry counters from /metrics.
func storeMetrics(t *testing.T, addr string) string {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out []string
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "metal_api_store_") {
			out = append(out, line)
		}
	}
	if len(out) == 0 {
		t.Fatalf("no metal_api_store_ metrics on %s", addr)
	}
	return strings.Join(out, ", ")
}
