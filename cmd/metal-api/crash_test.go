package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
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
	"github.com/metalforge/metalforge/pkg/machine"
	"github.com/metalforge/metalforge/pkg/network"
	"github.com/metalforge/metalforge/pkg/store"
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
	seed(t, data, machines)

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
				code, err := post(ctx, addr, "/v1/machine/allocate", api.MachineAllocateRequest{ProjectID: "storm",
					PartitionID: "p1", SizeID: "s1", ImageID: "img", AutoNetwork: false,
					Networks: []api.AllocationNetwork{{NetworkID: "storm-net"}}}, &m)
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
	code, err := post(context.Background(), addr, "/v1/machine/allocate", api.MachineAllocateRequest{ProjectID: "storm",
		PartitionID: "p1", SizeID: "s1", ImageID: "img", Networks: []api.AllocationNetwork{{NetworkID: "storm-net"}}}, &m)
	if err != nil || code != http.StatusCreated {
		t.Fatalf("allocate after restart: %d %v", code, err)
	}
	acked.Store(m.ID, true)
	_ = p.Process.Signal(syscall.SIGTERM)
	_ = p.Wait()

	st, err := sqlite.Open(context.Background(), data)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	allocated := checkInvariants(t, st)
	acked.Range(func(k, _ any) bool {
		if !allocated[k.(string)] {
			t.Errorf("allocation of %s was acknowledged but is lost", k)
		}
		return true
	})
	t.Logf("after restart: %d machines allocated, all acknowledged ones present", len(allocated))
}

// seed writes a partition, size, image, project, network and waiting machines into the data dir.
func seed(t *testing.T, dir string, n int) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	err = st.Write(ctx, func(tx store.Tx) error {
		for _, err := range []error{
			tx.Partitions().Create(ctx, &api.Partition{Meta: api.Meta{ID: "p1"}}),
			tx.Sizes().Create(ctx, &api.Size{Meta: api.Meta{ID: "s1"}, Constraints: []api.Constraint{{Type: api.ConstraintCores, Min: 1, Max: 64}}}),
			tx.Images().Create(ctx, &api.Image{Meta: api.Meta{ID: "img"}, URL: "http://i/img", OS: "debian", OSVersion: "12", Features: []string{api.FeatureMachine}}),
			tx.Projects().Create(ctx, &api.Project{Meta: api.Meta{ID: "storm"}}),
		} {
			if err != nil {
				return err
			}
		}
		return network.Create(ctx, tx, &api.Network{Meta: api.Meta{ID: "storm-net", Name: "storm"}, Type: api.NetworkPrivate,
			Prefixes: []string{"10.64.0.0/16"}, PartitionID: "p1", ProjectID: "storm"})
	})
	if err != nil {
		t.Fatal(err)
	}
	ms := machine.New(machine.Config{Store: st})
	for i := range n {
		id := fmt.Sprintf("m-%03d", i)
		if _, err := ms.Register(ctx, &api.Machine{Meta: api.Meta{ID: id}, PartitionID: "p1", RackID: fmt.Sprintf("r%d", i%4),
			Hardware: api.MachineHardware{CPUs: []api.MachineCPU{{Cores: 8}}, NICs: []api.MachineNIC{{Name: "eth0", MAC: fmt.Sprintf("52:54:00:00:%02x:%02x", i/256, i%256)}}}}); err != nil {
			t.Fatal(err)
		}
		err := st.Write(ctx, func(tx store.Tx) error {
			m, err := tx.Machines().Get(ctx, id)
			if err != nil {
				return err
			}
			m.Waiting = true
			return tx.Machines().Update(ctx, m)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// checkInvariants: every IP with a machine belongs to an allocated machine that lists it, every
// allocated machine holds exactly one ASN and its IPs exist, no ASN or IP is held twice or by a free
// machine. It returns the set of allocated machines.
func checkInvariants(t *testing.T, st store.Store) map[string]bool {
	ctx := context.Background()
	allocated := map[string]bool{}
	err := st.Read(ctx, func(tx store.Tx) error {
		ms, _, err := tx.Machines().List(ctx, store.Query{})
		if err != nil {
			return err
		}
		ips, _, err := tx.IPs().List(ctx, store.Query{})
		if err != nil {
			return err
		}
		ipOwner := map[string]string{}
		for _, ip := range ips {
			ipOwner[ip.Address] = ip.MachineID
		}
		asns := map[uint64]string{}
		for _, m := range ms {
			held, err := tx.Held(ctx, machine.PoolASN, m.ID)
			if err != nil {
				return err
			}
			if m.Allocation == nil {
				if len(held) > 0 {
					t.Errorf("free machine %s holds ASNs %v", m.ID, held)
				}
				continue
			}
			allocated[m.ID] = true
			if len(held) != 1 || uint64(m.Allocation.Networks[0].ASN) != held[0] {
				t.Errorf("machine %s has ASN %d but holds %v", m.ID, m.Allocation.Networks[0].ASN, held)
			}
			for _, a := range held {
				if other, dup := asns[a]; dup {
					t.Errorf("ASN %d held by %s and %s", a, other, m.ID)
				}
				asns[a] = m.ID
			}
			for _, n := range m.Allocation.Networks {
				for _, ip := range n.IPs {
					if ipOwner[ip] != m.ID {
						t.Errorf("machine %s lists ip %s owned by %q", m.ID, ip, ipOwner[ip])
					}
				}
			}
		}
		for addr, owner := range ipOwner {
			if owner != "" && !allocated[owner] {
				t.Errorf("ip %s belongs to %s, which is not allocated", addr, owner)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return allocated
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

