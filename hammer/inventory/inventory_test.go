package inventory

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/lldp"
)

func TestCollectServer(t *testing.T) {
	listened := map[string]time.Duration{}
	var mu sync.Mutex // the listeners run concurrently
	cfg := Config{
		Root:         "testdata/server1",
		LLDPDuration: 3 * time.Second,
		Neighbors: func(_ context.Context, ifname string, d time.Duration) ([]lldp.Neighbor, error) {
			mu.Lock()
			defer mu.Unlock()
			switch ifname {
			case "eno1":
				listened[ifname] = d
				return []lldp.Neighbor{{ChassisID: "44:38:39:00:00:01", PortID: "swp1", SystemName: "leaf01"}}, nil
			case "eno2":
				listened[ifname] = d
				return nil, errors.New("no carrier")
			}
			t.Errorf("listened on %s", ifname)
			return nil, nil
		},
	}
	inv, err := Collect(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := Inventory{
		ID:      "4c4c4544-0042-3510-8052-b4c04f4b4e32",
		Product: "Dell Inc. PowerEdge R640",
		BIOS:    api.MachineBIOS{Vendor: "Dell Inc.", Version: "2.12.2", Date: "07/09/2021"},
		Hardware: api.MachineHardware{
			CPUs: []api.MachineCPU{
				{Vendor: "GenuineIntel", Model: "Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz", Cores: 2, Threads: 4},
				{Vendor: "GenuineIntel", Model: "Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz", Cores: 2, Threads: 4},
			},
			Memory: 196608000 * 1024,
			Disks: []api.MachineBlockDevice{
				{Name: "nvme0n1", Size: 1875385008 * 512, Model: "SAMSUNG MZQLB960HAJR-00007", Serial: "S437NA0M123456"},
				{Name: "sda", Size: 7814037168 * 512, Model: "ST4000NM0035-1V4", Serial: "ZC1A2B3C", Rotational: true},
				{Name: "vda", Size: 20971520 * 512, Serial: "disk-vda-1"},
			},
			NICs: []api.MachineNIC{
				{Name: "eno1", MAC: "3c:ec:ef:10:20:31", Neighbors: []api.LLDPNeighbor{{ChassisID: "44:38:39:00:00:01", PortID: "swp1", SystemName: "leaf01"}}},
				{Name: "eno2", MAC: "3c:ec:ef:10:20:32"},
			},
			GPUs: []api.MachineGPU{{Vendor: "NVIDIA", Model: "0x10de:0x1eb8"}},
		},
	}
	if d := cmp.Diff(want, inv); d != "" {
		t.Errorf("inventory (-want +got):\n%s", d)
	}
	if d := cmp.Diff(map[string]time.Duration{"eno1": 3 * time.Second, "eno2": 3 * time.Second}, listened); d != "" {
		t.Errorf("lldp listening (-want +got):\n%s", d)
	}
	if got := inv.Hardware.Cores(); got != 4 {
		t.Errorf("cores = %d, want 4", got)
	}
	m := inv.Machine("fra-1")
	if m.ID != want.ID || m.PartitionID != "fra-1" || len(m.Hardware.Disks) != 3 {
		t.Errorf("machine = %+v", m)
	}
}

func TestCollectQEMUWithoutUUID(t *testing.T) {
	inv, err := Collect(context.Background(), Config{Root: "testdata/qemu"})
	if err != nil {
		t.Fatal(err)
	}
	if got := inv.Hardware.CPUs; len(got) != 1 || got[0].Cores != 2 || got[0].Threads != 2 || got[0].Vendor != "AuthenticAMD" {
		t.Errorf("cpus = %+v", got)
	}
	if inv.Hardware.Memory != 1002756*1024 {
		t.Errorf("memory = %d", inv.Hardware.Memory)
	}
	if len(inv.ID) != 36 || strings.Count(inv.ID, "-") != 4 || inv.ID[14] != '8' || strings.Trim(inv.ID, "0-") == "" {
		t.Errorf("derived id %q is not a version 8 uuid", inv.ID)
	}
	again, err := Collect(context.Background(), Config{Root: "testdata/qemu"})
	if err != nil || again.ID != inv.ID {
		t.Errorf("derived id not stable: %q then %q (%v)", inv.ID, again.ID, err)
	}
	if d := cmp.Diff([]api.MachineBlockDevice{{Name: "vda", Size: 4194304 * 512, Rotational: true}}, inv.Hardware.Disks); d != "" {
		t.Errorf("disks (-want +got):\n%s", d)
	}
}

func TestCollectErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Collect(context.Background(), Config{Root: dir}); err == nil || !strings.Contains(err.Error(), "cpuinfo") {
		t.Errorf("empty root: %v, want a cpuinfo error", err)
	}
	if err := os.MkdirAll(dir+"/proc", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir+"/proc/cpuinfo", []byte("processor : 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Collect(context.Background(), Config{Root: dir}); err == nil || !strings.Contains(err.Error(), "meminfo") {
		t.Errorf("no meminfo: %v, want a meminfo error", err)
	}
}

// TestCollectHost reads the machine the test runs on: it must find at least one CPU and memory.
func TestCollectHost(t *testing.T) {
	inv, err := Collect(context.Background(), Config{})
	if err != nil && !strings.Contains(err.Error(), "machine id") {
		t.Fatal(err)
	}
	if len(inv.Hardware.CPUs) == 0 || inv.Hardware.Memory == 0 {
		t.Errorf("host inventory = %+v", inv.Hardware)
	}
}
