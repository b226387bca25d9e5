package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/nft/nfttest"
)

// TestMain lets the tests run this command as a process of its own (the test binary with
// FWC_MAIN=1), e.g. inside a network namespace.
func TestMain(m *testing.M) {
	if os.Getenv("FWC_MAIN") == "1" {
		os.Exit(run(os.Args[1:]))
	}
	os.Exit(m.Run())
}

func writeConfig(t *testing.T, fw api.FirewallConfig) string {
	t.Helper()
	b, err := json.Marshal(fw)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "firewall.json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExitCodes(t *testing.T) {
	bad := writeConfig(t, api.FirewallConfig{ExternalInterface: "ext0"}) // no networks
	badPrefix := writeConfig(t, api.FirewallConfig{ExternalInterface: "ext0",
		Networks: []api.FirewallNetwork{{NetworkID: "n", Interface: "tenant0", Prefixes: []string{"10.0.0.0/33"}}}})
	tests := []struct {
		name string
		args []string
		want int
	}{
		{"unknown flag", []string{"--nope"}, 2},
		{"bad log level", []string{"--log-level", "loud"}, 2},
		{"missing config", []string{"--config", filepath.Join(t.TempDir(), "none.json")}, 1},
		{"config without networks", []string{"--config", bad, "--metrics-bind-address", "0", "--health-probe-bind-address", "0"}, 1},
		{"config with a bad prefix", []string{"--config", badPrefix, "--metrics-bind-address", "0", "--health-probe-bind-address", "0"}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := run(tt.args); got != tt.want {
				t.Fatalf("exit %d, want %d", got, tt.want)
			}
		})
	}
}

// TestBaseRulesetInNamespace runs the command without a kubeconfig inside a network namespace:
// it applies the base ruleset, keeps running, and exits 0 on SIGTERM.
func TestBaseRulesetInNamespace(t *testing.T) {
	nfttest.NeedRoot(t)
	ns := nfttest.New(t, "mffwcmd")
	cfg := writeConfig(t, api.FirewallConfig{
		MachineID:         "fw-1",
		ExternalInterface: "ext0",
		Networks:          []api.FirewallNetwork{{NetworkID: "private", Interface: "tenant0", Prefixes: []string{"10.0.0.0/22"}, RateLimit: 1000}},
		EgressIPs:         []string{"203.0.113.1"},
		ICMPRate:          10,
		LogRate:           5,
	})
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns.Name, self, "--config", cfg,
		"--metrics-bind-address", "0", "--health-probe-bind-address", "0")
	cmd.Env = append(os.Environ(), "FWC_MAIN=1")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
	})

	deadline := time.Now().Add(60 * time.Second)
	var table string
	for {
		table = ns.Table("inet", "firewall")
		if strings.Contains(table, "snat ip to 203.0.113.1") {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("firewall-controller exited early: %v\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no base ruleset after 60s:\n%s\n%s", table, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, want := range []string{"policy drop;", `iifname "tenant0" limit rate over 1000/second`, `log prefix`} {
		if !strings.Contains(table, want) {
			t.Errorf("base ruleset lacks %q:\n%s", want, table)
		}
	}
	// ip netns exec execs the command, so the process is the controller itself.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no exit within 30s of SIGTERM\n%s", out.String())
	}
	if !strings.Contains(out.String(), "no kubeconfig") {
		t.Errorf("log does not say the controller runs without a cluster:\n%s", out.String())
	}
}
