package bootrpc_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/auth"
	"github.com/metalforge/metalforge/pkg/bootrpc"
	"github.com/metalforge/metalforge/pkg/bootrpc/bootpb"
	"github.com/metalforge/metalforge/pkg/bootrpc/bootrpctest"
	"github.com/metalforge/metalforge/pkg/store"
)

const (
	macA = "aa:bb:cc:00:00:01" // NIC of machine m-a in partition a
	macB = "aa:bb:cc:00:00:02" // NIC of machine m-b in partition b
)

// tokens are the callers of every test.
var tokens = bootrpctest.Tokens{
	"admin":   {TokenID: "t-admin", Role: api.RoleAdmin},
	"service": {TokenID: "t-svc", Role: api.RoleService},
	"svc-b":   {TokenID: "t-svc-b", Role: api.RoleService, PartitionID: "b"},
	"boot-a":  {TokenID: "t-boot-a", Role: auth.RoleBoot, PartitionID: "a"},
	"boot-b":  {TokenID: "t-boot-b", Role: auth.RoleBoot, PartitionID: "b"},
	"viewer":  {TokenID: "t-viewer", Role: api.RoleViewer, ProjectID: "p1"},
	"owner":   {TokenID: "t-owner", Role: api.RoleOwner, ProjectID: "p1"},
}

// env is a running boot service with two machines, m-a in partition a and m-b in partition b.
type env struct {
	machines *bootrpctest.Machines
	target   string
	log      *syncBuffer
}

type envOption func(*bootrpc.Config)

func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	e := &env{machines: bootrpctest.NewMachines(), log: &syncBuffer{}}
	e.machines.Put(machine("m-a", "a", macA))
	e.machines.Put(machine("m-b", "b", macB))
	cfg := bootrpc.Config{
		Machines:          e.machines,
		Auth:              tokens,
		KeepaliveInterval: 20 * time.Millisecond,
		Log:               slog.New(slog.NewJSONHandler(e.log, nil)),
	}
	for _, o := range opts {
		o(&cfg)
	}
	e.target = bootrpctest.Serve(t, cfg)
	return e
}

func machine(id, partition, mac string) api.Machine {
	return api.Machine{
		Meta:        api.Meta{ID: id},
		PartitionID: partition,
		SizeID:      "c1-small",
		Hardware:    api.MachineHardware{NICs: []api.MachineNIC{{Name: "eth0", MAC: mac}}},
	}
}

// client dials the env with token.
func (e *env) client(t *testing.T, token string) bootpb.BootClient {
	t.Helper()
	c, closer, err := bootrpc.Dial(t.Context(), e.target, token)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { _ = closer.Close() })
	return c
}

