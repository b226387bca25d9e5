package metalctl_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/metalforge/metalforge/pkg/client/clienttest"
	"github.com/metalforge/metalforge/pkg/metalctl"
)

// waitingMachine registers a machine through the boot service and waits until metalctl shows it
// waiting.
func (e *env) waitingMachine(i int) string {
	e.t.Helper()
	m := clienttest.Machine("p1", i)
	e.api.Register(m)
	e.api.Wait(m.ID)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(e.ok("machine", "find", "--waiting", "--id", m.ID), m.ID) {
		if time.Now().After(deadline) {
			e.t.Fatalf("machine %s is not waiting after 30s", m.ID)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return m.ID
}

func contains(t *testing.T, what, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("%s does not contain %q:\n%s", what, w, out)
		}
	}
}

func TestMachine(t *testing.T) {
	e := newEnv(t)
	e.ok("apply", "-f", seed)
	id := e.waitingMachine(1)

	out := e.ok("machine", "ls")
	contains(t, "machine ls", out, "ID ", "STATUS", id, "c1-small", "waiting", "Alive")
	contains(t, "machine ls -o wide", e.ok("machine", "ls", "-o", "wide"), "LAST EVENT", "Waiting")
	if got := e.items("machine", "find", "--partition", "p1", "--size", "c1-small", "--allocated=false"); len(got) != 1 || got[0] != id {
		t.Errorf("find unallocated: %q", got)
	}
	if got := e.items("machine", "find", "--partition", "other"); len(got) != 0 {
		t.Errorf("find in another partition: %q", got)
	}

	// Operator state: lock blocks nothing here but must be cleared by unlock, not untaint.
	contains(t, "lock", e.ok("machine", "taint", id, "--description", "flaky disk"), "TAINTED")
	e.fails([]string{"not LOCKED"}, "machine", "unlock", id)
	e.ok("machine", "untaint", id)
	e.fails([]string{"required flag", "description"}, "machine", "lock", id)

	out = e.ok("machine", "allocate", "--project", "tenant-a", "--partition", "p1", "--size", "c1-small", "--image", "debian-12",
		"--filesystemlayout", "default", "--hostname", "node-1", "--network", "internet", "--sshkey", "ssh-ed25519 AAAA test",
		"--tag", "team=a")
	contains(t, "allocate", out, id, "allocated", "tenant-a", "node-1", "debian-12")
	if got := e.items("machine", "find", "--allocated=false"); len(got) != 0 {
		t.Errorf("find unallocated after the allocation: %q", got)
	}
	if got := e.items("machine", "find", "--project", "tenant-a", "--hostname", "node-1"); len(got) != 1 {
		t.Errorf("find by project and hostname: %q", got)
	}

	out = e.ok("machine", "describe", id)
	contains(t, "describe", out, "ID:", id, "Size:", "c1-small", "Memory:", "4GiB", "Disks:", "vda 20GiB",
		"Allocation:", "Hostname:", "node-1", "Networks:", "internet", "external", "185.1.2.", "Events (", "EVENT", "Registering", "Waiting")
	var described struct {
		Machine map[string]any `json:"machine"`
		Events  struct {
			Events []map[string]any `json:"events"`
		} `json:"events"`
	}
	if err := json.Unmarshal([]byte(e.ok("machine", "describe", id, "-o", "json")), &described); err != nil {
		t.Fatal(err)
	}
	if described.Machine["id"] != id || len(described.Events.Events) < 2 {
		t.Errorf("describe -o json: %+v", described)
	}
	contains(t, "events", e.ok("machine", "events", id), "TIME", "Registering", "Waiting")

	for _, p := range []string{"on", "off", "cycle", "reset", "pxe", "disk"} {
		contains(t, "power "+p, e.ok("machine", "power", p, id), "COMMAND", p)
	}
	e.ok("machine", "lock", id, "--description", "maintenance")
	e.fails([]string{"locked", "maintenance"}, "machine", "free", id)
	e.fails([]string{"locked"}, "machine", "power", "off", id)
	e.ok("machine", "unlock", id)
	contains(t, "reinstall", e.ok("machine", "reinstall", id, "--image", "debian-12"), "reinstalling")
	e.fails([]string{"allocated", "free it first"}, "machine", "rm", id)
	out = e.ok("machine", "free", id)
	if strings.Contains(out, "tenant-a") {
		t.Errorf("freed machine still shows its project:\n%s", out)
	}
	if out := e.ok("machine", "rm", id); out != "machine "+id+" deleted\n" {
		t.Errorf("rm printed %q", out)
	}
}

