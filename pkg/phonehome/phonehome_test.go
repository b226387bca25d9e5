package phonehome_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/auth"
	"github.com/metalforge/metalforge/pkg/bootrpc"
	"github.com/metalforge/metalforge/pkg/bootrpc/bootrpctest"
	"github.com/metalforge/metalforge/pkg/phonehome"
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// fake runs the fake boot service with machines m1 and m2 and a machine token "tok-m1" for m1.
func fake(t *testing.T) (*bootrpctest.Machines, string) {
	t.Helper()
	ms := bootrpctest.NewMachines()
	for _, id := range []string{"m1", "m2"} {
		ms.Put(api.Machine{Meta: api.Meta{ID: id}, PartitionID: "p1"})
	}
	addr := bootrpctest.Serve(t, bootrpc.Config{Machines: ms, Auth: bootrpctest.Tokens{
		"tok-m1": {Name: "machine m1", Role: auth.RoleMachine, PartitionID: "p1", MachineID: "m1"},
	}})
	return ms, addr
}

// awaitEvents polls until the machine has at least n events or the deadline passes.
func awaitEvents(t *testing.T, ms *bootrpctest.Machines, id string, n int) []api.EventRequest {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		evs := ms.Events(id)
		if len(evs) >= n {
			return evs
		}
		if time.Now().After(deadline) {
			t.Fatalf("machine %s has %d events after 10s, want %d: %v", id, len(evs), n, evs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRunPhonesHomeAndRepeats(t *testing.T) {
	ms, addr := fake(t)
	kmsg := filepath.Join(t.TempDir(), "kmsg")
	if err := os.WriteFile(kmsg, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- phonehome.Run(ctx, phonehome.Config{
			File:     phonehome.File{API: addr, MachineID: "m1", Token: "tok-m1"},
			Interval: 20 * time.Millisecond, Kmsg: kmsg, Message: "test",
		}, discard())
	}()
	evs := awaitEvents(t, ms, "m1", 3)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
	for i, ev := range evs {
		if ev.Event != api.EventPhonedHome || ev.Message != "test" {
			t.Errorf("event %d = %+v, want %q with message test", i, ev, api.EventPhonedHome)
		}
	}
	if got := ms.Events("m2"); len(got) != 0 {
		t.Errorf("m2 got events %v", got)
	}
	b, err := os.ReadFile(kmsg)
	if err != nil {
		t.Fatal(err)
	}
	if want := "<5>" + phonehome.Marker + " machine=m1\n"; string(b) != want {
		t.Errorf("kmsg = %q, want exactly one marker %q", b, want)
	}
}

func TestRunRetriesUntilTheServiceAnswers(t *testing.T) {
	ms, addr := fake(t)
	ms.Fail("Event", errors.New("database is down"))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		done <- phonehome.Run(ctx, phonehome.Config{
			File: phonehome.File{API: addr, MachineID: "m1", Token: "tok-m1"},
			Once: true, MinBackoff: 10 * time.Millisecond, MaxBackoff: 40 * time.Millisecond, Kmsg: "-",
		}, discard())
	}()
	time.Sleep(300 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("Run returned while the service failed: %v", err)
	default:
	}
	ms.Fail("Event", nil)
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if evs := ms.Events("m1"); len(evs) != 1 || evs[0].Event != api.EventPhonedHome {
		t.Fatalf("events = %v, want one %q", evs, api.EventPhonedHome)
	}
	t.Logf("phoned home %s after start, the service failed for the first 300ms", time.Since(start).Round(time.Millisecond))
}

func TestRunFails(t *testing.T) {
	_, addr := fake(t)
	tests := []struct {
		name     string
		file     phonehome.File
		rejected bool // fails at once, without retrying until FirstTimeout
	}{
		{"other machine", phonehome.File{API: addr, MachineID: "m2", Token: "tok-m1"}, true},
		{"unknown token", phonehome.File{API: addr, MachineID: "m1", Token: "nope"}, false},
		{"nobody listens", phonehome.File{API: "127.0.0.1:1", MachineID: "m1", Token: "tok-m1"}, false},
		{"no token", phonehome.File{API: addr, MachineID: "m1"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			start := time.Now()
			err := phonehome.Run(ctx, phonehome.Config{File: tt.file, Once: true, FirstTimeout: 500 * time.Millisecond,
				MinBackoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, Kmsg: "-"}, discard())
			if err == nil {
				t.Fatal("Run succeeded")
			}
			took := time.Since(start)
			if tt.rejected && took > 400*time.Millisecond {
				t.Errorf("took %s for a permanent refusal: %v", took, err)
			}
			if !tt.rejected && took < 300*time.Millisecond {
				t.Errorf("gave up after %s, before FirstTimeout: %v", took, err)
			}
			if got := errors.Is(err, phonehome.ErrRejected); tt.name == "other machine" && !got {
				t.Errorf("err = %v, want ErrRejected", err)
			}
		})
	}
}

func TestRunStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	err := phonehome.Run(ctx, phonehome.Config{File: phonehome.File{API: "127.0.0.1:1", MachineID: "m1", Token: "t"},
		MinBackoff: 10 * time.Millisecond, Kmsg: "-"}, discard())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestFileRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "etc", "metalforge", "phonehome.json")
	want := phonehome.File{API: "10.0.0.1:50051", MachineID: "m1", Token: "secret"}
	if err := phonehome.WriteFile(path, want); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600", fi.Mode().Perm())
	}
	got, err := phonehome.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("ReadFile = %+v, want %+v", got, want)
	}

	for _, tt := range []struct{ name, body, err string }{
		{"missing fields", `{"api":"a:1"}`, "machineID, token"},
		{"not json", `api=a`, "parse"},
		{"unknown fields are fine", `{"api":"a:1","machineID":"m","token":"t","tls":true}`, ""},
	} {
		p := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-"))
		if err := os.WriteFile(p, []byte(tt.body), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := phonehome.ReadFile(p)
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%s: err = %v, want it to mention %q", tt.name, err, tt.err)
		}
	}
	if _, err := phonehome.ReadFile(filepath.Join(dir, "absent")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("absent file: err = %v, want ErrNotExist", err)
	}
}
