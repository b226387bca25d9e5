package bootrpc_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/bootrpc"
	"github.com/metalforge/metalforge/pkg/bootrpc/bootpb"
)

func installSpec(machineID string) api.InstallSpec {
	return api.InstallSpec{
		Machine: api.Machine{Meta: api.Meta{ID: machineID}, PartitionID: "a", Allocation: &api.MachineAllocation{
			ProjectID: "p1", Hostname: "worker-1", ImageID: "debian-12", Role: api.RoleMachine,
		}},
		Image:      api.Image{Meta: api.Meta{ID: "debian-12"}, URL: "http://images/debian-12.tar.zst"},
		DNSServers: []string{"192.0.2.53"},
	}
}

func TestWaitKeepalivesThenSpec(t *testing.T) {
	e := newEnv(t)
	ctx := bounded(t)
	stream, err := e.client(t, "boot-a").Wait(ctx, &bootpb.WaitRequest{MachineId: "m-a"})
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	// At a 20ms interval, keepalives keep coming while the machine is unallocated.
	for i := range 3 {
		msg, err := stream.Recv()
		if err != nil {
			t.Fatalf("keepalive %d: %v", i, err)
		}
		if !msg.GetKeepalive() || len(msg.GetInstallSpecJson()) != 0 {
			t.Fatalf("message %d = %v, want a bare keepalive", i, msg)
		}
	}
	if err := e.machines.AwaitWaiters(ctx, "m-a", 1); err != nil {
		t.Fatal(err)
	}
	if m, _ := e.machines.Get(ctx, "m-a"); !m.Waiting {
		t.Error("machine not marked waiting")
	}

	spec := installSpec("m-a")
	if err := e.machines.Allocate("m-a", spec); err != nil {
		t.Fatal(err)
	}
	var final *bootpb.WaitResponse
	for final == nil {
		msg, err := stream.Recv()
		if err != nil {
			t.Fatalf("Recv before spec: %v", err)
		}
		if !msg.GetKeepalive() {
			final = msg
		}
	}
	var got api.InstallSpec
	if err := json.Unmarshal(final.GetInstallSpecJson(), &got); err != nil {
		t.Fatalf("install_spec_json: %v", err)
	}
	if diff := cmp.Diff(spec, got); diff != "" {
		t.Errorf("install spec (-want +got):\n%s", diff)
	}
	if msg, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after spec: %v, %v; want end of stream", msg, err)
	}
	if err := e.machines.AwaitWaiters(ctx, "m-a", 0); err != nil {
		t.Fatal(err)
	}
}

func TestWaitAllocatedReturnsAtOnce(t *testing.T) {
	// A long interval proves the spec does not wait for a keepalive tick.
	e := newEnv(t, func(c *bootrpc.Config) { c.KeepaliveInterval = time.Hour })
	spec := installSpec("m-a")
	if err := e.machines.Allocate("m-a", spec); err != nil {
		t.Fatal(err)
	}
	stream, err := e.client(t, "boot-a").Wait(bounded(t), &bootpb.WaitRequest{MachineId: "m-a"})
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	msg, err := stream.Recv()
	if err != nil {
		t.Fatalf("Recv: %v", err)
	}
	var got api.InstallSpec
	if msg.GetKeepalive() || json.Unmarshal(msg.GetInstallSpecJson(), &got) != nil || got.Machine.ID != "m-a" {
		t.Fatalf("first message %v, want the install spec of m-a", msg)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after spec: %v, want end of stream", err)
	}
}

func TestWaitClientCancel(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(bounded(t))
	defer cancel()
	stream, err := e.client(t, "boot-a").Wait(ctx, &bootpb.WaitRequest{MachineId: "m-a"})
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if msg, err := stream.Recv(); err != nil || !msg.GetKeepalive() {
		t.Fatalf("first message %v, %v; want a keepalive", msg, err)
	}
	if err := e.machines.AwaitWaiters(bounded(t), "m-a", 1); err != nil {
		t.Fatal(err)
	}

	cancel()
	for {
		_, err := stream.Recv()
		if err == nil {
			continue // a keepalive already in flight
		}
		wantCode(t, err, codes.Canceled)
		break
	}
	// The server's Machines.Wait must end too, and the machine stops waiting.
	if err := e.machines.AwaitWaiters(bounded(t), "m-a", 0); err != nil {
		t.Fatal(err)
	}
	if m, _ := e.machines.Get(t.Context(), "m-a"); m.Waiting {
		t.Error("machine still marked waiting after the client left")
	}
}

func TestWaitErrors(t *testing.T) {
	tests := []struct {
		name, token, machine string
		fail                 error
		code                 codes.Code
	}{
		{name: "other partition", token: "boot-a", machine: "m-b", code: codes.PermissionDenied},
		{name: "unknown machine scoped", token: "boot-a", machine: "m-gone", code: codes.NotFound},
		{name: "unknown machine admin", token: "admin", machine: "m-gone", code: codes.NotFound},
		{name: "no machine id", token: "boot-a", code: codes.InvalidArgument},
		{name: "no token", token: "", machine: "m-a", code: codes.Unauthenticated},
		{name: "viewer", token: "viewer", machine: "m-a", code: codes.PermissionDenied},
		{name: "machines fails", token: "boot-a", machine: "m-a", fail: errors.New("boom"), code: codes.Internal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			if tt.fail != nil {
				e.machines.Fail("Wait", tt.fail)
			}
			c := e.client(t, "admin")
			if tt.token != "admin" {
				c = rawClient(t, e.target, tt.token)
			}
			stream, err := c.Wait(bounded(t), &bootpb.WaitRequest{MachineId: tt.machine})
			if err == nil {
				_, err = stream.Recv()
			}
			wantCode(t, err, tt.code)
			if n := e.machines.Waiters("m-a") + e.machines.Waiters("m-b"); n != 0 {
				t.Errorf("%d waiters left", n)
			}
		})
	}
}
