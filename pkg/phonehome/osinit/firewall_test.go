package osinit

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/frr"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run with -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (run with -update to accept):\n%s", path, cmp.Diff(string(want), string(got)))
	}
}

// fwAllocation is a firewall as metal-api allocates it (pkg/machine's TestAllocateFirewallEgress):
// the project's private network, two external networks (the first without NAT, so the second
// is the SNAT one) and the underlay.
func fwAllocation() *api.MachineAllocation {
	return &api.MachineAllocation{ProjectID: "proj-a", Hostname: "fw-a", Role: api.RoleFirewall, Networks: []api.MachineNetwork{
		{NetworkID: "cluster-a", NetworkType: api.NetworkPrivate, Private: true, VRF: 10001, ASN: 4200000009,
			Prefixes: []string{"10.128.0.0/22"}, IPs: []string{"10.128.0.1"}},
		{NetworkID: "transit", NetworkType: api.NetworkExternal, VRF: 104010, ASN: 4200000009,
			Prefixes: []string{"203.0.113.0/24"}, IPs: []string{"203.0.113.10"}},
		{NetworkID: "internet", NetworkType: api.NetworkExternal, VRF: 104009, ASN: 4200000009, NAT: true,
			Prefixes: []string{"185.1.0.0/22"}, DestinationPrefixes: []string{"0.0.0.0/0"}, IPs: []string{"185.1.0.12", "185.1.0.9"}},
		{NetworkID: "underlay", NetworkType: api.NetworkUnderlay, Underlay: true, ASN: 4200000009,
			Prefixes: []string{"10.255.0.0/22"}, IPs: []string{"10.255.0.9"}},
	}}
}

func TestFirewallConfig(t *testing.T) {
	noNAT := fwAllocation()
	noNAT.Networks = slices.Delete(noNAT.Networks, 2, 3)
	shared := fwAllocation()
	shared.Networks = append(shared.Networks, api.MachineNetwork{NetworkID: "storage", NetworkType: api.NetworkPrivateShared,
		Private: true, VRF: 10077, Prefixes: []string{"10.130.0.0/22"}, IPs: []string{"10.130.0.4"}})
	tests := []struct {
		name string
		fw   Firewall
	}{
		{"firewall", Firewall{MachineID: "m-1", Allocation: fwAllocation(), NICs: []string{"lan0", "lan1"},
			DNSServers: []string{"1.1.1.1", "8.8.8.8"}, Kubeconfig: "/etc/metalforge/firewall-kubeconfig"}},
		{"no-nat-external", Firewall{MachineID: "m-1", Allocation: noNAT, NICs: []string{"lan0"}, DNSServers: []string{"2001:db8::53"}}},
		{"private-shared", Firewall{MachineID: "m-1", Allocation: shared, NICs: []string{"lan0"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := FirewallConfig(tc.fw)
			if err != nil {
				t.Fatal(err)
			}
			b, err := json.MarshalIndent(c, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "firewall/"+tc.name+".json", append(b, '\n'))
		})
	}
}

func TestFirewallConfigRejects(t *testing.T) {
	machine := fwAllocation()
	machine.Role = api.RoleMachine
	noExternal := fwAllocation()
	noExternal.Networks = slices.Delete(noExternal.Networks, 1, 3)
	noPrivate := fwAllocation()
	noPrivate.Networks = noPrivate.Networks[1:]
	for name, tc := range map[string]struct {
		fw   Firewall
		want string
	}{
		"no allocation":       {Firewall{MachineID: "m"}, "no allocation"},
		"machine role":        {Firewall{MachineID: "m", Allocation: machine}, "not firewall"},
		"no machine id":       {Firewall{Allocation: fwAllocation()}, "no machine id"},
		"no external network": {Firewall{MachineID: "m", Allocation: noExternal}, "no external network"},
		"no private network":  {Firewall{MachineID: "m", Allocation: noPrivate}, "no private network"},
	} {
		if _, err := FirewallConfig(tc.fw); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: FirewallConfig = %v, want an error with %q", name, err, tc.want)
		}
	}
}

func TestIsKubeconfig(t *testing.T) {
	for s, want := range map[string]bool{
		"apiVersion: v1\nkind: Config\nclusters:\n- name: shoot\n  cluster:\n    server: https://k\n": true,
		"apiVersion: v1\r\nkind: \"Config\"\r\nclusters: []\r\n":                                      true,
		"#!/bin/sh\necho kind: Config\n":                                                              false,
		"kind: Config\n":                                                                              false,
		"":                                                                                            false,
	} {
		if got := IsKubeconfig(s); got != want {
			t.Errorf("IsKubeconfig(%q) = %v, want %v", s, got, want)
		}
	}
}

