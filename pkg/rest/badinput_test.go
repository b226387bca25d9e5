package rest

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/metalforge/metalforge/pkg/api"
)

// TestBadInput sends malformed and invalid requests: each gets a clear 4xx {code, message} and
// leaves the store exactly as it was.
func TestBadInput(t *testing.T) {
	e := newEnv(t)
	admin, owner := e.tokens["admin"], e.tokens["ownerA"]
	free := "m-free1"
	if e.machineA == free {
		free = "m-free2"
	}
	tests := []struct {
		name, token, method, path string
		body                      any
		code                      int
		msg                       string
	}{
		{"malformed json", admin, "POST", "/v1/partition", `{"id": "p2",`, 400, "malformed request body"},
		{"not json", admin, "POST", "/v1/size", `hello`, 400, "malformed request body"},
		{"empty body", admin, "POST", "/v1/image", ``, 400, "request body is empty"},
		{"trailing data", admin, "POST", "/v1/partition", `{"id":"p2"} {"id":"p3"}`, 400, "data after the JSON value"},
		{"unknown field", admin, "POST", "/v1/partition", `{"id":"p2","kernel":"x"}`, 400, `unknown field "kernel"`},
		{"wrong type", admin, "POST", "/v1/size", `{"id":"s","constraints":"many"}`, 400, "malformed request body"},
		{"huge body", admin, "POST", "/v1/partition", `{"id":"p2","description":"` + strings.Repeat("x", 2<<20) + `"}`, 400, "larger than"},
		{"bad id", admin, "POST", "/v1/partition", api.Partition{Meta: api.Meta{ID: "../etc"}}, 400, "id"},
		{"bad kernel url", admin, "POST", "/v1/partition", api.Partition{Meta: api.Meta{ID: "p2"}, Boot: api.BootConfig{KernelURL: "ftp:/x"}}, 400, "kernel url"},
		{"duplicate partition", admin, "POST", "/v1/partition", api.Partition{Meta: api.Meta{ID: "p1"}}, 409, "already exists"},
		{"overlapping size", admin, "POST", "/v1/size", api.Size{Meta: api.Meta{ID: "c1-other"}, Constraints: []api.Constraint{{Type: api.ConstraintCores, Min: 2, Max: 8}}}, 400, "overlaps size c1-small"},
		{"size min > max", admin, "POST", "/v1/size", api.Size{Meta: api.Meta{ID: "x"}, Constraints: []api.Constraint{{Type: api.ConstraintCores, Min: 9, Max: 8}}}, 400, "min 9 is greater than max 8"},
		{"invalid cidr", admin, "POST", "/v1/network", api.Network{Meta: api.Meta{ID: "n"}, Type: api.NetworkExternal, Prefixes: []string{"300.1.2.0/24"}}, 400, "prefixes"},
		{"non-canonical cidr", admin, "POST", "/v1/network", api.Network{Meta: api.Meta{ID: "n"}, Type: api.NetworkExternal, Prefixes: []string{"192.0.2.1/24"}}, 400, "not canonical"},
		{"overlapping prefix", admin, "POST", "/v1/network", api.Network{Meta: api.Meta{ID: "n"}, Type: api.NetworkExternal, Prefixes: []string{"185.1.2.128/25"}}, 400, "overlaps"},
		{"second super", admin, "POST", "/v1/network", api.Network{Meta: api.Meta{ID: "n"}, Type: api.NetworkSuper, PartitionID: "p1", Prefixes: []string{"172.16.0.0/12"}}, 400, "already has super network"},
		{"unknown network type", admin, "POST", "/v1/network", api.Network{Meta: api.Meta{ID: "n"}, Type: "vlan", Prefixes: []string{"172.16.0.0/12"}}, 400, "network type"},
		{"bad sha256", admin, "POST", "/v1/image", api.Image{Meta: api.Meta{ID: "i"}, URL: "http://x/i", SHA256: "abc", OS: "d", OSVersion: "1", Features: []string{"machine"}}, 400, "sha256"},
		{"bad feature", admin, "POST", "/v1/image", api.Image{Meta: api.Meta{ID: "i"}, URL: "http://x/i", SHA256: strings.Repeat("0", 64), OS: "d", OSVersion: "1", Features: []string{"router"}}, 400, "feature"},
		{"layout without root", admin, "POST", "/v1/filesystemlayout", api.FilesystemLayout{Meta: api.Meta{ID: "l"}, Disks: []api.Disk{{Device: "/dev/sda", Partitions: []api.DiskPartition{{Number: 1}}}}, Filesystems: []api.Filesystem{{Device: "/dev/sda1", Format: "ext4", Path: "/data"}}}, 400, "no root filesystem"},
		{"layout unknown device", admin, "POST", "/v1/filesystemlayout", api.FilesystemLayout{Meta: api.Meta{ID: "l"}, Filesystems: []api.Filesystem{{Device: "/dev/sdz1", Format: "ext4", Path: "/"}}}, 400, "not in the layout"},
		{"specific ip outside network", owner, "POST", "/v1/ip/allocate", api.IPAllocateRequest{NetworkID: "internet", Address: "8.8.8.8"}, 400, "not a usable address"},
		{"specific ip taken", owner, "POST", "/v1/ip/allocate", api.IPAllocateRequest{NetworkID: "internet", Address: e.ipA}, 409, "already allocated"},
		{"broadcast address", owner, "POST", "/v1/ip/allocate", api.IPAllocateRequest{NetworkID: "internet", Address: "185.1.2.255"}, 400, "not a usable address"},
		{"ip from super network", owner, "POST", "/v1/ip/allocate", api.IPAllocateRequest{NetworkID: "tenant-super"}, 400, "super network"},
		{"allocate unknown size", owner, "POST", "/v1/machine/allocate", api.MachineAllocateRequest{PartitionID: "p1", SizeID: "nope", ImageID: "debian-12", AutoNetwork: true}, 400, "size"},
		{"allocate unknown image", owner, "POST", "/v1/machine/allocate", api.MachineAllocateRequest{PartitionID: "p1", SizeID: "c1-small", ImageID: "nope", AutoNetwork: true}, 400, "image"},
		{"allocate bad hostname", owner, "POST", "/v1/machine/allocate", api.MachineAllocateRequest{PartitionID: "p1", SizeID: "c1-small", ImageID: "debian-12", Hostname: "Not_Valid"}, 400, "hostname"},
		{"allocate without network", owner, "POST", "/v1/machine/allocate", api.MachineAllocateRequest{PartitionID: "p1", SizeID: "c1-small", ImageID: "debian-12"}, 400, "exactly one private network"},
		{"allocate unknown role", owner, "POST", "/v1/machine/allocate", api.MachineAllocateRequest{PartitionID: "p1", SizeID: "c1-small", ImageID: "debian-12", Role: "router"}, 400, "role"},
		{"free unallocated", admin, "POST", "/v1/machine/" + free + "/free", nil, 409, "not allocated"},
		{"unknown power command", owner, "POST", "/v1/machine/" + e.machineA + "/power/explode", nil, 400, "bmc command"},
		{"bad limit", admin, "GET", "/v1/machine?limit=-1", nil, 400, "limit"},
		{"stale update", admin, "PUT", "/v1/partition/p1", api.Partition{Meta: api.Meta{ID: "p1", Version: 99}}, 409, "version"},
		{"id mismatch", admin, "PUT", "/v1/partition/p1", api.Partition{Meta: api.Meta{ID: "p9", Version: 1}}, 400, "does not match"},
		{"delete partition in use", admin, "DELETE", "/v1/partition/p1", nil, 409, "still has"},
		{"delete network with ips", admin, "DELETE", "/v1/network/internet", nil, 409, "still has"},
		{"unknown route", admin, "GET", "/v1/nothing", nil, 404, "not found"},
		{"unknown token role", admin, "POST", "/v1/token", api.Token{Role: "root"}, 400, "role"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.snapshot()
			code, raw := e.raw(tt.token, tt.method, tt.path, tt.body)
			if code != tt.code {
				t.Fatalf("status %d, want %d: %s", code, tt.code, raw)
			}
			var body api.Error
			if err := json.Unmarshal(raw, &body); err != nil || body.Code != code || body.Message == "" {
				t.Fatalf("error body %s is not {code, message} with code %d", raw, code)
			}
			if !strings.Contains(body.Message, tt.msg) {
				t.Fatalf("message %q does not mention %q", body.Message, tt.msg)
			}
			if after := e.snapshot(); after != before {
				t.Fatalf("store changed by a rejected request")
			}
		})
	}
	// Exhausted pool: a /30 external network has two usable addresses.
	e.must(http.StatusCreated, admin, "POST", "/v1/network", api.Network{Meta: api.Meta{ID: "tiny"}, Type: api.NetworkExternal, Prefixes: []string{"198.51.100.0/30"}}, nil)
	for range 2 {
		e.must(http.StatusCreated, owner, "POST", "/v1/ip/allocate", api.IPAllocateRequest{NetworkID: "tiny"}, nil)
	}
	before := e.snapshot()
	code, raw := e.raw(owner, "POST", "/v1/ip/allocate", api.IPAllocateRequest{NetworkID: "tiny"})
	if code != http.StatusConflict || !strings.Contains(string(raw), "no free address") {
		t.Fatalf("exhausted network: status %d: %s", code, raw)
	}
	if e.snapshot() != before {
		t.Fatal("store changed by an allocation from an exhausted network")
	}
}
