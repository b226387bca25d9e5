package rest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/auth"
	"github.com/metalforge/metalforge/pkg/machine"
	"github.com/metalforge/metalforge/pkg/store"
	"github.com/metalforge/metalforge/pkg/store/sqlite"
)

// env is a real REST server on an SQLite store with two tenants, A and B.
type env struct {
	t        testing.TB
	store    store.Store
	machines *machine.Service
	srv      *httptest.Server
	tokens   map[string]string // role name → secret
	// objects of tenant A
	projA, projB, netA, ipA, machineA, tokA, resA, extNet string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ms := machine.New(machine.Config{Store: st})
	s := New(Config{Store: st, Machines: ms, Auth: auth.NewAuthenticator(st, time.Second), Version: "test"})
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	e := &env{t: t, store: st, machines: ms, srv: srv, tokens: map[string]string{}}
	err = st.Write(ctx, func(tx store.Tx) error {
		for name, tok := range map[string]api.Token{
			"admin":   {Role: api.RoleAdmin},
			"service": {Role: api.RoleService},
		} {
			secret, _, err := auth.Issue(ctx, tx, tok)
			if err != nil {
				return err
			}
			e.tokens[name] = secret
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	e.seed()
	return e
}

// do sends a request and decodes the JSON response into out (if non-nil).
func (e *env) do(token, method, path string, body any, out any) int {
	e.t.Helper()
	code, raw := e.raw(token, method, path, body)
	if out != nil && code < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			e.t.Fatalf("%s %s: decode %s: %v", method, path, raw, err)
		}
	}
	return code
}

func (e *env) raw(token, method, path string, body any) (int, []byte) {
	e.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		r = bytes.NewReader(buf)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, r)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, raw
}

// must fails the test unless the request answers want.
func (e *env) must(want int, token, method, path string, body any, out any) {
	e.t.Helper()
	code, raw := e.raw(token, method, path, body)
	if code != want {
		e.t.Fatalf("%s %s: status %d, want %d: %s", method, path, code, want, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			e.t.Fatalf("%s %s: decode: %v", method, path, err)
		}
	}
}

const gib = 1 << 30

func (e *env) seed() {
	admin := e.tokens["admin"]
	e.must(201, admin, "POST", "/v1/partition", api.Partition{Meta: api.Meta{ID: "p1"},
		Boot: api.BootConfig{KernelURL: "http://boot/vmlinuz", InitrdURL: "http://boot/initrd"}, DNSServers: []string{"192.0.2.53"}}, nil)
	e.must(201, admin, "POST", "/v1/size", api.Size{Meta: api.Meta{ID: "c1-small"}, Constraints: []api.Constraint{
		{Type: api.ConstraintCores, Min: 1, Max: 4}, {Type: api.ConstraintMemory, Min: 1 * gib, Max: 16 * gib}}}, nil)
	e.must(201, admin, "POST", "/v1/image", api.Image{Meta: api.Meta{ID: "debian-12"}, URL: "http://images/debian-12.tar.zst",
		SHA256: strings.Repeat("ab", 32), OS: "debian", OSVersion: "12", Features: []string{api.FeatureMachine, api.FeatureFirewall}}, nil)
	e.must(201, admin, "POST", "/v1/filesystemlayout", api.FilesystemLayout{Meta: api.Meta{ID: "default"},
		Disks:       []api.Disk{{Device: "/dev/vda", Partitions: []api.DiskPartition{{Number: 1, Size: 512, Label: "efi"}, {Number: 2, Label: "root"}}}},
		Filesystems: []api.Filesystem{{Device: "/dev/vda1", Format: "vfat", Path: "/boot/efi"}, {Device: "/dev/vda2", Format: "ext4", Path: "/"}}}, nil)
	e.must(201, admin, "POST", "/v1/network", api.Network{Meta: api.Meta{ID: "tenant-super"}, Type: api.NetworkSuper,
		Prefixes: []string{"10.128.0.0/14"}, PartitionID: "p1", ChildPrefixLength: 22}, nil)
	e.must(201, admin, "POST", "/v1/network", api.Network{Meta: api.Meta{ID: "internet"}, Type: api.NetworkExternal,
		Prefixes: []string{"185.1.2.0/24"}, DestinationPrefixes: []string{"0.0.0.0/0"}, NAT: true, VRF: 104009}, nil)
	e.must(201, admin, "POST", "/v1/network", api.Network{Meta: api.Meta{ID: "underlay"}, Type: api.NetworkUnderlay,
		Prefixes: []string{"10.0.0.0/22"}, PartitionID: "p1"}, nil)
	e.extNet = "internet"
	var pa, pb api.Project
	e.must(201, admin, "POST", "/v1/project", api.Project{Meta: api.Meta{Name: "tenant-a"}}, &pa)
	e.must(201, admin, "POST", "/v1/project", api.Project{Meta: api.Meta{Name: "tenant-b"}}, &pb)
	e.projA, e.projB = pa.ID, pb.ID
	for _, r := range []struct{ name, role, project string }{
		{"ownerA", api.RoleOwner, pa.ID}, {"editorA", api.RoleEditor, pa.ID}, {"viewerA", api.RoleViewer, pa.ID},
		{"ownerB", api.RoleOwner, pb.ID}, {"editorB", api.RoleEditor, pb.ID}, {"viewerB", api.RoleViewer, pb.ID},
	} {
		var tok api.Token
		e.must(201, admin, "POST", "/v1/token", api.Token{Meta: api.Meta{Name: r.name}, Role: r.role, ProjectID: r.project}, &tok)
		e.tokens[r.name] = tok.Secret
		if r.name == "viewerA" {
			e.tokA = tok.ID
		}
	}
	var res api.SizeReservation
	e.must(201, admin, "POST", "/v1/sizereservation", api.SizeReservation{SizeID: "c1-small", Amount: 1, ProjectID: pa.ID, PartitionIDs: []string{"p1"}}, &res)
	e.resA = res.ID
	for i, id := range []string{"m-a", "m-free1", "m-free2", "m-free3"} {
		e.waitingMachine(id, i)
	}
	var m api.Machine
	e.must(201, e.tokens["ownerA"], "POST", "/v1/machine/allocate", api.MachineAllocateRequest{MachineID: "", ProjectID: pa.ID,
		PartitionID: "p1", SizeID: "c1-small", ImageID: "debian-12", Hostname: "a-node", AutoNetwork: true}, &m)
	e.machineA = m.ID
	e.netA = m.Allocation.Networks[0].NetworkID
	var ip api.IP
	e.must(201, e.tokens["ownerA"], "POST", "/v1/ip/allocate", api.IPAllocateRequest{NetworkID: "internet", ProjectID: pa.ID, Tags: []string{"lb"}}, &ip)
	e.ipA = ip.ID
}

