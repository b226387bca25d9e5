package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/machine/machinetest"
	"github.com/metalforge/metalforge/pkg/store/sqlite"
)

const adminToken = "crash-test-admin-secret"

// TestCrashMidStorm starts metal-api as a process, runs an allocation storm against it, kills it
// with SIGKILL mid-storm, restarts it on the same data directory and checks that every
// acknowledged allocation survived and nothing is half-allocated.
func TestCrashMidStorm(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "metal-api")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	data := filepath.Join(dir, "data")
	const machines = 200
	st, err := sqlite.Open(context.Background(), data)
	if err != nil {
		t.Fatal(err)
	}
	machinetest.Seed(t, st, machines)
	st.Close()

	addr := freeAddr(t)
	p := start(t, bin, data, addr)
	var acked sync.Map // machine ID → allocation acknowledged with 201
	var n atomic.Int64
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				var m api.Machine
				code, err := post(ctx, addr, "/v1/machine/allocate", machinetest.AllocateRequest(), &m)
				if err != nil {
					return // the server is gone
				}
				if code == http.StatusCreated {
					acked.Store(m.ID, true)
					n.Add(1)
				}
			}
		}()
	}
	for n.Load() < machines/4 && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	if err := p.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = p.Wait()
	wg.Wait()
	cancel()
	t.Logf("killed after %d acknowledged allocations", n.Load())

	// Restart: it must come up on the same data and go on allocating.
	p = start(t, bin, data, addr)
	var m api.Machine
	code, err := post(context.Background(), addr, "/v1/machine/allocate", machinetest.AllocateRequest(), &m)
	if err != nil || code != http.StatusCreated {
		t.Fatalf("allocate after restart: %d %v", code, err)
	}
	acked.Store(m.ID, true)
	_ = p.Process.Signal(syscall.SIGTERM)
	_ = p.Wait()

	st, err = sqlite.Open(context.Background(), data)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	allocated := machinetest.CheckInvariants(t, st)
	acked.Range(func(k, _ any) bool {
		if !allocated[k.(string)] {
			t.Errorf("allocation of %s was acknowledged but is lost", k)
		}
		return true
	})
	t.Logf("after restart: %d machines allocated, all acknowledged ones present", len(allocated))
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func start(t *testing.T, bin, data, addr string) *exec.Cmd {
	t.Helper()
	var logs bytes.Buffer
	p := exec.Command(bin, "--data-dir", data, "--listen", addr, "--grpc-listen", freeAddr(t), "--admin-token", adminToken)
	p.Stdout, p.Stderr = &logs, &logs
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Process.Kill() })
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("metal-api did not become healthy:\n%s", logs.String())
	return nil
}

func post(ctx context.Context, addr, path string, body, out any) (int, error) {
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+path, bytes.NewReader(b))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusCreated {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return 0, err
		}
	}
	return resp.StatusCode, nil
}
