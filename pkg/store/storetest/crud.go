package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/store"
)

// entity is a pointer to an aggregate.
type entity[T any] interface {
	*T
	GetMeta() *api.Meta
}

// cmpOpts compare entities as stored: timestamps to the millisecond (a backend may round them),
// nil and empty slices and maps alike (JSON omitempty drops empty ones).
var cmpOpts = cmp.Options{cmpopts.EquateApproxTime(time.Millisecond), cmpopts.EquateEmpty()}

// crudCase describes one kind for the CRUD test.
type crudCase[T any] struct {
	table func(store.Tx) store.Table[T]
	// fixture returns an entity with every field set.
	fixture func(id string) *T
	// mutate changes fields other than Meta.
	mutate func(*T)
}

func testCRUD(t *testing.T, s store.Store) {
	ts := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	tests := []struct {
		name string
		run  func(t *testing.T, s store.Store)
	}{
		{"partitions", crud(crudCase[api.Partition]{
			table:   partitions,
			fixture: partitionFixture,
			mutate:  func(p *api.Partition) { p.Boot.Cmdline = "console=ttyS1"; p.Labels["tier"] = "gold" },
		})},
		{"projects", crud(crudCase[api.Project]{
			table: projects,
			fixture: func(id string) *api.Project {
				n := 3
				return &api.Project{Meta: meta(id), Tenant: "acme", Quotas: api.Quotas{Machines: &n, IPs: &n},
					Labels: map[string]string{"cost": "42"}}
			},
			mutate: func(p *api.Project) { p.Quotas.Networks = new(int) },
		})},
		{"sizes", crud(crudCase[api.Size]{
			table: func(tx store.Tx) store.Table[api.Size] { return tx.Sizes() },
			fixture: func(id string) *api.Size {
				return &api.Size{Meta: meta(id), Labels: map[string]string{"gen": "3"}, Constraints: []api.Constraint{
					{Type: api.ConstraintCores, Min: 8, Max: 16, Identifier: "AMD*"},
					{Type: api.ConstraintMemory, Min: 1 << 34, Max: 1 << 35},
				}}
			},
			mutate: func(s *api.Size) { s.Constraints[0].Max = 32 },
		})},
		{"sizereservations", crud(crudCase[api.SizeReservation]{
			table: func(tx store.Tx) store.Table[api.SizeReservation] { return tx.SizeReservations() },
			fixture: func(id string) *api.SizeReservation {
				return &api.SizeReservation{Meta: meta(id), SizeID: "c1-large", Amount: 3, ProjectID: "p1",
					PartitionIDs: []string{"fra", "ber"}}
			},
			mutate: func(r *api.SizeReservation) { r.Amount = 5 },
		})},
		{"images", crud(crudCase[api.Image]{
			table: func(tx store.Tx) store.Table[api.Image] { return tx.Images() },
			fixture: func(id string) *api.Image {
				return &api.Image{Meta: meta(id), URL: "http://images/ubuntu.tar.lz4", SHA256: "ab12", OS: "ubuntu",
					OSVersion: "24.04", Features: []string{api.FeatureMachine},
					Classification: api.ClassificationSupported, ExpirationDate: &ts}
			},
			mutate: func(i *api.Image) { i.Classification = api.ClassificationDeprecated },
		})},
		{"filesystemlayouts", crud(crudCase[api.FilesystemLayout]{
			table:   func(tx store.Tx) store.Table[api.FilesystemLayout] { return tx.FilesystemLayouts() },
			fixture: layoutFixture,
			mutate:  func(l *api.FilesystemLayout) { l.Filesystems[0].Label = "ROOT" },
		})},
		{"machines", crud(crudCase[api.Machine]{
			table:   machines,
			fixture: func(id string) *api.Machine { return machineFixture(id, ts) },
			mutate: func(m *api.Machine) {
				m.Allocation = nil
				m.Waiting = true
				m.Hardware.NICs[0].Name = "eth9"
			},
		})},
		{"eventlogs", crud(crudCase[api.MachineEventLog]{
			table: eventLogs,
			fixture: func(id string) *api.MachineEventLog {
				return &api.MachineEventLog{Meta: meta(id), Events: []api.ProvisioningEvent{
					{Time: ts, Event: api.EventPXEBooting},
					{Time: ts.Add(time.Minute), Event: api.EventCrashed, Message: "panic", Unexpected: true},
				}, IncompleteProvisioningCycles: 2, CrashLoop: true, FailedMachineReclaim: true,
					Liveliness: api.LivelinessAlive}
			},
			mutate: func(l *api.MachineEventLog) {
				l.Events = append(l.Events, api.ProvisioningEvent{Time: ts.Add(time.Hour), Event: api.EventAlive})
			},
		})},
		{"networks", crud(crudCase[api.Network]{
			table:   networks,
			fixture: func(id string) *api.Network { return networkFixture(id, "10.1.0.0/16", 7) },
			mutate:  func(n *api.Network) { n.Prefixes = append(n.Prefixes, "fd00:1::/64"); n.NAT = false },
		})},
		{"ips", crud(crudCase[api.IP]{
			table: func(tx store.Tx) store.Table[api.IP] { return tx.IPs() },
			fixture: func(id string) *api.IP {
				return &api.IP{Meta: meta(id), Address: id, NetworkID: "n1", ProjectID: "p1", Type: api.IPStatic,
					Tags: []string{"a=b"}, MachineID: "m1"}
			},
			mutate: func(ip *api.IP) { ip.MachineID = ""; ip.Type = api.IPEphemeral },
		})},
		{"switches", crud(crudCase[api.Switch]{
			table: func(tx store.Tx) store.Table[api.Switch] { return tx.Switches() },
			fixture: func(id string) *api.Switch {
				return &api.Switch{Meta: meta(id), PartitionID: "fra", RackID: "r1",
					OS: api.SwitchOS{Vendor: "SONiC", Version: "202311"}, ManagementIP: "192.0.2.1",
					Ports: []api.SwitchPort{{Name: "Ethernet0", MAC: "aa:00:00:00:00:01", VRF: "vrf7",
						DesiredState: "UP", ActualState: "UP", BGPState: "Established"}},
					Connections: []api.SwitchConnection{{Port: "Ethernet0", MachineID: "m1", NICMAC: "aa:bb"}},
					LastSync:    &api.SwitchSync{Time: ts, Duration: 1500 * time.Millisecond, Error: "none"}}
			},
			mutate: func(s *api.Switch) { s.Ports[0].ActualState = "DOWN" },
		})},
		{"bmccommands", crud(crudCase[api.BMCCommand]{
			table: func(tx store.Tx) store.Table[api.BMCCommand] { return tx.BMCCommands() },
			fixture: func(id string) *api.BMCCommand {
				return &api.BMCCommand{Meta: meta(id), MachineID: "m1", PartitionID: "fra", Command: api.PowerCycle}
			},
			mutate: func(c *api.BMCCommand) { c.Done = &ts; c.Error = "timeout" },
		})},
		{"tokens", crud(crudCase[api.Token]{
			table: tokens,
			fixture: func(id string) *api.Token {
				return &api.Token{Meta: meta(id), Role: api.RoleEditor, ProjectID: "p1", PartitionID: "fra",
					Expires: &ts, Secret: "sha256:" + id}
			},
			mutate: func(tk *api.Token) { tk.Role = api.RoleViewer },
		})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, s) })
	}
}