// bounded returns a context that ends the test's RPCs if the server hangs.
func bounded(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wantCode fails the test unless err carries code.
func wantCode(t *testing.T, err error, code codes.Code) {
	t.Helper()
	if got := status.Code(err); got != code {
		t.Fatalf("got code %v (%v), want %v", got, err, code)
	}
}

// syncBuffer is a log sink the server goroutines and the test may use concurrently.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestDhcp(t *testing.T) {
	tests := []struct {
		name, token, partition, mac string
		want                        string
		code                        codes.Code
	}{
		{name: "known mac", token: "boot-a", partition: "a", mac: macA, want: "m-a"},
		{name: "mac in other notation", token: "boot-a", partition: "a", mac: "AA-BB-CC-00-00-01", want: "m-a"},
		{name: "partition from token", token: "boot-a", mac: macA, want: "m-a"},
		{name: "admin any partition", token: "admin", partition: "b", mac: macB, want: "m-b"},
		{name: "unknown mac", token: "boot-a", partition: "a", mac: "aa:bb:cc:00:00:99", code: codes.NotFound},
		{name: "mac of other partition", token: "boot-a", partition: "a", mac: macB, code: codes.NotFound},
		{name: "invalid mac", token: "boot-a", partition: "a", mac: "not-a-mac", code: codes.InvalidArgument},
		{name: "other partition", token: "boot-a", partition: "b", mac: macB, code: codes.PermissionDenied},
		{name: "no partition", token: "admin", mac: macA, code: codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			resp, err := e.client(t, tt.token).Dhcp(bounded(t), &bootpb.DhcpRequest{PartitionId: tt.partition, Mac: tt.mac})
			wantCode(t, err, tt.code)
			if tt.code != codes.OK {
				if n := len(e.machines.Events("m-a")) + len(e.machines.Events("m-b")); n != 0 {
					t.Errorf("failed call recorded %d events", n)
				}
				return
			}
			if resp.GetMachineId() != tt.want {
				t.Errorf("machine id %q, want %q", resp.GetMachineId(), tt.want)
			}
			want := []api.EventRequest{{Event: api.EventPXEBooting}}
			if diff := cmp.Diff(want, e.machines.Events(tt.want)); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBoot(t *testing.T) {
	e := newEnv(t)
	installed := machine("m-inst", "a", "aa:bb:cc:00:00:03")
	installed.Allocation = &api.MachineAllocation{ProjectID: "p1", BootInfo: &api.BootInfo{
		Kernel: "/boot/vmlinuz", Initrd: "/boot/initrd.img", Cmdline: "console=ttyS0 root=UUID=1",
	}}
	e.machines.Put(installed)
	c := e.client(t, "boot-a")

	tests := []struct {
		name string
		mac  string
		want *bootpb.BootResponse
	}{
		{"unknown mac boots hammer", "aa:bb:cc:00:00:99", &bootpb.BootResponse{
			Action: api.BootActionHammer, Kernel: "http://boot/vmlinuz", Initrd: "http://boot/hammer.img",
		}},
		{"waiting machine boots hammer", macA, &bootpb.BootResponse{
			MachineId: "m-a", Action: api.BootActionHammer, Kernel: "http://boot/vmlinuz", Initrd: "http://boot/hammer.img",
		}},
		{"installed machine boots disk", "AA:BB:CC:00:00:03", &bootpb.BootResponse{
			MachineId: "m-inst", Action: api.BootActionDisk, Kernel: "/boot/vmlinuz", Initrd: "/boot/initrd.img", Cmdline: "console=ttyS0 root=UUID=1",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.Boot(bounded(t), &bootpb.BootRequest{PartitionId: "a", Mac: tt.mac})
			if err != nil {
				t.Fatalf("Boot: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, protocmp.Transform()); diff != "" {
				t.Errorf("response (-want +got):\n%s", diff)
			}
		})
	}

	_, err := c.Boot(bounded(t), &bootpb.BootRequest{PartitionId: "b", Mac: macB})
	wantCode(t, err, codes.PermissionDenied)
	_, err = c.Boot(bounded(t), &bootpb.BootRequest{PartitionId: "a", Mac: ""})
	wantCode(t, err, codes.InvalidArgument)
}

func TestRegister(t *testing.T) {
	fresh := machine("m-new", "", "aa:bb:cc:00:00:10")
	fresh.SizeID = ""
	fresh.Hardware.Memory = 64 << 30
	inB := machine("m-new", "b", "aa:bb:cc:00:00:10")
	takeover := machine("m-b", "a", macB)

	tests := []struct {
		name    string
		token   string
		body    []byte
		want    *bootpb.RegisterResponse
		code    codes.Code
		stored  string // machine ID whose partition is checked afterwards
		storedP string
	}{
		{name: "partition from token", token: "boot-a", body: mustJSON(t, fresh),
			want: &bootpb.RegisterResponse{MachineId: "m-new", SizeId: "unknown", PartitionId: "a"}, stored: "m-new", storedP: "a"},
		{name: "re-register own machine", token: "boot-a", body: mustJSON(t, machine("m-a", "a", macA)),
			want: &bootpb.RegisterResponse{MachineId: "m-a", SizeId: "c1-small", PartitionId: "a"}, stored: "m-a", storedP: "a"},
		{name: "admin names partition", token: "admin", body: mustJSON(t, inB),
			want: &bootpb.RegisterResponse{MachineId: "m-new", SizeId: "c1-small", PartitionId: "b"}, stored: "m-new", storedP: "b"},
		{name: "other partition", token: "boot-a", body: mustJSON(t, inB), code: codes.PermissionDenied},
		{name: "take over machine of other partition", token: "boot-a", body: mustJSON(t, takeover),
			code: codes.PermissionDenied, stored: "m-b", storedP: "b"},
		{name: "admin without partition", token: "admin", body: mustJSON(t, fresh), code: codes.InvalidArgument},
		{name: "malformed json", token: "boot-a", body: []byte(`{"id": "m-new",`), code: codes.InvalidArgument},
		{name: "wrong json type", token: "boot-a", body: []byte(`{"id": 7}`), code: codes.InvalidArgument},
		{name: "empty body", token: "boot-a", code: codes.InvalidArgument},
		{name: "no id", token: "boot-a", body: []byte(`{"partitionID": "a"}`), code: codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			got, err := e.client(t, tt.token).Register(bounded(t), &bootpb.RegisterRequest{MachineJson: tt.body})
			wantCode(t, err, tt.code)
			if tt.code == codes.OK {
				if diff := cmp.Diff(tt.want, got, protocmp.Transform()); diff != "" {
					t.Errorf("response (-want +got):\n%s", diff)
				}
			}
			if tt.stored != "" {
				m, err := e.machines.Get(t.Context(), tt.stored)
				if err != nil {
					t.Fatalf("Get %s: %v", tt.stored, err)
				}
				if m.PartitionID != tt.storedP {
					t.Errorf("stored partition %q, want %q", m.PartitionID, tt.storedP)
				}
			}
			if tt.code != codes.OK && tt.stored == "" {
				if _, err := e.machines.Get(t.Context(), "m-new"); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("failed Register stored m-new (Get: %v)", err)
				}
			}
		})
	}

	t.Run("inventory reaches machines", func(t *testing.T) {
		e := newEnv(t)
		if _, err := e.client(t, "boot-a").Register(bounded(t), &bootpb.RegisterRequest{MachineJson: mustJSON(t, fresh)}); err != nil {
			t.Fatalf("Register: %v", err)
		}
		m, err := e.machines.Get(t.Context(), "m-new")
		if err != nil {
			t.Fatal(err)
		}
		if m.Hardware.Memory != fresh.Hardware.Memory || len(m.Hardware.NICs) != 1 || m.Hardware.NICs[0].MAC != "aa:bb:cc:00:00:10" {
			t.Errorf("stored hardware %+v, want %+v", m.Hardware, fresh.Hardware)
		}
	})
}

func TestReport(t *testing.T) {
	e := newEnv(t)
	if err := e.machines.Allocate("m-a", api.InstallSpec{}); err != nil {
		t.Fatal(err)
	}
	c := e.client(t, "boot-a")
	report := api.InstallReport{Success: true, BootInfo: &api.BootInfo{ImageID: "debian-12", PrimaryDisk: "/dev/sda", Kernel: "/boot/vmlinuz"}}

	if _, err := c.Report(bounded(t), &bootpb.ReportRequest{MachineId: "m-a", InstallReportJson: mustJSON(t, report)}); err != nil {
		t.Fatalf("Report: %v", err)
	}
	if diff := cmp.Diff([]api.InstallReport{report}, e.machines.Reports("m-a")); diff != "" {
		t.Errorf("reports (-want +got):\n%s", diff)
	}

	_, err := c.Report(bounded(t), &bootpb.ReportRequest{MachineId: "m-a", InstallReportJson: []byte("{")})
	wantCode(t, err, codes.InvalidArgument)
	_, err = c.Report(bounded(t), &bootpb.ReportRequest{InstallReportJson: mustJSON(t, report)})
	wantCode(t, err, codes.InvalidArgument)
	_, err = c.Report(bounded(t), &bootpb.ReportRequest{MachineId: "m-b", InstallReportJson: mustJSON(t, report)})
	wantCode(t, err, codes.PermissionDenied)
	_, err = c.Report(bounded(t), &bootpb.ReportRequest{MachineId: "m-gone", InstallReportJson: mustJSON(t, report)})
	wantCode(t, err, codes.NotFound)
	// The fake refuses a report for an unallocated machine with store.ErrConflict.
	_, err = e.client(t, "boot-b").Report(bounded(t), &bootpb.ReportRequest{MachineId: "m-b", InstallReportJson: mustJSON(t, report)})
	wantCode(t, err, codes.Aborted)
	if n := len(e.machines.Reports("m-a")) + len(e.machines.Reports("m-b")); n != 1 {
		t.Errorf("%d reports recorded, want 1", n)
	}
}

func TestReportWipe(t *testing.T) {
	e := newEnv(t)
	c := e.client(t, "boot-a")
	rec := api.WipeRecord{
		Time:  time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
		Disks: []api.DiskWipe{{Device: "/dev/sda", Method: "discard", Bytes: 1 << 40, Verified: true, Samples: 64}},
	}
	if _, err := c.ReportWipe(bounded(t), &bootpb.ReportWipeRequest{MachineId: "m-a", WipeRecordJson: mustJSON(t, rec)}); err != nil {
		t.Fatalf("ReportWipe: %v", err)
	}
	if diff := cmp.Diff([]api.WipeRecord{rec}, e.machines.Wipes("m-a")); diff != "" {
		t.Errorf("wipes (-want +got):\n%s", diff)
	}
	_, err := c.ReportWipe(bounded(t), &bootpb.ReportWipeRequest{MachineId: "m-a", WipeRecordJson: []byte(`{"disks": "x"}`)})
	wantCode(t, err, codes.InvalidArgument)
	_, err = c.ReportWipe(bounded(t), &bootpb.ReportWipeRequest{MachineId: "m-a"})
	wantCode(t, err, codes.InvalidArgument)
	_, err = c.ReportWipe(bounded(t), &bootpb.ReportWipeRequest{MachineId: "m-b", WipeRecordJson: mustJSON(t, rec)})
	wantCode(t, err, codes.PermissionDenied)
	if got := e.machines.Wipes("m-b"); len(got) != 0 {
		t.Errorf("denied wipe recorded: %v", got)
	}
}

func TestAbortReinstall(t *testing.T) {
	e := newEnv(t)
	old := &api.BootInfo{ImageID: "debian-12", PrimaryDisk: "/dev/sda", Kernel: "/boot/vmlinuz", Cmdline: "root=UUID=1"}
	m := machine("m-re", "a", "aa:bb:cc:00:00:20")
	m.Allocation = &api.MachineAllocation{ProjectID: "p1", Reinstall: true, BootInfo: old}
	e.machines.Put(m)
	c := e.client(t, "boot-a")

	resp, err := c.AbortReinstall(bounded(t), &bootpb.AbortReinstallRequest{MachineId: "m-re"})
	if err != nil {
		t.Fatalf("AbortReinstall: %v", err)
	}
	var got api.BootInfo
	if err := json.Unmarshal(resp.GetBootInfoJson(), &got); err != nil {
		t.Fatalf("boot_info_json: %v", err)
	}
	if diff := cmp.Diff(*old, got); diff != "" {
		t.Errorf("boot info (-want +got):\n%s", diff)
	}

	resp, err = c.AbortReinstall(bounded(t), &bootpb.AbortReinstallRequest{MachineId: "m-re", PrimaryDiskWiped: true})
	if err != nil {
		t.Fatalf("AbortReinstall wiped: %v", err)
	}
	if len(resp.GetBootInfoJson()) != 0 {
		t.Errorf("boot info after wipe: %s, want none", resp.GetBootInfoJson())
	}
	if diff := cmp.Diff([]bool{false, true}, e.machines.Aborts("m-re")); diff != "" {
		t.Errorf("abort calls (-want +got):\n%s", diff)
	}

	_, err = c.AbortReinstall(bounded(t), &bootpb.AbortReinstallRequest{MachineId: "m-b"})
	wantCode(t, err, codes.PermissionDenied)
	_, err = c.AbortReinstall(bounded(t), &bootpb.AbortReinstallRequest{})
	wantCode(t, err, codes.InvalidArgument)
}

func TestEvent(t *testing.T) {
	tests := []struct {
		name, token, machine, event string
		code                        codes.Code
	}{
		{name: "own machine", token: "boot-a", machine: "m-a", event: api.EventPreparing},
		{name: "unscoped service", token: "service", machine: "m-b", event: api.EventAlive},
		{name: "unknown event", token: "boot-a", machine: "m-a", event: "Dancing", code: codes.InvalidArgument},
		{name: "empty event", token: "boot-a", machine: "m-a", code: codes.InvalidArgument},
		{name: "no machine id", token: "boot-a", event: api.EventPreparing, code: codes.InvalidArgument},
		{name: "unknown machine", token: "boot-a", machine: "m-gone", event: api.EventPreparing, code: codes.NotFound},
		{name: "other partition", token: "boot-a", machine: "m-b", event: api.EventPreparing, code: codes.PermissionDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			_, err := e.client(t, tt.token).Event(bounded(t), &bootpb.EventRequest{MachineId: tt.machine, Event: tt.event, Message: "hello"})
			wantCode(t, err, tt.code)
			var want []api.EventRequest
			if tt.code == codes.OK {
				want = []api.EventRequest{{Event: tt.event, Message: "hello"}}
			}
			if diff := cmp.Diff(want, e.machines.Events(tt.machine)); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
}

func TestErrorMapping(t *testing.T) {
	tests := []struct {
		err  error
		code codes.Code
	}{
		{fmt.Errorf("machine m-a: %w", store.ErrNotFound), codes.NotFound},
		{fmt.Errorf("update machine: %w", store.ErrConflict), codes.Aborted},
		{fmt.Errorf("create machine: %w", store.ErrDuplicate), codes.AlreadyExists},
		{fmt.Errorf("acquire asn: %w", store.ErrExhausted), codes.ResourceExhausted},
		{fmt.Errorf("bad inventory: %w", bootrpc.ErrInvalid), codes.InvalidArgument},
		{fmt.Errorf("read: %w", context.Canceled), codes.Canceled},
		{fmt.Errorf("read: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{errors.New("disk on fire"), codes.Internal},
	}
	for _, tt := range tests {
		t.Run(tt.code.String(), func(t *testing.T) {
			e := newEnv(t)
			e.machines.Fail("Event", tt.err)
			_, err := e.client(t, "boot-a").Event(bounded(t), &bootpb.EventRequest{MachineId: "m-a", Event: api.EventPreparing})
			wantCode(t, err, tt.code)
			msg := status.Convert(err).Message()
			logged := e.log.String()
			if tt.code != codes.Internal {
				if msg != tt.err.Error() {
					t.Errorf("message %q, want %q", msg, tt.err.Error())
				}
				if logged != "" {
					t.Errorf("mapped error was logged: %s", logged)
				}
				return
			}
			if strings.Contains(msg, "disk on fire") {
				t.Errorf("internal error leaked to the client: %q", msg)
			}
			var rec struct {
				Msg, Method, Error string
			}
			if err := json.Unmarshal([]byte(strings.TrimSpace(logged)), &rec); err != nil {
				t.Fatalf("log %q: %v", logged, err)
			}
			want := struct{ Msg, Method, Error string }{"boot service call failed", "/metalforge.boot.v1.Boot/Event", "disk on fire"}
			if diff := cmp.Diff(want, struct{ Msg, Method, Error string }(rec)); diff != "" {
				t.Errorf("log record (-want +got):\n%s", diff)
			}
		})
	}
}
