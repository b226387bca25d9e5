package rest

import (
	"net/http"
	"strings"
	"testing"

	"github.com/metalforge/metalforge/pkg/api"
)

// TestNoTokenIsUnauthorized calls every non-public route without a token.
func TestNoTokenIsUnauthorized(t *testing.T) {
	e := newEnv(t)
	s := &Server{}
	for _, r := range s.table() {
		if r.access == public {
			continue
		}
		path := fill(r.path, map[string]string{"id": "x", "command": "on"})
		for _, tok := range []string{"", "not-a-token", "Bearer"} {
			code, raw := e.raw(tok, r.method, path, "{}")
			if code != http.StatusUnauthorized {
				t.Errorf("%s %s with token %q: status %d, want 401: %s", r.method, path, tok, code, raw)
			}
		}
	}
}

func fill(path string, params map[string]string) string {
	for k, v := range params {
		path = strings.ReplaceAll(path, "{"+k+"}", v)
	}
	return path
}

// TestTenantIsolation calls every route with tokens of project B, aimed at project A's objects:
// each call targeting A must answer 403 or 404, no answer may contain A's identifiers, and nothing
// of A may change.
func TestTenantIsolation(t *testing.T) {
	e := newEnv(t)
	before := e.snapshot()
	// Identifiers that belong to tenant A and must never reach B.
	secretsOfA := []string{e.projA, e.machineA, e.netA, e.ipA, e.tokA, e.resA, "a-node"}
	ownedByA := map[string]string{ // path id per tag
		"machine": e.machineA, "network": e.netA, "ip": e.ipA, "project": e.projA, "token": e.tokA,
		"sizereservation": e.resA,
	}
	bodies := map[string]any{
		"allocateMachine":       api.MachineAllocateRequest{ProjectID: e.projA, PartitionID: "p1", SizeID: "c1-small", ImageID: "debian-12", AutoNetwork: true},
		"allocateNetwork":       api.NetworkAllocateRequest{ProjectID: e.projA, PartitionID: "p1"},
		"allocateIP":            api.IPAllocateRequest{ProjectID: e.projA, NetworkID: e.netA},
		"createToken":           api.Token{Role: api.RoleOwner, ProjectID: e.projA},
		"createProject":         api.Project{Meta: api.Meta{ID: e.projA, Name: "takeover"}},
		"findMachines":          api.MachineFindRequest{ProjectID: e.projA},
		"findIPs":               IPFindRequest{ProjectID: e.projA},
		"findNetworks":          NetworkFindRequest{ProjectID: e.projA},
		"updateProject":         api.Project{Meta: api.Meta{ID: e.projA, Version: 1, Name: "x"}},
		"updateIP":              api.IP{Meta: api.Meta{ID: e.ipA, Version: 1}, Tags: []string{"stolen"}},
		"createSizereservation": api.SizeReservation{SizeID: "c1-small", Amount: 3, ProjectID: e.projA, PartitionIDs: []string{"p1"}},
		"reinstallMachine":      api.MachineReinstallRequest{ImageID: "debian-12"},
		"setMachineState":       api.MachineStateRequest{Value: api.StateLocked, Description: "x"},
		"addMachineEvent":       api.EventRequest{Event: api.EventPhonedHome},
		"reportBMC":             api.BMCReport{PowerState: "OFF"},
	}
	s := &Server{}
	for _, tokName := range []string{"ownerB", "editorB", "viewerB"} {
		tok := e.tokens[tokName]
		for _, r := range s.table() {
			if r.access == public {
				continue
			}
			id, targetsA := ownedByA[r.tag]
			if !strings.Contains(r.path, "{id}") {
				id, targetsA = "", false
			}
			if id == "" {
				id = "p1"
			}
			body, hasBody := bodies[r.opID]
			if hasBody && strings.Contains(fmtBody(body), e.projA) {
				targetsA = true
			}
			if !hasBody && r.in != nil {
				body = "{}"
			}
			path := fill(r.path, map[string]string{"id": id, "command": "off"})
			code, raw := e.raw(tok, r.method, path, body)
			if targetsA && code != http.StatusForbidden && code != http.StatusNotFound {
				t.Errorf("%s: %s %s aimed at tenant A: status %d, want 403 or 404: %s", tokName, r.method, path, code, raw)
			}
			for _, sec := range secretsOfA {
				if code < 300 && strings.Contains(string(raw), sec) {
					t.Errorf("%s: %s %s leaked %q of tenant A: %s", tokName, r.method, path, sec, raw)
				}
			}
		}
	}
	if after := e.snapshot(); after != before {
		t.Errorf("tenant B's calls changed the store:\nbefore: %s\nafter:  %s", before, after)
	}
	// A still sees its own objects.
	var page api.Page[*api.Machine]
	e.must(200, e.tokens["viewerA"], "GET", "/v1/machine", nil, &page)
	if len(page.Items) != 1 || page.Items[0].ID != e.machineA {
		t.Fatalf("tenant A sees %d machines, want its one", len(page.Items))
	}
}

func fmtBody(b any) string {
	code, _ := b.(string)
	if code != "" {
		return code
	}
	return strings.TrimSpace(strings.ReplaceAll(jsonString(b), " ", ""))
}