// crud checks create, get, update (fresh and stale), duplicate create and delete of one kind.
func crud[T any, P entity[T]](c crudCase[T]) func(t *testing.T, s store.Store) {
	return func(t *testing.T, s store.Store) {
		const id = "e-1"
		e := c.fixture(id)
		before := time.Now()
		write(t, s, func(ctx context.Context, tx store.Tx) error { return c.table(tx).Create(ctx, e) })
		after := time.Now()
		m := P(e).GetMeta()
		if m.Version != 1 {
			t.Errorf("create: version %d, want 1", m.Version)
		}
		if m.Created.Before(before.Add(-time.Second)) || m.Created.After(after.Add(time.Second)) {
			t.Errorf("create: created %v, want between %v and %v", m.Created, before, after)
		}
		if !m.Changed.Equal(m.Created) {
			t.Errorf("create: changed %v, want created %v", m.Changed, m.Created)
		}

		got := mustGet(t, s, c.table, id)
		if diff := cmp.Diff(e, got, cmpOpts); diff != "" {
			t.Errorf("get after create (-want +got):\n%s", diff)
		}

		// Update from what was read: the version goes up, everything round-trips.
		stale := clone(t, got)
		upd := clone(t, got)
		c.mutate(upd)
		write(t, s, func(ctx context.Context, tx store.Tx) error { return c.table(tx).Update(ctx, upd) })
		um := P(upd).GetMeta()
		if um.Version != 2 {
			t.Errorf("update: version %d, want 2", um.Version)
		}
		if um.Changed.Before(um.Created) || !um.Created.Equal(m.Created) {
			t.Errorf("update: created %v changed %v, want created %v and changed not before it", um.Created, um.Changed, m.Created)
		}
		got = mustGet(t, s, c.table, id)
		if diff := cmp.Diff(upd, got, cmpOpts); diff != "" {
			t.Errorf("get after update (-want +got):\n%s", diff)
		}

		// A stale update conflicts and changes nothing, not even the caller's version.
		P(stale).GetMeta().Description = "stale"
		err := try(t, s, func(ctx context.Context, tx store.Tx) error { return c.table(tx).Update(ctx, stale) })
		wantErr(t, "stale update", err, store.ErrConflict)
		if v := P(stale).GetMeta().Version; v != 1 {
			t.Errorf("stale update: caller's version %d, want 1 restored", v)
		}
		if diff := cmp.Diff(upd, mustGet(t, s, c.table, id), cmpOpts); diff != "" {
			t.Errorf("get after stale update (-want +got):\n%s", diff)
		}

		// A second create of the ID is a duplicate and changes nothing.
		ctx := testContext(t)
		err = s.Write(ctx, func(tx store.Tx) error { return c.table(tx).Create(ctx, c.fixture(id)) })
		wantErr(t, "duplicate create", err, store.ErrDuplicate)
		if diff := cmp.Diff(upd, mustGet(t, s, c.table, id), cmpOpts); diff != "" {
			t.Errorf("get after duplicate create (-want +got):\n%s", diff)
		}

		// Updating what does not exist is not found, not a conflict.
		ghost := c.fixture("ghost")
		P(ghost).GetMeta().Version = 1
		err = s.Write(ctx, func(tx store.Tx) error { return c.table(tx).Update(ctx, ghost) })
		wantErr(t, "update of a missing entity", err, store.ErrNotFound)
		wantNotFound(t, s, c.table, "ghost")

		write(t, s, func(ctx context.Context, tx store.Tx) error { return c.table(tx).Delete(ctx, id) })
		wantNotFound(t, s, c.table, id)
		err = s.Write(ctx, func(tx store.Tx) error { return c.table(tx).Delete(ctx, id) })
		wantErr(t, "second delete", err, store.ErrNotFound)
		read(t, s, func(ctx context.Context, tx store.Tx) error {
			n, err := c.table(tx).Count(ctx, store.Query{})
			if err != nil {
				return err
			}
			if n != 0 {
				t.Errorf("count after delete = %d, want 0", n)
			}
			return nil
		})

		// The ID can be used again and starts over at version 1.
		again := c.fixture(id)
		write(t, s, func(ctx context.Context, tx store.Tx) error { return c.table(tx).Create(ctx, again) })
		if v := mustGet(t, s, c.table, id); P(v).GetMeta().Version != 1 {
			t.Errorf("re-create: version %d, want 1", P(v).GetMeta().Version)
		}
	}
}

