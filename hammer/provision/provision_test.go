package provision

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/metalforge/metalforge/hammer/inventory"
	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/auth"
	"github.com/metalforge/metalforge/pkg/bootrpc"
	"github.com/metalforge/metalforge/pkg/bootrpc/bootrpctest"
)

// harness is a fake boot service and a Config that talks to it.
type harness struct {
	fake *bootrpctest.Machines
	cfg  Config
	mu   sync.Mutex
	// wiped are the device lists the Wipe hook was called with.
	wiped [][]string
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{fake: bootrpctest.NewMachines()}
	addr := bootrpctest.Serve(t, bootrpc.Config{
		Machines:          h.fake,
		Auth:              bootrpctest.Tokens{"boot-secret": auth.Principal{Role: auth.RoleBoot, PartitionID: "p1"}},
		KeepaliveInterval: 50 * time.Millisecond,
	})
	h.cfg = Config{
		API: addr, Token: "boot-secret", Partition: "p1", Once: true, Target: t.TempDir(),
		Inventory: func(ctx context.Context) (inventory.Inventory, error) {
			return inventory.Collect(ctx, inventory.Config{Root: "../inventory/testdata/qemu"})
		},
		Wipe: func(_ context.Context, devices []string) (api.WipeRecord, error) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.wiped = append(h.wiped, devices)
			rec := api.WipeRecord{Time: time.Now()}
			for _, d := range devices {
				rec.Disks = append(rec.Disks, api.DiskWipe{Device: d, Method: "discard", Bytes: 1 << 30, Verified: true, Samples: 64})
			}
			return rec, nil
		},
		KernelArgs:  []string{"console=ttyS0", "mf.api=" + addr},
		CallTimeout: 5 * time.Second, RetryFor: 5 * time.Second, WaitRetry: 100 * time.Millisecond,
	}
	return h
}

// machineID is the ID the qemu testdata inventory derives.
func machineID(t *testing.T) string {
	t.Helper()
	inv, err := inventory.Collect(context.Background(), inventory.Config{Root: "../inventory/testdata/qemu"})
	if err != nil {
		t.Fatal(err)
	}
	return inv.ID
}

func eventNames(evs []api.EventRequest) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Event)
	}
	return out
}

// run starts Run in the background and returns its result channel.
func (h *harness) run(t *testing.T) <-chan error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	done := make(chan error, 1)
	go func() { done <- Run(ctx, h.cfg) }()
	return done
}

