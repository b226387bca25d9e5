package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/apiserver"
	"github.com/metalforge/metalforge/pkg/bmc"
	"github.com/metalforge/metalforge/pkg/bmc/agent"
	"github.com/metalforge/metalforge/pkg/bmc/bmctest"
	"github.com/metalforge/metalforge/pkg/bmc/vendor"
	"github.com/metalforge/metalforge/pkg/bootrpc"
	"github.com/metalforge/metalforge/pkg/bootrpc/bootpb"
	"github.com/metalforge/metalforge/pkg/lab/netns"
)

// startAPI runs metal-api in-process on loopback ports with an embedded SQLite store.
func startAPI(t *testing.T, adminToken string) (restURL, grpcAddr string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan [2]net.Addr, 1)
	errc := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	go func() {
		errc <- apiserver.Start(ctx, apiserver.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", GRPCListen: "127.0.0.1:0",
			AdminToken: adminToken, Ready: func(r, g net.Addr) { ready <- [2]net.Addr{r, g} }}, log)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-errc:
		case <-time.After(10 * time.Second):
			t.Error("metal-api did not stop")
		}
	})
	select {
	case a := <-ready:
		return "http://" + a[0].String(), a[1].String()
	case err := <-errc:
		t.Fatalf("metal-api: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("metal-api did not start")
	}
	return "", ""
}

// rest calls metal-api; out may be nil.
func rest(t *testing.T, ctx context.Context, method, url, token string, in, out any) {
	t.Helper()
	var body io.Reader
	if in != nil {
		raw, _ := json.Marshal(in)
		body = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s: %d %s", method, url, resp.StatusCode, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
	}
}

// TestAgentWithMetalAPIAndIPMISim queues power commands through metal-api's REST API for a
// machine registered through the boot service whose BMC is an ipmi_sim, and watches the agent
// execute them, mark them done and report the power state.
func TestAgentWithMetalAPIAndIPMISim(t *testing.T) {
	sim := bmctest.StartIPMISim(t)
	const admin = "admin-token-for-the-agent-test"
	url, grpcAddr := startAPI(t, admin)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	rest(t, ctx, "POST", url+"/v1/partition", admin, api.Partition{Meta: api.Meta{ID: "p1", Name: "p1"}}, nil)
	var tok api.Token
	rest(t, ctx, "POST", url+"/v1/token", admin, api.Token{Meta: api.Meta{Name: "bmc-agent"}, Role: api.RoleService, PartitionID: "p1"}, &tok)

	boot, closer, err := bootrpc.Dial(ctx, grpcAddr, tok.Secret)
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	id := "8a3f2c8e-1c1b-4b0e-9f55-000000000001"
	m := api.Machine{Meta: api.Meta{ID: id}, PartitionID: "p1",
		Hardware: api.MachineHardware{Memory: 1 << 30, CPUs: []api.MachineCPU{{Cores: 1, Threads: 1}},
			NICs: []api.MachineNIC{{Name: "eth0", MAC: "52:54:00:00:00:01"}}},
		BMC: api.MachineBMC{Address: sim.Addr, User: sim.User, Password: sim.Password, Vendor: vendor.OpenIPMI}}
	raw, _ := json.Marshal(m)
	if _, err := boot.Register(ctx, &bootpb.RegisterRequest{MachineJson: raw}); err != nil {
		t.Fatalf("register: %v", err)
	}

	actx, stopAgent := context.WithCancel(ctx)
	agentDone := make(chan error, 1)
	go func() {
		agentDone <- agent.Run(actx, agent.Config{APIURL: url, Token: tok.Secret, Partition: "p1",
			PollInterval: 200 * time.Millisecond, ReportInterval: time.Second, BMCTimeout: 2 * time.Second,
			Dial: netns.Dialer(sim.NS), Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	}()
	defer func() {
		stopAgent()
		if err := <-agentDone; err != nil {
			t.Errorf("agent: %v", err)
		}
	}()

	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for !cond() {
			if ctx.Err() != nil {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	pending := func() int {
		var l struct{ Items []api.BMCCommand }
		rest(t, ctx, "GET", url+"/v1/bmc/command?partition=p1", admin, nil, &l)
		return len(l.Items)
	}
	power := func() string {
		var got api.Machine
		rest(t, ctx, "GET", url+"/v1/machine/"+id, admin, nil, &got)
		return got.BMC.PowerState
	}

	for _, step := range []struct {
		cmd, state string
		running    bool
	}{{api.PowerOn, bmc.PowerStateOn, true}, {api.PowerOff, bmc.PowerStateOff, false}} {
		start := time.Now()
		var c api.BMCCommand
		rest(t, ctx, "POST", fmt.Sprintf("%s/v1/machine/%s/power/%s", url, id, step.cmd), admin, nil, &c)
		if c.Command != step.cmd {
			t.Fatalf("queued %+v", c)
		}
		waitFor(step.cmd+" done", func() bool { return pending() == 0 })
		waitFor("power "+step.state+" reported", func() bool { return power() == step.state })
		waitFor("simulated machine running="+fmt.Sprint(step.running), func() bool { return (sim.MachinePID() > 0) == step.running })
		t.Logf("%s: queued → done → %s reported in %v", step.cmd, step.state, time.Since(start))
	}
}