func meta(id string) api.Meta {
	return api.Meta{ID: id, Name: "name-" + id, Description: "description of " + id}
}

func partitionFixture(id string) *api.Partition {
	return &api.Partition{Meta: meta(id),
		Boot:               api.BootConfig{KernelURL: "http://boot/vmlinuz", InitrdURL: "http://boot/initrd", Cmdline: "console=ttyS0"},
		MgmtServiceAddress: "10.0.0.1:50051", DNSServers: []string{"1.1.1.1"}, NTPServers: []string{"ntp.example"},
		Labels: map[string]string{"region": "eu"}}
}

func layoutFixture(id string) *api.FilesystemLayout {
	return &api.FilesystemLayout{Meta: meta(id),
		Constraints: api.LayoutConstraints{Sizes: []string{"c1-large"}, Images: map[string]string{"ubuntu": "*"}},
		Disks: []api.Disk{{Device: "/dev/sda", WipeOnReinstall: true, Partitions: []api.DiskPartition{
			{Number: 1, Label: "efi", Size: 500, GPTType: "ef00"}, {Number: 2, Label: "root", GPTType: "8300"}}}},
		Raid:           []api.Raid{{ArrayName: "/dev/md0", Devices: []string{"/dev/sdb", "/dev/sdc"}, Level: "1"}},
		VolumeGroups:   []api.VolumeGroup{{Name: "vg0", Devices: []string{"/dev/md0"}}},
		LogicalVolumes: []api.LogicalVolume{{Name: "data", VolumeGroup: "vg0", Size: 1024}},
		Filesystems: []api.Filesystem{{Device: "/dev/sda2", Format: "ext4", Label: "root", Path: "/",
			MountOptions: []string{"noatime"}, CreateOptions: []string{"-F"}}},
	}
}

