package phonehome_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/apiserver"
	"github.com/metalforge/metalforge/pkg/auth"
	"github.com/metalforge/metalforge/pkg/phonehome"
	"github.com/metalforge/metalforge/pkg/store"
	"github.com/metalforge/metalforge/pkg/store/sqlite"
)

// TestRunAgainstMetalAPI phones home to a real in-process metal-api (embedded SQLite) with a
// machine token issued the way metal-api issues it when the hammer picks up an allocation, and
// checks the machine's event log and that the allocation counts as succeeded.
func TestRunAgainstMetalAPI(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	const machineID = "00000000-0000-0000-0000-0000000000m1"
	secret := seed(ctx, t, dir, machineID)

	type addrs struct{ rest, grpc net.Addr }
	ready := make(chan addrs, 1)
	srvCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- apiserver.Start(srvCtx, apiserver.Config{Listen: "127.0.0.1:0", GRPCListen: "127.0.0.1:0", DataDir: dir,
			AdminToken: "admin-secret", Ready: func(r, g net.Addr) { ready <- addrs{r, g} }}, discard())
	}()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("metal-api: %v", err)
		}
	}()
	var a addrs
	select {
	case a = <-ready:
	case err := <-done:
		t.Fatalf("metal-api did not start: %v", err)
	}

	err := phonehome.Run(ctx, phonehome.Config{File: phonehome.File{API: a.grpc.String(), MachineID: machineID, Token: secret},
		Once: true, Kmsg: "-", Message: "from the test"}, discard())
	if err != nil {
		t.Fatalf("Run: %v", err)
	}

	var log api.MachineEventLog
	get(ctx, t, a.rest.String(), "/v1/machine/"+machineID+"/events", &log)
	if n := len(log.Events); n == 0 || log.Events[n-1].Event != api.EventPhonedHome || log.Events[n-1].Message != "from the test" {
		t.Fatalf("event log = %+v, want a last %q event", log.Events, api.EventPhonedHome)
	}
	if log.Events[len(log.Events)-1].Unexpected {
		t.Errorf("Phoned Home after Booting New Kernel was recorded as unexpected")
	}
	var m api.Machine
	get(ctx, t, a.rest.String(), "/v1/machine/"+machineID, &m)
	if m.Allocation == nil || !m.Allocation.Succeeded {
		t.Errorf("allocation = %+v, want succeeded", m.Allocation)
	}

	// The machine token may not speak for another machine, even against the real server.
	err = phonehome.Run(ctx, phonehome.Config{File: phonehome.File{API: a.grpc.String(), MachineID: "other", Token: secret},
		Once: true, Kmsg: "-"}, discard())
	if err == nil {
		t.Fatal("phone home for another machine succeeded")
	}
}

// seed stores an allocated machine whose last event is Booting New Kernel and issues its machine
// token, before metal-api opens the same data directory.
func seed(ctx context.Context, t *testing.T, dir, machineID string) string {
	t.Helper()
	st, err := sqlite.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var secret string
	err = st.Write(ctx, func(tx store.Tx) error {
		if err := tx.Partitions().Create(ctx, &api.Partition{Meta: api.Meta{ID: "p1", Name: "p1"}}); err != nil {
			return fmt.Errorf("partition: %w", err)
		}
		m := &api.Machine{Meta: api.Meta{ID: machineID}, PartitionID: "p1", SizeID: "unknown",
			Allocation: &api.MachineAllocation{ProjectID: "proj", Hostname: "m1", Role: api.RoleMachine},
			LastEvent:  &api.ProvisioningEvent{Time: time.Now(), Event: api.EventBootingNewKernel}}
		if err := tx.Machines().Create(ctx, m); err != nil {
			return fmt.Errorf("machine: %w", err)
		}
		if err := tx.EventLogs().Create(ctx, &api.MachineEventLog{Meta: api.Meta{ID: machineID},
			Events: []api.ProvisioningEvent{*m.LastEvent}}); err != nil {
			return fmt.Errorf("event log: %w", err)
		}
		secret, _, err = auth.Issue(ctx, tx, api.Token{Meta: api.Meta{ID: "machine-" + machineID, Name: "phone home"},
			Role: auth.RoleMachine, PartitionID: "p1", MachineID: machineID})
		return err
	})
	if err != nil {
		t.Fatalf("seed: %v", err)
	}
	return secret
}

func get(ctx context.Context, t *testing.T, addr, path string, out any) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer admin-secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}
