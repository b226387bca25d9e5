// Package clienttest runs a real metal-api in-process for tests of its clients (pkg/client,
// metalctl): SQLite in a temporary directory, REST and the gRPC boot service on loopback ports, a
// known admin token. It also plays the hammer of a machine: Register through the boot service and
// Wait, which makes the machine allocatable (RegisterWaiting does both and waits for it).
//
// The consumers' tests (pkg/ccm, pkg/mcm, pkg/autoscaler, the Gardener actuators) seed the same
// kind of catalogue with Seed: a Catalogue of partition, sizes, images, filesystem layouts and
// networks, built from Size, Image, Layout, SuperNetwork and Internet where the defaults fit; then
// Project and Token for the tenant and its credentials.
package clienttest

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/apiserver"
	"github.com/metalforge/metalforge/pkg/bootrpc"
	"github.com/metalforge/metalforge/pkg/bootrpc/bootpb"
	"github.com/metalforge/metalforge/pkg/client"
	"github.com/metalforge/metalforge/pkg/client/metalapi"
)

// AdminToken is the admin token of every API started here.
const AdminToken = "clienttest-admin-secret"

// API is a running metal-api.
type API struct {
	// URL is the REST base URL ("http://127.0.0.1:port").
	URL string
	// GRPCAddr is the boot service address.
	GRPCAddr string
	t        testing.TB
	boot     bootpb.BootClient
}

// Start runs metal-api until the test ends.
func Start(t testing.TB) *API {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan [2]net.Addr, 1)
	done := make(chan error, 1)
	cfg := apiserver.Config{
		Listen:     "127.0.0.1:0",
		GRPCListen: "127.0.0.1:0",
		DataDir:    t.TempDir(),
		AdminToken: AdminToken,
		Version:    "clienttest",
		Ready:      func(rest, grpc net.Addr) { ready <- [2]net.Addr{rest, grpc} },
	}
	go func() { done <- apiserver.Start(ctx, cfg, slog.New(slog.DiscardHandler)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("metal-api: %v", err)
		}
	})
	var addrs [2]net.Addr
	select {
	case addrs = <-ready:
	case err := <-done:
		t.Fatalf("metal-api did not start: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("metal-api did not start within 30s")
	}
	a := &API{URL: "http://" + addrs[0].String(), GRPCAddr: addrs[1].String(), t: t}
	boot, conn, err := bootrpc.Dial(ctx, a.GRPCAddr, AdminToken)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	a.boot = boot
	return a
}

// Client returns a generated client for the API with token ("" for none).
func (a *API) Client(token string) *metalapi.MetalAPI {
	a.t.Helper()
	c, err := client.New(a.URL, token)
	if err != nil {
		a.t.Fatal(err)
	}
	return c
}

// Register registers a machine as the hammer does, with the inventory in m.
func (a *API) Register(m api.Machine) {
	a.t.Helper()
	raw, err := json.Marshal(m)
	if err != nil {
		a.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := a.boot.Register(ctx, &bootpb.RegisterRequest{MachineJson: raw}); err != nil {
		a.t.Fatalf("register machine %s: %v", m.ID, err)
	}
}

// Wait calls the boot service's Wait for the machine in the background, as the hammer of a
// registered machine does; metal-api marks it waiting. The returned channel receives the install
// spec once the machine is allocated (and is closed without a value if Wait ends otherwise). The
// call ends with the test.
func (a *API) Wait(machineID string) <-chan api.InstallSpec {
	a.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := a.boot.Wait(ctx, &bootpb.WaitRequest{MachineId: machineID})
	if err != nil {
		cancel()
		a.t.Fatalf("wait for machine %s: %v", machineID, err)
	}
	out := make(chan api.InstallSpec, 1)
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		defer close(out)
		for {
			msg, err := stream.Recv()
			switch {
			case errors.Is(err, io.EOF), status.Code(err) == codes.Canceled:
				return
			case err != nil:
				a.t.Errorf("wait for machine %s: %v", machineID, err)
				return
			case msg.GetKeepalive():
				continue
			}
			var spec api.InstallSpec
			if err := json.Unmarshal(msg.GetInstallSpecJson(), &spec); err != nil {
				a.t.Errorf("wait for machine %s: install spec: %v", machineID, err)
				return
			}
			out <- spec
		}
	}()
	a.t.Cleanup(func() {
		cancel()
		<-ended
	})
	return out
}

// Machine is an inventory that matches a size of 1-4 cores and 1-16 GiB memory; i makes the ID and
// the MACs unique.
func Machine(partition string, i int) api.Machine {
	hex := "0123456789abcdef"
	b := string([]byte{hex[i/16%16], hex[i%16]})
	return api.Machine{
		Meta:        api.Meta{ID: "00000000-0000-0000-0000-0000000000" + b},
		PartitionID: partition,
		Hardware: api.MachineHardware{
			CPUs:   []api.MachineCPU{{Vendor: "QEMU", Model: "QEMU Virtual CPU", Cores: 2, Threads: 2}},
			Memory: 4 << 30,
			Disks:  []api.MachineBlockDevice{{Name: "vda", Size: 20 << 30}},
			NICs: []api.MachineNIC{
				{Name: "eth0", MAC: "52:54:00:00:00:" + b},
				{Name: "eth1", MAC: "52:54:00:00:01:" + b},
			},
		},
		BIOS: api.MachineBIOS{Vendor: "SeaBIOS", Version: "1.16"},
		BMC:  api.MachineBMC{Address: "192.0.2.10:623", MAC: "52:54:00:00:02:" + b, User: "admin", Password: "secret"},
	}
}