func TestNetworkAndIP(t *testing.T) {
	e := newEnv(t)
	e.ok("apply", "-f", seed)
	var net struct {
		ID, Type, ParentNetworkID string
		Prefixes                  []string
	}
	if err := json.Unmarshal([]byte(e.ok("network", "allocate", "--project", "tenant-a", "--partition", "p1", "--name", "a",
		"-o", "json")), &net); err != nil {
		t.Fatal(err)
	}
	if net.Type != "private" || net.ParentNetworkID != "tenant-super" || len(net.Prefixes) != 1 {
		t.Fatalf("allocated network %+v", net)
	}
	contains(t, "usage", e.ok("network", "usage", "tenant-super"), "USED PREFIXES", "1")
	if got := e.items("network", "find", "--type", "private"); len(got) != 1 || got[0] != net.ID {
		t.Errorf("find private networks: %q", got)
	}
	contains(t, "network ls -o wide", e.ok("network", "ls", "-o", "wide"), "VRF", "104009", "0.0.0.0/0")

	out := e.ok("ip", "allocate", "--network", "internet", "--project", "tenant-a", "--name", "ingress", "--tag", "lb")
	contains(t, "ip allocate", out, "ADDRESS", "185.1.2.", "ingress")
	addr := strings.Fields(strings.Split(out, "\n")[1])[0]
	e.ok("ip", "allocate", "185.1.2.200", "--network", "internet", "--project", "tenant-a", "--type", "static")
	e.stdin = `{"networkID": "internet", "projectID": "tenant-a", "address": "185.1.2.201"}`
	contains(t, "ip create", e.ok("ip", "create", "-f", "-"), "185.1.2.201")
	if got := e.items("ip", "find", "--tag", "lb"); len(got) != 1 || got[0] != addr {
		t.Errorf("find by tag: %q, want %s", got, addr)
	}
	if got := e.items("ip", "ls"); len(got) != 3 {
		t.Errorf("ip ls: %q", got)
	}
	e.stdin = "id: " + addr + "\nname: renamed\ntype: static\n"
	contains(t, "ip update", e.ok("ip", "update", "-f", "-"), "renamed", "static")
	if out := e.ok("ip", "release", addr, "185.1.2.200", "185.1.2.201"); strings.Count(out, "released") != 3 {
		t.Errorf("release printed %q", out)
	}
	e.fails([]string{"404"}, "ip", "release", addr)
	if out := e.ok("network", "free", net.ID); out != "network "+net.ID+" freed\n" {
		t.Errorf("free printed %q", out)
	}
}

func TestToken(t *testing.T) {
	e := newEnv(t)
	e.ok("apply", "-f", seed)
	out := e.ok("token", "create", "--role", "viewer", "--project", "tenant-a", "--name", "ci", "--expires", "24h")
	contains(t, "token create", out, "ROLE", "viewer", "tenant-a", "Secret (shown only now): ")
	secret := strings.TrimSpace(out[strings.LastIndex(out, ": ")+2:])

	var tok struct{ ID, Secret, Expires string }
	if err := json.Unmarshal([]byte(e.ok("token", "create", "--role", "owner", "--project", "tenant-a", "-o", "json")), &tok); err != nil {
		t.Fatal(err)
	}
	if tok.Secret == "" || tok.Expires != "" {
		t.Errorf("created token %+v, want a secret and no expiry", tok)
	}

	viewer := &env{t: t, api: e.api, vars: map[string]string{metalctl.EnvURL: e.api.URL, metalctl.EnvToken: secret}}
	if got := viewer.items("project", "ls"); len(got) != 1 || got[0] != "tenant-a" {
		t.Errorf("projects of the viewer: %q", got)
	}
	viewer.stdin = "id: p2\n"
	viewer.fails([]string{"admin role required", "403"}, "partition", "create", "-f", "-")

	ls := e.ok("token", "ls")
	contains(t, "token ls", ls, "ci", "viewer", tok.ID)
	if strings.Contains(ls, secret) || strings.Contains(e.ok("token", "ls", "-o", "json"), secret) {
		t.Error("token ls shows a secret")
	}
	e.ok("token", "rm", tok.ID)
	e.fails([]string{"404"}, "token", "rm", tok.ID)
	e.fails([]string{"expires"}, "token", "create", "--role", "viewer", "--project", "tenant-a", "--expires", "soon")
	e.fails([]string{"a viewer token needs a project", "400"}, "token", "create", "--role", "viewer")
}
