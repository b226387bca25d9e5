package agent_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/bmc"
	"github.com/metalforge/metalforge/pkg/bmc/agent"
	"github.com/metalforge/metalforge/pkg/bmc/bmctest"
)

// fakeAPI serves the three routes the agent uses.
type fakeAPI struct {
	mu       sync.Mutex
	cmds     []*api.BMCCommand
	done     map[string]api.BMCCommandDone
	reports  map[string]api.BMCReport
	failDone int // fail this many done calls with 503
}

func newFakeAPI(t *testing.T) (*fakeAPI, *httptest.Server) {
	f := &fakeAPI{done: map[string]api.BMCCommandDone{}, reports: map[string]api.BMCReport{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/bmc/command", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" || r.URL.Query().Get("partition") != "p1" {
			http.Error(w, `{"code":403,"message":"forbidden"}`, http.StatusForbidden)
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		items := []*api.BMCCommand{}
		for _, c := range f.cmds {
			if _, ok := f.done[c.ID]; !ok {
				items = append(items, c)
			}
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"items": items})
	})
	mux.HandleFunc("POST /v1/bmc/command/{id}/done", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.failDone > 0 {
			f.failDone--
			http.Error(w, `{"code":503,"message":"try again"}`, http.StatusServiceUnavailable)
			return
		}
		var d api.BMCCommandDone
		_ = json.NewDecoder(r.Body).Decode(&d)
		f.done[r.PathValue("id")] = d
		_, _ = w.Write([]byte("{}"))
	})
	mux.HandleFunc("POST /v1/machine/{id}/bmc", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		var rep api.BMCReport
		_ = json.NewDecoder(r.Body).Decode(&rep)
		f.reports[r.PathValue("id")] = rep
		_, _ = w.Write([]byte("{}"))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeAPI) add(id, machine, command string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cmds = append(f.cmds, &api.BMCCommand{Meta: api.Meta{ID: id}, MachineID: machine, PartitionID: "p1", Command: command,
		BMC: &api.MachineBMC{Address: "bmc-" + machine, User: "u", Password: "p"}})
}

// fakes hands out one bmctest.Fake per BMC address.
type fakes struct {
	mu sync.Mutex
	m  map[string]*bmctest.Fake
}

func (fs *fakes) get(addr string) *bmctest.Fake {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.m == nil {
		fs.m = map[string]*bmctest.Fake{}
	}
	if fs.m[addr] == nil {
		fs.m[addr] = bmctest.NewFake()
	}
	return fs.m[addr]
}

func (fs *fakes) open(c bmc.Config) (bmc.BMC, error) { return fs.get(c.Address), nil }

