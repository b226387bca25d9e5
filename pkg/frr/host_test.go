package frr

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/metalforge/metalforge/pkg/api"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run with -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the rendered config (run with -update to accept):\n%s", path, got)
	}
}

// needVtysh skips when FRR is not installed: `make test` installs it (hack/deps.sh frr).
func needVtysh(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("vtysh"); err != nil {
		t.Skip("vtysh not installed (hack/deps.sh frr frr-pythontools): cannot validate")
	}
}

func TestRenderHost(t *testing.T) {
	machine := &api.MachineAllocation{Hostname: "a-node", Role: api.RoleMachine, Networks: []api.MachineNetwork{
		{NetworkID: "tenant-a", Private: true, VRF: 10001, ASN: 4200000005, Prefixes: []string{"10.128.0.0/22"}, IPs: []string{"10.128.0.5"}},
		{NetworkID: "internet", VRF: 104009, ASN: 4200000005, Prefixes: []string{"185.1.2.0/24"}, IPs: []string{"185.1.2.7"}},
		{NetworkID: "v6", Private: false, ASN: 4200000005, Prefixes: []string{"2001:db8::/64"}, IPs: []string{"2001:db8::5"}},
	}}
	firewall := &api.MachineAllocation{Hostname: "fw-a", Role: api.RoleFirewall, Networks: []api.MachineNetwork{
		{NetworkID: "tenant-a", Private: true, VRF: 10001, ASN: 4200000009, Prefixes: []string{"10.128.0.0/22"}, IPs: []string{"10.128.0.1"}},
		{NetworkID: "internet", VRF: 104009, ASN: 4200000009, Prefixes: []string{"185.1.2.0/24"}, IPs: []string{"185.1.2.1"}, NAT: true},
		{NetworkID: "underlay", Underlay: true, ASN: 4200000009, Prefixes: []string{"10.0.0.0/22"}, IPs: []string{"10.0.0.9"}},
	}}
	for _, tc := range []struct {
		name string
		h    Host
	}{
		{"host-machine.conf", Host{Interfaces: []string{"lan0", "lan1"}, Allocation: machine, Keepalive: 1, Hold: 3, ConnectRetry: 2, RAInterval: 2}},
		{"host-firewall.conf", Host{Interfaces: []string{"lan0", "lan1"}, Allocation: firewall}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := RenderHost(tc.h)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name, got)
			needVtysh(t)
			if err := (Tools{}).Validate(context.Background(), got); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestRenderHostRejects(t *testing.T) {
	ok := &api.MachineAllocation{Networks: []api.MachineNetwork{{ASN: 1, IPs: []string{"10.0.0.1"}}}}
	for name, h := range map[string]Host{
		"no allocation": {Interfaces: []string{"lan0"}},
		"no interface":  {Allocation: ok},
		"no asn":        {Interfaces: []string{"lan0"}, Allocation: &api.MachineAllocation{Networks: []api.MachineNetwork{{IPs: []string{"10.0.0.1"}}}}},
		"bad ip":        {Interfaces: []string{"lan0"}, Allocation: &api.MachineAllocation{Networks: []api.MachineNetwork{{ASN: 1, IPs: []string{"10.0.0.300"}}}}},
		"no ipv4":       {Interfaces: []string{"lan0"}, Allocation: &api.MachineAllocation{Networks: []api.MachineNetwork{{ASN: 1, IPs: []string{"2001:db8::1"}}}}},
	} {
		if _, err := RenderHost(h); err == nil {
			t.Errorf("%s: rendered without error", name)
		}
	}
}

func TestValidateRejects(t *testing.T) {
	needVtysh(t)
	err := (Tools{}).Validate(context.Background(), []byte("frr defaults datacenter\nrouter bgp 65000\n advertise-all-vnix\n"))
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("validate a bad config: %v, want ErrInvalid", err)
	}
	if want := "line 3"; !bytes.Contains([]byte(err.Error()), []byte(want)) {
		t.Errorf("error %q does not name %q", err, want)
	}
}