func machineFixture(id string, ts time.Time) *api.Machine {
	return &api.Machine{Meta: meta(id), PartitionID: "fra", RackID: "r1", SizeID: "c1-large",
		Hardware: api.MachineHardware{
			CPUs:   []api.MachineCPU{{Vendor: "AMD", Model: "EPYC", Cores: 16, Threads: 32}},
			Memory: 1 << 36,
			Disks:  []api.MachineBlockDevice{{Name: "/dev/sda", Size: 1 << 40, Model: "SSD", Serial: "S1", Rotational: false}},
			NICs: []api.MachineNIC{{Name: "eth0", MAC: "aa:00:00:00:00:" + id[len(id)-2:],
				Neighbors: []api.LLDPNeighbor{{ChassisID: "sw1", SystemName: "leaf01", PortID: "Ethernet0"}}}},
			GPUs: []api.MachineGPU{{Vendor: "NVIDIA", Model: "H100"}},
		},
		BIOS: api.MachineBIOS{Vendor: "AMI", Version: "2.1", Date: "2023-01-01"},
		BMC: api.MachineBMC{Address: "192.0.2.10:623", MAC: "bb:00:00:00:00:01", User: "admin", Password: "secret",
			Vendor: "Supermicro", PowerState: "ON", PowerReported: &ts},
		State: api.MachineState{Value: api.StateLocked, Description: "maintenance"},
		LED:   api.MachineLED{Value: "on", Description: "find me"},
		Tags:  []string{"a=b"},
		Allocation: &api.MachineAllocation{Created: ts, Creator: "alice", ProjectID: "p1", Name: "web", Hostname: "web-1",
			Description: "frontend", ImageID: "ubuntu-24.04", FilesystemLayoutID: "default",
			Networks: []api.MachineNetwork{{NetworkID: "n1", NetworkType: api.NetworkPrivate, Prefixes: []string{"10.1.0.0/24"},
				IPs: []string{"10.1.0.5"}, DestinationPrefixes: []string{"0.0.0.0/0"}, VRF: 7, ASN: 4200000001,
				Private: true, Underlay: false, NAT: true}},
			SSHPubKeys: []string{"ssh-ed25519 AAAA"}, UserData: "#cloud-config", Role: api.RoleMachine, Reinstall: true,
			BootInfo: &api.BootInfo{ImageID: "ubuntu-24.04", PrimaryDisk: "/dev/sda", OSPartition: "/dev/sda2",
				Kernel: "/boot/vmlinuz", Initrd: "/boot/initrd", Cmdline: "root=/dev/sda2", BootloaderID: "ubuntu"},
			Succeeded: true},
		PreAllocated: true,
		Liveliness:   api.LivelinessAlive,
		LastEvent:    &api.ProvisioningEvent{Time: ts, Event: api.EventPhonedHome, Message: "hi"},
		CrashLoop:    true, FailedMachineReclaim: true,
		LastWipe: &api.WipeRecord{Time: ts, Disks: []api.DiskWipe{
			{Device: "/dev/sda", Method: "discard", Bytes: 1 << 40, Verified: true, Samples: 64}}},
	}
}

func networkFixture(id, prefix string, vrf uint32) *api.Network {
	return &api.Network{Meta: meta(id), Type: api.NetworkPrivate, Prefixes: []string{prefix},
		DestinationPrefixes: []string{"0.0.0.0/0"}, PartitionID: "fra", ProjectID: "p1", ParentNetworkID: "super",
		VRF: vrf, NAT: true, ChildPrefixLength: 22, Labels: map[string]string{"k": "v"}}
}
