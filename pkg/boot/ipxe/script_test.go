package ipxe

import (
	"strings"
	"testing"
	"time"

	"github.com/metalforge/metalforge/pkg/api"
)

func TestResolve(t *testing.T) {
	const base = "http://10.0.0.1:8080"
	for _, tc := range []struct{ loc, want string }{
		{"https://images.example/vmlinuz", "https://images.example/vmlinuz"},
		{"/images/hammer.img", base + "/images/hammer.img"},
		{"debian/vmlinuz", base + "/assets/debian/vmlinuz"},
		{" vmlinuz\n", base + "/assets/vmlinuz"},
		{"vm linuz", base + "/assets/vmlinuz"},
	} {
		if got := Resolve(base, tc.loc); got != tc.want {
			t.Errorf("Resolve(%q) = %q, want %q", tc.loc, got, tc.want)
		}
	}
}

// TestHammerScriptInjection: values from the partition config or the flags cannot add lines or
// arguments to the script.
func TestHammerScriptInjection(t *testing.T) {
	d := api.BootDecision{MachineID: "m1\nshell", Action: api.BootActionHammer, Kernel: "vmlinuz\nshell",
		Initrd: "initrd.img", Cmdline: "console=ttyS0\nshell\r\n"}
	s := HammerScript(d, "http://srv", Hammer{API: "api:50051 evil=1", PartitionID: "p1\nshell", Token: "t\nshell"}, time.Second)
	for _, line := range strings.Split(s, "\n") {
		if strings.TrimSpace(line) == "shell" {
			t.Fatalf("injected a line:\n%s", s)
		}
	}
	if !strings.Contains(s, " mf.api=api:50051evil=1 ") || strings.Contains(s, " evil=1") {
		t.Errorf("flag value split into arguments:\n%s", s)
	}
	if got := strings.Count(s, "\n"); got != 9 {
		t.Errorf("%d lines, want 9:\n%s", got, s)
	}
}

func TestRetryDelay(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "sleep 1\n", 1500 * time.Millisecond: "sleep 2\n", time.Minute: "sleep 60\n"} {
		if s := Retry("x", "http://srv/boot.ipxe", d); !strings.Contains(s, want) {
			t.Errorf("Retry(%v) = %q, want %q", d, s, want)
		}
	}
}