// fakeRoot writes what the hammer writes into an installed firewall (install.json, phonehome.json,
// resolv.conf, user data) and a /sys/class/net with two NICs, a bridge and lo.
func fakeRoot(t *testing.T, a *api.MachineAllocation) (root, sysNet string) {
	t.Helper()
	dir := t.TempDir()
	root, sysNet = filepath.Join(dir, "root"), filepath.Join(dir, "sys-class-net")
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		InstallPath:   string(b),
		PhoneHomePath: `{"api": "10.0.0.1:50051", "machineID": "m-1", "token": "secret"}`,
		ResolvConf:    "# written by the metalforge hammer\nnameserver 1.1.1.1\nnameserver 8.8.8.8\n",
		UserDataPath:  a.UserData,
	} {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for name, nic := range map[string]struct {
		device bool
		typ    string
	}{"enp1s0f1": {true, "1"}, "enp1s0f0": {true, "1"}, "lo": {false, "772"}, "br0": {false, "1"}, "ib0": {true, "32"}} {
		d := filepath.Join(sysNet, name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "type"), []byte(nic.typ+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if nic.device {
			if err := os.Symlink(dir, filepath.Join(d, "device")); err != nil {
				t.Fatal(err)
			}
		}
	}
	return root, sysNet
}

// TestSetupFirewall runs the first-boot step on a fake root: firewall.json, frr.conf (valid for
// vtysh) and the networkd files match their golden files, the user data's kubeconfig lands in
// KubeconfigPath with mode 0600, the marker reaches the "kernel log", and a second run writes the
// same files.
func TestSetupFirewall(t *testing.T) {
	a := fwAllocation()
	a.UserData = "apiVersion: v1\nkind: Config\nclusters:\n- name: shoot\n  cluster:\n    server: https://api.shoot.example\n"
	root, sysNet := fakeRoot(t, a)
	kmsg := filepath.Join(t.TempDir(), "kmsg")
	cfg := FirewallSetup{Root: root, SysClassNet: sysNet, Kmsg: kmsg}
	if err := SetupFirewall(cfg, testLog(t)); err != nil {
		t.Fatal(err)
	}
	read := func(name string) []byte {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	first := snapshot(t, root)
	golden(t, "firewall/setup-firewall.json", read(strings.TrimPrefix(api.FirewallConfigPath, "/")))
	conf := read(FRRConfPath)
	golden(t, "firewall/setup-frr.conf", conf)
	var netd bytes.Buffer
	entries, err := os.ReadDir(filepath.Join(root, NetworkdDir))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		netd.WriteString("=== " + e.Name() + "\n")
		netd.Write(read(filepath.Join(NetworkdDir, e.Name())))
	}
	golden(t, "firewall/setup-networkd.txt", netd.Bytes())
	if got := string(read(KubeconfigPath)); got != a.UserData {
		t.Errorf("kubeconfig = %q, want the user data", got)
	}
	if st, err := os.Stat(filepath.Join(root, KubeconfigPath)); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("kubeconfig mode: %v, %v; want 0600", st.Mode(), err)
	}
	if b, _ := os.ReadFile(kmsg); !strings.HasPrefix(string(b), "<5>"+FirewallMarker+" machine=m-1 external=vlan104009 egress=185.1.0.9,185.1.0.12\n") {
		t.Errorf("kernel log: %q", b)
	}

	if err := SetupFirewall(cfg, testLog(t)); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(first, snapshot(t, root)); diff != "" {
		t.Errorf("a second run changed the files (-first +second):\n%s", diff)
	}

	if _, err := exec.LookPath("vtysh"); err != nil {
		t.Skip("vtysh not installed (hack/deps.sh frr): frr.conf not validated")
	}
	if err := (frr.Tools{}).Validate(context.Background(), conf); err != nil {
		t.Errorf("frr.conf: %v", err)
	}
}

// TestSetupFirewallKubeconfigFile: without a kubeconfig in the user data, a file already at
// KubeconfigPath is used; without either the config names none.
func TestSetupFirewallKubeconfigFile(t *testing.T) {
	a := fwAllocation()
	a.UserData = "#!/bin/sh\necho hello\n"
	for _, present := range []bool{false, true} {
		root, sysNet := fakeRoot(t, a)
		want := ""
		if present {
			want = "/" + KubeconfigPath
			if err := os.WriteFile(filepath.Join(root, KubeconfigPath), []byte("kind: Config\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if err := SetupFirewall(FirewallSetup{Root: root, SysClassNet: sysNet, Kmsg: "-"}, testLog(t)); err != nil {
			t.Fatal(err)
		}
		var c api.FirewallConfig
		b, err := os.ReadFile(filepath.Join(root, api.FirewallConfigPath))
		if err == nil {
			err = json.Unmarshal(b, &c)
		}
		if err != nil {
			t.Fatal(err)
		}
		if c.Kubeconfig != want {
			t.Errorf("kubeconfig file present %v: config names %q, want %q", present, c.Kubeconfig, want)
		}
	}
}

// TestSetupFirewallMachine: a machine's allocation is left alone.
func TestSetupFirewallMachine(t *testing.T) {
	a := fwAllocation()
	a.Role = api.RoleMachine
	root, sysNet := fakeRoot(t, a)
	before := snapshot(t, root)
	if err := SetupFirewall(FirewallSetup{Root: root, SysClassNet: sysNet, Kmsg: "-"}, testLog(t)); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before, snapshot(t, root)); diff != "" {
		t.Errorf("setup changed a machine's files (-before +after):\n%s", diff)
	}
}

func TestLeafNICs(t *testing.T) {
	_, sysNet := fakeRoot(t, fwAllocation())
	got, err := LeafNICs(sysNet)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"enp1s0f0", "enp1s0f1"}, got); diff != "" {
		t.Errorf("LeafNICs (-want +got):\n%s", diff)
	}
	if _, err := LeafNICs(t.TempDir()); err == nil {
		t.Error("LeafNICs of an empty directory: no error")
	}
}

// snapshot maps every file below root to its mode and content.
func snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		st, err := d.Info()
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		out[strings.TrimPrefix(p, root)] = st.Mode().String() + " " + string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// testLog logs through t.
func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}