func newAgent(t *testing.T, url string, open func(bmc.Config) (bmc.BMC, error), concurrency int) *agent.Agent {
	t.Helper()
	a, err := agent.New(agent.Config{APIURL: url, Token: "tok", Partition: "p1", Open: open, Concurrency: concurrency,
		CommandTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestAgentExecutesInOrderAndReports(t *testing.T) {
	f, srv := newFakeAPI(t)
	f.add("c1", "m1", api.BootPXE)
	f.add("c2", "m2", api.PowerOn)
	f.add("c3", "m1", api.PowerCycle)
	f.add("c4", "m2", api.LEDOn)
	var bmcs fakes
	bmcs.get("bmc-m2").Fail("led", errors.New("led is broken"))
	a := newAgent(t, srv.URL, bmcs.open, 4)
	ctx := context.Background()
	a.Poll(ctx)
	a.Wait()

	if d := cmp.Diff([]string{"boot pxe", "cycle", "state"}, bmcs.get("bmc-m1").Calls()); d != "" {
		t.Errorf("m1 calls (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"on", "led on", "state"}, bmcs.get("bmc-m2").Calls()); d != "" {
		t.Errorf("m2 calls (-want +got):\n%s", d)
	}
	want := map[string]api.BMCCommandDone{"c1": {}, "c2": {}, "c3": {}, "c4": {Error: "led is broken"}}
	if d := cmp.Diff(want, f.done); d != "" {
		t.Errorf("done (-want +got):\n%s", d)
	}
	wantReports := map[string]api.BMCReport{"m1": {PowerState: bmc.PowerStateOn}, "m2": {PowerState: bmc.PowerStateOn}}
	if d := cmp.Diff(wantReports, f.reports); d != "" {
		t.Errorf("reports (-want +got):\n%s", d)
	}

	// Nothing pending: a second poll executes nothing.
	a.Poll(ctx)
	a.Wait()
	if n := len(bmcs.get("bmc-m1").Calls()); n != 3 {
		t.Errorf("second poll re-executed: %v", bmcs.get("bmc-m1").Calls())
	}

	// The periodic report covers machines seen before, with the LED state the agent set.
	bmcs.get("bmc-m1").Fail("led", nil)
	f.add("c5", "m1", api.LEDOn)
	a.Poll(ctx)
	a.Wait()
	_ = bmcs.get("bmc-m2").PowerOff(ctx)
	a.ReportAll(ctx)
	wantReports = map[string]api.BMCReport{"m1": {PowerState: bmc.PowerStateOn, LED: bmc.LEDStateOn}, "m2": {PowerState: bmc.PowerStateOff}}
	if d := cmp.Diff(wantReports, f.reports); d != "" {
		t.Errorf("reports after ReportAll (-want +got):\n%s", d)
	}
}

func TestAgentRetriesDoneWithoutReExecuting(t *testing.T) {
	f, srv := newFakeAPI(t)
	f.add("c1", "m1", api.PowerOn)
	f.failDone = 1
	var bmcs fakes
	a := newAgent(t, srv.URL, bmcs.open, 1)
	ctx := context.Background()
	a.Poll(ctx)
	a.Wait()
	if len(f.done) != 0 {
		t.Fatalf("done although the API failed: %v", f.done)
	}
	a.Poll(ctx) // the command is still listed; the agent only re-sends the acknowledgement
	a.Wait()
	if _, ok := f.done["c1"]; !ok {
		t.Error("done was not retried")
	}
	if d := cmp.Diff([]string{"on", "state"}, bmcs.get("bmc-m1").Calls()); d != "" {
		t.Errorf("calls (-want +got):\n%s", d)
	}
}

func TestAgentNoBMCAddress(t *testing.T) {
	f, srv := newFakeAPI(t)
	f.cmds = append(f.cmds, &api.BMCCommand{Meta: api.Meta{ID: "c1"}, MachineID: "m1", Command: api.PowerOn, BMC: &api.MachineBMC{}})
	var bmcs fakes
	a := newAgent(t, srv.URL, bmcs.open, 1)
	a.Poll(context.Background())
	a.Wait()
	if got := f.done["c1"].Error; !strings.Contains(got, "no bmc address") {
		t.Errorf("done error %q", got)
	}
}

// slowBMC counts how many operations run at once.
type slowBMC struct {
	bmc.BMC
	running, max *atomic.Int32
}

func (s slowBMC) PowerOn(ctx context.Context) error {
	n := s.running.Add(1)
	defer s.running.Add(-1)
	for {
		m := s.max.Load()
		if n <= m || s.max.CompareAndSwap(m, n) {
			break
		}
	}
	time.Sleep(30 * time.Millisecond)
	return s.BMC.PowerOn(ctx)
}

func TestAgentBoundsConcurrencyAndTimesOut(t *testing.T) {
	f, srv := newFakeAPI(t)
	for i := range 6 {
		f.add(string(rune('a'+i)), string(rune('A'+i)), api.PowerOn)
	}
	var running, max atomic.Int32
	var bmcs fakes
	a := newAgent(t, srv.URL, func(c bmc.Config) (bmc.BMC, error) {
		return slowBMC{BMC: bmcs.get(c.Address), running: &running, max: &max}, nil
	}, 2)
	a.Poll(context.Background())
	a.Wait()
	if len(f.done) != 6 {
		t.Errorf("%d of 6 commands done", len(f.done))
	}
	if m := max.Load(); m > 2 || m == 0 {
		t.Errorf("%d commands ran at once, want 1..2", m)
	}

	// A BMC that hangs is cut off by the command timeout and reported as failed.
	f2, srv2 := newFakeAPI(t)
	f2.add("h1", "hang", api.PowerOff)
	hang := bmctest.NewFake()
	hang.Block = make(chan struct{})
	a2, err := agent.New(agent.Config{APIURL: srv2.URL, Token: "tok", Partition: "p1", CommandTimeout: 200 * time.Millisecond,
		BMCTimeout: 100 * time.Millisecond, Open: func(bmc.Config) (bmc.BMC, error) { return hang, nil }})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	a2.Poll(context.Background())
	a2.Wait()
	if got := f2.done["h1"].Error; !strings.Contains(got, "deadline exceeded") {
		t.Errorf("hung command done with %q", got)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("hung command took %v", d)
	}
}

func TestAgentConfig(t *testing.T) {
	if _, err := agent.New(agent.Config{}); err == nil {
		t.Error("empty config accepted")
	}
	if _, err := agent.New(agent.Config{APIURL: "http://x", Token: "t", Partition: "p", Protocol: "snmp"}); err == nil {
		t.Error("protocol snmp accepted")
	}
}

// TestAgentRedfishAddress runs a command against a Redfish BMC: http(s) addresses use Redfish
// even when the agent's default protocol is IPMI.
func TestAgentRedfishAddress(t *testing.T) {
	f, srv := newFakeAPI(t)
	rf := bmctest.NewRedfish(t, bmctest.RedfishOptions{User: "u", Password: "p"})
	f.cmds = append(f.cmds, &api.BMCCommand{Meta: api.Meta{ID: "r1"}, MachineID: "m1", PartitionID: "p1", Command: api.PowerOn,
		BMC: &api.MachineBMC{Address: rf.Address(), User: "u", Password: "p", Vendor: "Dell Inc."}})
	a, err := agent.New(agent.Config{APIURL: srv.URL, Token: "tok", Partition: "p1", Protocol: bmc.ProtocolIPMI})
	if err != nil {
		t.Fatal(err)
	}
	a.Poll(context.Background())
	a.Wait()
	if d, ok := f.done["r1"]; !ok || d.Error != "" {
		t.Fatalf("done = %+v, %v", d, ok)
	}
	if d := cmp.Diff([]string{"On"}, rf.Resets()); d != "" {
		t.Errorf("resets (-want +got):\n%s", d)
	}
	if got := f.reports["m1"].PowerState; got != bmc.PowerStateOn {
		t.Errorf("reported power %q", got)
	}
}
