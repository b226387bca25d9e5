package machine_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/apierror"
	"github.com/metalforge/metalforge/pkg/machine"
	"github.com/metalforge/metalforge/pkg/store"
)

const (
	stormMachines   = 200
	stormGoroutines = 50
)

// TestAllocationStorm lets 50 goroutines allocate 200 waiting machines until none is left, on SQLite,
// on PostgreSQL, and on PostgreSQL with two replicas (two stores on one database, each with its own
// service). Every machine, address and ASN must be handed out exactly once, and nothing may be left
// half-allocated. The time each storm takes is logged, never asserted.
func TestAllocationStorm(t *testing.T) {
	tests := []struct {
		name     string
		backend  func(dsn *string) backend
		replicas int
	}{
		{"sqlite", func(*string) backend { return sqliteBackend }, 1},
		{"postgres", func(*string) backend { return postgresBackend }, 1},
		{"postgres-2-replicas", postgresWithDSN, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var dsn string
			start := time.Now()
			f := newFixture(t, fixtureConfig{machines: stormMachines, racks: 4, backend: tc.backend(&dsn)})
			stores := []*countingStore{{Store: f.store}}
			for range tc.replicas - 1 {
				s, _ := openPostgres(t, dsn)
				stores = append(stores, &countingStore{Store: s})
			}
			var services []*machine.Service
			for _, s := range stores {
				services = append(services, f.service(s))
			}
			t.Logf("%s: seeded %d waiting machines in %v", tc.name, stormMachines, time.Since(start).Round(time.Millisecond))
			got := storm(t, f, services)
			for i, s := range stores {
				writes, attempts, most := s.counts()
				t.Logf("replica %d: %d write transactions in %d attempts, at most %d for one", i, writes, attempts, most)
			}
			checkStorm(t, f, got)
		})
	}
}

// stormResult is one successful allocation and the replica that made it.
type stormResult struct {
	m       *api.Machine
	replica int
}

