package fabric

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/bootrpc/bootpb"
	"github.com/metalforge/metalforge/pkg/lldp"
)

// rest is a minimal metal-api REST client for the test.
type rest struct {
	t    *testing.T
	base string
}

func (r rest) call(token, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, r.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, strings.TrimSpace(string(raw)))
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

func (r rest) must(token, method, path string, in, out any) {
	r.t.Helper()
	if err := r.call(token, method, path, in, out); err != nil {
		r.t.Fatal(err)
	}
}

// eventually polls cond every 100ms until it holds or limit passes, and returns how long it took.
func eventually(t *testing.T, ctx context.Context, limit time.Duration, what string, cond func() (bool, error)) time.Duration {
	t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var last error
	for {
		ok, err := cond()
		if ok {
			return time.Since(start)
		}
		last = err
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not within %s (last error: %v)", what, limit, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// watch is a condition whose first success converge times from since.
type watch struct {
	what  string
	since time.Time
	cond  func() (bool, error)
}

// converge polls all conditions every 100ms until each has held once, logs the time each took
// from its since, and fails the test at limit. Timing is reported, never asserted.
func converge(t *testing.T, ctx context.Context, limit time.Duration, ws []watch) {
	t.Helper()
	took := make([]time.Duration, len(ws))
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		pending := 0
		for i, w := range ws {
			if took[i] != 0 {
				continue
			}
			if ok, _ := w.cond(); ok {
				took[i] = time.Since(w.since)
				continue
			}
			pending++
		}
		if pending == 0 {
			break
		}
		select {
		case <-ctx.Done():
			for i, w := range ws {
				if took[i] == 0 {
					t.Errorf("%s: not within %s", w.what, limit)
				}
			}
			t.FailNow()
		case <-time.After(100 * time.Millisecond):
		}
	}
	for i, w := range ws {
		t.Logf("%-50s %6.2fs (goal < 10s)", w.what, took[i].Seconds())
	}
}

// hammer does what the hammer does for the fabric: it learns its switch port by LLDP (unless
// withNeighbors is false: then metal-api must learn the link from the switch's LLDP report),
// announces its NIC by LLDP until ctx ends, registers the machine and waits for an allocation.
func hammer(t *testing.T, ctx context.Context, h *Host, boot bootpb.BootClient, partition string, withNeighbors bool) string {
	t.Helper()
	mac, err := h.MAC()
	if err != nil {
		t.Fatal(err)
	}
	id := "m-" + h.Name
	conn, err := lldp.Open(h.NetnsPath(), "lan0")
	if err != nil {
		t.Fatal(err)
	}
	f, err := conn.Receive(time.Now().Add(30 * time.Second))
	if err != nil {
		conn.Close()
		t.Fatalf("%s: no lldp from its leaf: %v", h.Name, err)
	}
	if f.SystemName != h.Leaf.Name || f.PortID != h.Port {
		t.Errorf("%s: lldp says %s %s, want %s %s", h.Name, f.SystemName, f.PortID, h.Leaf.Name, h.Port)
	}
	go func() {
		defer conn.Close()
		for ctx.Err() == nil {
			_ = conn.Send(lldp.Neighbor{ChassisID: mac.String(), PortID: mac.String(), SystemName: id, TTL: 120})
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}()
	nic := api.MachineNIC{Name: "lan0", MAC: mac.String()}
	if withNeighbors {
		nic.Neighbors = []api.LLDPNeighbor{{ChassisID: f.ChassisID, PortID: f.PortID, SystemName: f.SystemName}}
	}
	m := api.Machine{Meta: api.Meta{ID: id}, PartitionID: partition, Hardware: api.MachineHardware{
		CPUs: []api.MachineCPU{{Cores: 2, Threads: 2}}, Memory: 4 << 30, NICs: []api.MachineNIC{nic}}}
	b, _ := json.Marshal(m)
	if _, err := boot.Register(ctx, &bootpb.RegisterRequest{MachineJson: b}); err != nil {
		t.Fatalf("register %s: %v", id, err)
	}
	go func() {
		stream, err := boot.Wait(ctx, &bootpb.WaitRequest{MachineId: id})
		if err != nil {
			return
		}
		for {
			if _, err := stream.Recv(); err != nil {
				return
			}
		}
	}()
	return id
}

// privateIP is the machine's address in its private network.
func privateIP(t *testing.T, m *api.Machine) (netip.Addr, string) {
	t.Helper()
	for _, n := range m.Allocation.Networks {
		if n.Private && len(n.IPs) > 0 {
			return netip.MustParseAddr(n.IPs[0]), fmt.Sprintf("vrf%d", n.VRF)
		}
	}
	t.Fatalf("machine %s has no private address", m.ID)
	return netip.Addr{}, ""
}