// TestRunFreshMachineCrashes: a new machine registers, is wiped, waits, gets allocated with a
// layout on a disk that does not exist, and reports the crash.
func TestRunFreshMachineCrashes(t *testing.T) {
	h := newHarness(t)
	id := machineID(t)
	done := h.run(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.fake.AwaitWaiters(ctx, id, 1); err != nil {
		t.Fatal(err)
	}
	m, err := h.fake.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if m.PartitionID != "p1" || m.Hardware.Memory != 1002756*1024 || len(m.Hardware.NICs) != 1 || m.BIOS.Vendor != "SeaBIOS" {
		t.Errorf("registered machine = %+v", m)
	}
	if d := cmp.Diff([][]string{{"/dev/vda"}}, h.wiped); d != "" {
		t.Errorf("wiped (-want +got):\n%s", d)
	}
	if w := h.fake.Wipes(id); len(w) != 1 || w[0].Disks[0].Device != "/dev/vda" || !w[0].Disks[0].Verified {
		t.Errorf("wipe records = %+v", w)
	}
	layout := &api.FilesystemLayout{Meta: api.Meta{ID: "l1"},
		Disks:       []api.Disk{{Device: "/dev/nonexistent-disk", Partitions: []api.DiskPartition{{Number: 1}}}},
		Filesystems: []api.Filesystem{{Device: "/dev/nonexistent-disk1", Format: "ext4", Path: "/"}}}
	if err := h.fake.Allocate(id, api.InstallSpec{Layout: layout, Image: api.Image{URL: "http://127.0.0.1:1/img.tar.zst"}}); err != nil {
		t.Fatal(err)
	}
	err = <-done
	if err == nil || !strings.Contains(err.Error(), "nonexistent-disk") {
		t.Fatalf("Run = %v, want the disk error", err)
	}
	want := []string{api.EventPreparing, api.EventRegistering, api.EventWaiting, api.EventInstalling, api.EventCrashed}
	if d := cmp.Diff(want, eventNames(h.fake.Events(id))); d != "" {
		t.Errorf("events (-want +got):\n%s", d)
	}
	evs := h.fake.Events(id)
	if msg := evs[len(evs)-1].Message; !strings.Contains(msg, "nonexistent-disk") {
		t.Errorf("crash message %q", msg)
	}
	if r := h.fake.Reports(id); len(r) != 1 || r[0].Success || !strings.Contains(r[0].Message, "nonexistent-disk") {
		t.Errorf("reports = %+v", r)
	}
}

// TestRunReinstallAborts: an allocated machine asking for a reinstall wipes only the primary
// disk, and a failure afterwards aborts the reinstall saying the primary disk is gone.
func TestRunReinstallAborts(t *testing.T) {
	h := newHarness(t)
	id := machineID(t)
	h.fake.Put(api.Machine{Meta: api.Meta{ID: id}, PartitionID: "p1"})
	layout := &api.FilesystemLayout{Meta: api.Meta{ID: "l1"},
		Disks: []api.Disk{
			{Device: "/dev/nonexistent-a", WipeOnReinstall: true, Partitions: []api.DiskPartition{{Number: 1}}},
			{Device: "/dev/nonexistent-b", Partitions: []api.DiskPartition{{Number: 1}}},
		},
		Filesystems: []api.Filesystem{{Device: "/dev/nonexistent-a1", Format: "ext4", Path: "/"}, {Device: "/dev/nonexistent-b1", Format: "ext4", Path: "/data"}}}
	alloc := &api.MachineAllocation{ProjectID: "p", Hostname: "h", Reinstall: true, BootInfo: &api.BootInfo{Kernel: "/boot/old"}}
	if err := h.fake.Allocate(id, api.InstallSpec{Machine: api.Machine{Allocation: alloc}, Layout: layout}); err != nil {
		t.Fatal(err)
	}
	err := <-h.run(t)
	if err == nil {
		t.Fatal("Run succeeded, want the disk error")
	}
	if d := cmp.Diff([][]string{{"/dev/nonexistent-a"}}, h.wiped); d != "" {
		t.Errorf("wiped (-want +got):\n%s", d)
	}
	if got := h.fake.Aborts(id); !slices.Equal(got, []bool{true}) {
		t.Errorf("aborts = %v, want one with the primary disk wiped", got)
	}
	if r := h.fake.Reports(id); len(r) != 0 {
		t.Errorf("a reinstall reported %+v instead of aborting", r)
	}
	want := []string{api.EventPreparing, api.EventRegistering, api.EventInstalling, api.EventCrashed}
	if d := cmp.Diff(want, eventNames(h.fake.Events(id))); d != "" {
		t.Errorf("events (-want +got):\n%s", d)
	}
}

func TestRunRegisterRefused(t *testing.T) {
	h := newHarness(t)
	h.fake.Fail("Register", errors.New("database on fire"))
	err := <-h.run(t)
	if err == nil || !strings.Contains(err.Error(), "register") {
		t.Fatalf("Run = %v, want a register error", err)
	}
	h.cfg.Token = "wrong"
	if err := <-h.run(t); err == nil || !strings.Contains(err.Error(), "Unauthenticated") {
		t.Errorf("bad token: %v", err)
	}
}

func TestPrimaryDisks(t *testing.T) {
	l := api.FilesystemLayout{Disks: []api.Disk{{Device: "/dev/sda"}, {Device: "/dev/sdb"}}}
	p, d := primaryDisks(l)
	if !slices.Equal(p, []string{"/dev/sda"}) || !slices.Equal(d, []string{"/dev/sdb"}) {
		t.Errorf("unmarked: primary %v data %v", p, d)
	}
	l.Disks[1].WipeOnReinstall = true
	p, d = primaryDisks(l)
	if !slices.Equal(p, []string{"/dev/sdb"}) || !slices.Equal(d, []string{"/dev/sda"}) {
		t.Errorf("marked: primary %v data %v", p, d)
	}
}