func storm(t *testing.T, f *fixture, services []*machine.Service) []stormResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(f.ctx, 5*time.Minute)
	defer cancel()
	req := f.req()
	req.Networks = append(req.Networks, api.AllocationNetwork{NetworkID: internetID})
	var (
		mu   sync.Mutex
		got  []stormResult
		wg   sync.WaitGroup
		errs = make(chan error, stormGoroutines)
		// spurious counts "none left" answers while machines were still waiting.
		spurious atomic.Int64
	)
	// waiting counts the machines still waiting. In a storm every waiting machine is allocatable and
	// none starts waiting again, so machines waiting after an Allocate said none is left were
	// waiting during that call too: the answer was wrong.
	waiting := func() int {
		n := 0
		err := f.store.Read(ctx, func(tx store.Tx) error {
			var err error
			n, err = tx.Machines().Count(ctx, store.Query{Partition: partitionID, Key1: sizeLarge, Key2: store.MachineStatusWaiting})
			return err
		})
		if err != nil {
			return -1
		}
		return n
	}
	start := time.Now()
	for w := range stormGoroutines {
		replica := w % len(services)
		svc := services[replica]
		wg.Go(func() {
			for {
				m, err := svc.Allocate(ctx, req, fmt.Sprintf("worker-%02d", w))
				if errors.Is(err, apierror.ErrUnavailable) {
					if n := waiting(); n > 0 {
						if spurious.Add(1) > 100*stormMachines {
							errs <- fmt.Errorf("worker %d: allocation keeps failing with %d machines waiting: %w", w, n, err)
							return
						}
						continue
					}
					return // none left
				}
				if err != nil {
					errs <- fmt.Errorf("worker %d (replica %d): %w", w, replica, err)
					return
				}
				mu.Lock()
				got = append(got, stormResult{m, replica})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	close(errs)
	for err := range errs {
		t.Errorf("allocate: %v", err)
	}
	perReplica := make([]int, len(services))
	for _, r := range got {
		perReplica[r.replica]++
	}
	t.Logf("%s storm: %d allocations by %d goroutines on %d replica(s) %v in %v (%.0f/s)", f.store.Backend(), len(got),
		stormGoroutines, len(services), perReplica, took.Round(time.Millisecond), float64(len(got))/took.Seconds())
	if n := spurious.Load(); n > 0 {
		t.Errorf("%d allocations failed as unavailable while machines were waiting", n)
	}
	return got
}

// checkStorm checks the outcome through the store and below it.
func checkStorm(t *testing.T, f *fixture, got []stormResult) {
	t.Helper()
	if len(got) != stormMachines {
		t.Errorf("%d successful allocations, want exactly %d", len(got), stormMachines)
	}
	returned := map[string]*api.Machine{}
	for _, r := range got {
		if _, dup := returned[r.m.ID]; dup {
			t.Errorf("machine %s allocated twice", r.m.ID)
		}
		returned[r.m.ID] = r.m
	}

	var (
		machines []*api.Machine
		ips      []*api.IP
		networks int
		held     = map[string][]uint64{}
	)
	f.read(func(tx store.Tx) error {
		var err error
		if machines, _, err = tx.Machines().List(f.ctx, store.Query{}); err != nil {
			return err
		}
		if ips, _, err = tx.IPs().List(f.ctx, store.Query{}); err != nil {
			return err
		}
		if networks, err = tx.Networks().Count(f.ctx, store.Query{}); err != nil {
			return err
		}
		for _, m := range machines {
			if held[m.ID], err = tx.Held(f.ctx, machine.PoolASN, m.ID); err != nil {
				return err
			}
		}
		return nil
	})

	// Every machine is allocated exactly as Allocate said; the addresses and ASN are unique.
	byAddr := map[string]*api.IP{}
	for _, ip := range ips {
		byAddr[ip.Address] = ip
	}
	addrOwner := map[string]string{}
	asnOwner := map[uint32]string{}
	allocated := map[string]*api.Machine{}
	for _, m := range machines {
		a := m.Allocation
		if a == nil || m.Waiting {
			t.Errorf("machine %s: allocation %v, waiting %v; want allocated", m.ID, a != nil, m.Waiting)
			continue
		}
		allocated[m.ID] = m
		if r, ok := returned[m.ID]; !ok {
			t.Errorf("machine %s is allocated, but no Allocate returned it", m.ID)
		} else if diff := cmp.Diff(r.Allocation, a); diff != "" {
			t.Errorf("machine %s: stored allocation differs from the returned one (-returned +stored):\n%s", m.ID, diff)
		}
		if len(a.Networks) != 2 {
			t.Errorf("machine %s has %d networks, want the private one and the internet", m.ID, len(a.Networks))
			continue
		}
		asn := a.Networks[0].ASN
		if other, dup := asnOwner[asn]; dup {
			t.Errorf("ASN %d given to %s and %s", asn, other, m.ID)
		}
		asnOwner[asn] = m.ID
		if !slices.Equal(held[m.ID], []uint64{uint64(asn)}) {
			t.Errorf("machine %s has ASN %d, the pool holds %v for it", m.ID, asn, held[m.ID])
		}
		for _, n := range a.Networks {
			if n.ASN != asn {
				t.Errorf("machine %s: network %s has ASN %d, want %d", m.ID, n.NetworkID, n.ASN, asn)
			}
			if len(n.IPs) != 1 {
				t.Errorf("machine %s: network %s has ips %v, want one", m.ID, n.NetworkID, n.IPs)
			}
			for _, addr := range n.IPs {
				if other, dup := addrOwner[addr]; dup {
					t.Errorf("address %s given to %s and %s", addr, other, m.ID)
				}
				addrOwner[addr] = m.ID
				ip, ok := byAddr[addr]
				switch {
				case !ok:
					t.Errorf("machine %s has address %s, which the ips table does not hold", m.ID, addr)
				case ip.MachineID != m.ID || ip.NetworkID != n.NetworkID || ip.ProjectID != projA:
					t.Errorf("ip %s: machine %q network %q project %q; want %s, %s, %s", addr, ip.MachineID, ip.NetworkID,
						ip.ProjectID, m.ID, n.NetworkID, projA)
				}
			}
		}
	}
	if len(allocated) != stormMachines {
		t.Errorf("%d machines allocated, want %d", len(allocated), stormMachines)
	}

	// Nothing half-allocated: every address and ASN belongs to an allocated machine that lists it.
	for _, ip := range ips {
		if owner := addrOwner[ip.Address]; owner == "" || owner != ip.MachineID {
			t.Errorf("ip %s (machine %q) is not part of an allocation", ip.Address, ip.MachineID)
		}
	}
	if len(ips) != 2*stormMachines {
		t.Errorf("%d ips stored, want %d", len(ips), 2*stormMachines)
	}
	if n, distinct := f.poolCount(machine.PoolASN); n != stormMachines || distinct != stormMachines {
		t.Errorf("ASN pool holds %d values (%d distinct), want %d", n, distinct, stormMachines)
	}
	if len(asnOwner) != stormMachines {
		t.Errorf("%d distinct ASNs, want %d", len(asnOwner), stormMachines)
	}
	if networks != 4 {
		t.Errorf("%d networks, want the 4 seeded ones", networks)
	}
}