// waitingMachine registers a machine as the hammer would and marks it waiting and alive.
func (e *env) waitingMachine(id string, i int) {
	e.t.Helper()
	ctx := context.Background()
	_, err := e.machines.Register(ctx, &api.Machine{Meta: api.Meta{ID: id}, PartitionID: "p1", Hardware: api.MachineHardware{
		CPUs: []api.MachineCPU{{Model: "QEMU", Cores: 2, Threads: 2}}, Memory: 4 * gib,
		Disks: []api.MachineBlockDevice{{Name: "vda", Size: 20 * gib}},
		NICs:  []api.MachineNIC{{Name: "eth0", MAC: macOf(i)}},
	}})
	if err != nil {
		e.t.Fatal(err)
	}
	err = e.store.Write(ctx, func(tx store.Tx) error {
		m, err := tx.Machines().Get(ctx, id)
		if err != nil {
			return err
		}
		m.Waiting = true
		return tx.Machines().Update(ctx, m)
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

func macOf(i int) string {
	return "52:54:00:00:00:" + string("0123456789abcdef"[i/16]) + string("0123456789abcdef"[i%16])
}

// snapshot is every row of every table, for "the store is unchanged" checks.
func (e *env) snapshot() string {
	e.t.Helper()
	ctx := context.Background()
	var b strings.Builder
	err := e.store.Read(ctx, func(tx store.Tx) error {
		dump := func(kind string, v any, err error) error {
			if err != nil {
				return err
			}
			raw, _ := json.Marshal(v)
			b.WriteString(kind + ":" + string(raw) + "\n")
			return nil
		}
		q := store.Query{}
		ps, _, err := tx.Partitions().List(ctx, q)
		if err := dump("partitions", ps, err); err != nil {
			return err
		}
		pr, _, err := tx.Projects().List(ctx, q)
		if err := dump("projects", pr, err); err != nil {
			return err
		}
		ss, _, err := tx.Sizes().List(ctx, q)
		if err := dump("sizes", ss, err); err != nil {
			return err
		}
		ms, _, err := tx.Machines().List(ctx, q)
		if err := dump("machines", ms, err); err != nil {
			return err
		}
		ns, _, err := tx.Networks().List(ctx, q)
		if err := dump("networks", ns, err); err != nil {
			return err
		}
		ips, _, err := tx.IPs().List(ctx, q)
		if err := dump("ips", ips, err); err != nil {
			return err
		}
		ts, _, err := tx.Tokens().List(ctx, q)
		if err := dump("tokens", ts, err); err != nil {
			return err
		}
		im, _, err := tx.Images().List(ctx, q)
		if err := dump("images", im, err); err != nil {
			return err
		}
		rs, _, err := tx.SizeReservations().List(ctx, q)
		if err := dump("reservations", rs, err); err != nil {
			return err
		}
		asn, err := tx.Held(ctx, machine.PoolASN, e.machineA)
		return dump("asn", asn, err)
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return b.String()
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
