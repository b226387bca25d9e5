package fabric

import (
	"context"
	"flag"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/apiserver"
	"github.com/metalforge/metalforge/pkg/bootrpc"
	fab "github.com/metalforge/metalforge/pkg/fabric"
	"github.com/metalforge/metalforge/switch-agent/render"
)

const partition = "lab"

var (
	hold = flag.Duration("lab.hold", 0, "on failure, keep the fabric up this long before tearing it down (for debugging)")
	logs = flag.Bool("lab.logs", false, "print the FRR and lab logs also when the test passes")
)

// TestIsolation is the fabric's acceptance test: machines of tenant A on both leaves reach each
// other across the EVPN fabric, tenant B cannot reach tenant A at all, and a freed machine's port
// leaves the VRF so that it reaches neither. It also prints how long the fabric takes from a
// metal-api change (allocate, free) to the routes being present or gone.
func TestIsolation(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, mounts and FRR daemons")
	}
	for _, bin := range []string{"vtysh", "/usr/lib/frr/zebra", "/usr/lib/frr/bgpd", "/usr/lib/frr/frr-reload.py"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s missing: run hack/deps.sh frr frr-pythontools", bin)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	work := t.TempDir()
	logFile, err := os.Create(filepath.Join(work, "lab.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	log := slog.New(slog.NewTextHandler(logFile, &slog.HandlerOptions{Level: slog.LevelInfo}))
	t.Cleanup(func() {
		if t.Failed() || *logs {
			dumpLogs(t, work)
		}
	})

	start := time.Now()
	f, err := Start(ctx, Config{WorkDir: work, Log: log,
		Hosts: []HostSpec{{Name: "a1", Leaf: 0}, {Name: "b1", Leaf: 0}, {Name: "a2", Leaf: 1}, {Name: "b2", Leaf: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() && *hold > 0 {
			t.Logf("holding fabric %s for %s", f.Name(), *hold)
			time.Sleep(*hold)
		}
		if err := f.Close(); err != nil {
			t.Errorf("tear down: %v", err)
		}
		if _, err := os.Stat(f.root()); err == nil {
			t.Errorf("%s left behind", f.root())
		}
	})
	t.Logf("fabric %s up in %s", f.Name(), time.Since(start).Round(time.Millisecond))
	host := map[string]*Host{}
	for _, h := range f.Hosts {
		host[h.Name] = h
	}

	// metal-api, in-process.
	admin := "lab-admin-token"
	addrs := make(chan [2]net.Addr, 1)
	apiCtx, stopAPI := context.WithCancel(ctx)
	apiDone := make(chan error, 1)
	go func() {
		apiDone <- apiserver.Start(apiCtx, apiserver.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", GRPCListen: "127.0.0.1:0",
			AdminToken: admin, Ready: func(r, g net.Addr) { addrs <- [2]net.Addr{r, g} }}, log)
	}()
	var restAddr, grpcAddr net.Addr
	select {
	case a := <-addrs:
		restAddr, grpcAddr = a[0], a[1]
	case err := <-apiDone:
		t.Fatalf("metal-api: %v", err)
	case <-ctx.Done():
		t.Fatal("metal-api did not start")
	}
	defer func() {
		stopAPI()
		<-apiDone
	}()
	r := rest{t: t, base: "http://" + restAddr.String()}
	seed(r, admin)
	var projA, projB api.Project
	r.must(admin, "POST", "/v1/project", api.Project{Meta: api.Meta{Name: "tenant-a"}}, &projA)
	r.must(admin, "POST", "/v1/project", api.Project{Meta: api.Meta{Name: "tenant-b"}}, &projB)
	var svc api.Token
	r.must(admin, "POST", "/v1/token", api.Token{Meta: api.Meta{Name: "switch-agents"}, Role: api.RoleService, PartitionID: partition}, &svc)

	agentCtx, stopAgents := context.WithCancel(ctx)
	agents, err := f.RunAgents(agentCtx, AgentsConfig{API: r.base, Token: svc.Secret, PartitionID: partition, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		stopAgents()
		if err := agents.Wait(); err != nil {
			t.Error(err)
		}
	}()
	for _, l := range f.Leaves {
		eventually(t, ctx, 60*time.Second, l.Name+" registered and synced", func() (bool, error) {
			var sw api.Switch
			if err := r.call(admin, "GET", "/v1/switch/"+l.Name, nil, &sw); err != nil {
				return false, err
			}
			return sw.LastSync != nil && sw.LastSync.Error == "", nil
		})
	}
	t.Logf("switches registered and synced %s after start", time.Since(start).Round(time.Millisecond))

	// Machines register as the hammer does; b2 without LLDP neighbours, so its switch port must be
	// learnt from the leaf's LLDP report.
	boot, closer, err := bootrpc.Dial(ctx, grpcAddr.String(), svc.Secret)
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	hammerCtx, stopHammers := context.WithCancel(ctx)
	defer stopHammers()
	ids := map[string]string{}
	for _, h := range f.Hosts {
		ids[h.Name] = hammer(t, hammerCtx, h, boot, partition, h.Name != "b2")
	}
	for name, id := range ids {
		eventually(t, ctx, 30*time.Second, id+" waiting and connected", func() (bool, error) {
			var m api.Machine
			if err := r.call(admin, "GET", "/v1/machine/"+id, nil, &m); err != nil {
				return false, err
			}
			var sw api.Switch
			if err := r.call(admin, "GET", "/v1/switch/"+host[name].Leaf.Name, nil, &sw); err != nil {
				return false, err
			}
			linked := false
			for _, c := range sw.Connections {
				linked = linked || c.MachineID == id && c.Port == host[name].Port
			}
			return m.Waiting && linked, nil
		})
	}

	// Allocate: A on both leaves, B on both leaves. Then the hosts do what the installed OS does
	// (addresses, FRR), all at once, while the test watches the routes appear.
	machines := map[string]*api.Machine{}
	allocated := map[string]time.Time{}
	for _, name := range []string{"a1", "a2", "b1", "b2"} {
		proj := projA.ID
		if strings.HasPrefix(name, "b") {
			proj = projB.ID
		}
		var m api.Machine
		allocated[name] = time.Now()
		r.must(admin, "POST", "/v1/machine/allocate", api.MachineAllocateRequest{MachineID: ids[name], ProjectID: proj,
			PartitionID: partition, SizeID: "lab-size", ImageID: "lab-image", Hostname: name, AutoNetwork: true}, &m)
		machines[name] = &m
	}
	configured := make(chan error, len(machines))
	for name, m := range machines {
		go func() { configured <- host[name].Configure(ctx, m.Allocation) }()
	}
	for range machines {
		if err := <-configured; err != nil {
			t.Fatal(err)
		}
	}
	ip := map[string]netip.Addr{}
	vrf := map[string]string{}
	for name, m := range machines {
		ip[name], vrf[name] = privateIP(t, m)
	}
	if vrf["a1"] != vrf["a2"] || vrf["b1"] != vrf["b2"] || vrf["a1"] == vrf["b1"] {
		t.Fatalf("vrfs: %v, want one per tenant", vrf)
	}

	// Converged: each machine's session with its leaf, its route in the VRF of the other leaf and
	// on its tenant peer.
	var ws []watch
	for name, h := range host {
		ws = append(ws, watch{"allocate " + name + " → port in " + vrf[name] + " (agent applied)", allocated[name],
			func() (bool, error) {
				ok, err := h.Leaf.PortIn(vrf[name], h.Port)
				return ok, err
			}})
		ws = append(ws, watch{"allocate " + name + " → session with " + h.Leaf.Name + " established", allocated[name],
			func() (bool, error) {
				s, err := h.Leaf.SessionState(ctx, vrf[name], h.Port)
				return s == "Established", err
			}})
	}
	for _, pair := range [][2]string{{"a1", "a2"}, {"a2", "a1"}, {"b1", "b2"}, {"b2", "b1"}} {
		from, to := host[pair[0]], pair[1]
		ws = append(ws,
			watch{"allocate " + to + " → route in " + from.Leaf.Name + " " + vrf[to], allocated[to], func() (bool, error) {
				return from.Leaf.VRFHasRoute(vrf[to], ip[to])
			}},
			watch{"allocate " + to + " → route on " + from.Name, allocated[to], func() (bool, error) { return from.HasRoute(ip[to]) }})
	}
	converge(t, ctx, 60*time.Second, ws)
	for _, pair := range [][2]string{{"a1", "a2"}, {"a2", "a1"}, {"b1", "b2"}, {"b2", "b1"}} {
		if err := host[pair[0]].Ping(ctx, ip[pair[0]], ip[pair[1]], 10*time.Second); err != nil {
			t.Errorf("same tenant: %v", err)
		}
	}

	// Tenant B cannot reach tenant A at all, and A not B, though every host routes by default
	// to its leaf: the leaves' VRFs have no route across tenants.
	for _, pair := range [][2]string{{"b1", "a1"}, {"b1", "a2"}, {"b2", "a1"}, {"b2", "a2"}, {"a1", "b1"}, {"a2", "b2"}} {
		if err := host[pair[0]].Ping(ctx, ip[pair[0]], ip[pair[1]], 2*time.Second); err == nil {
			t.Errorf("%s (%s) reaches %s (%s) of another tenant", pair[0], ip[pair[0]], pair[1], ip[pair[1]])
		}
	}
	for _, l := range f.Leaves {
		for _, a := range []string{"a1", "a2"} {
			if ok, err := l.VRFHasRoute(vrf["b1"], ip[a]); err != nil || ok {
				t.Errorf("%s vrf %s of tenant B routes %s of tenant A (err %v)", l.Name, vrf["b1"], ip[a], err)
			}
		}
	}

	// The rendered config round-trips through FRR: reloading it again would change nothing, so a
	// resync does not touch the sessions.
	for _, l := range f.Leaves {
		var d fab.SwitchDesired
		r.must(admin, "GET", "/v1/switch/"+l.Name+"/desired", nil, &d)
		c, err := render.Lab{}.Render(render.Input{Switch: l.RenderSwitch(1, 3), Desired: &d})
		if err != nil {
			t.Fatal(err)
		}
		if diff, err := l.FRR.Diff(ctx, c.FRR); err != nil || diff != "" {
			t.Errorf("%s: reloading the applied config again would change:\n%s (%v)", l.Name, diff, err)
		}
	}

	// Free a2: its port leaves the VRF, its routes vanish, it reaches nobody.
	freed := time.Now()
	r.must(admin, "POST", "/v1/machine/"+ids["a2"]+"/free", nil, nil)
	converge(t, ctx, 30*time.Second, []watch{
		{"free a2 → route gone in leaf1 " + vrf["a2"], freed, func() (bool, error) {
			ok, err := f.Leaves[0].VRFHasRoute(vrf["a2"], ip["a2"])
			return !ok, err
		}},
		{"free a2 → route gone on a1", freed, func() (bool, error) {
			ok, err := host["a1"].HasRoute(ip["a2"])
			return !ok, err
		}},
		{"free a2 → " + vrf["a2"] + " gone from leaf2's frr", freed, func() (bool, error) {
			ok, err := f.Leaves[1].HasVRF(ctx, vrf["a2"])
			return !ok, err
		}},
		{"free a2 → port reported back in pxe", freed, func() (bool, error) {
			var sw api.Switch
			if err := r.call(admin, "GET", "/v1/switch/leaf2", nil, &sw); err != nil {
				return false, err
			}
			for _, p := range sw.Ports {
				if p.Name == host["a2"].Port {
					return p.DesiredState == fab.PortPXE && p.ActualState == fab.PortPXE && p.VRF == "", nil
				}
			}
			return false, nil
		}},
	})
	if ok, _ := f.Leaves[0].VRFHasRoute(vrf["a1"], ip["a2"]); ok {
		t.Errorf("leaf1 still routes freed a2")
	}
	for _, to := range []string{"a1", "b1", "b2"} {
		if err := host["a2"].Ping(ctx, ip["a2"], ip[to], 2*time.Second); err == nil {
			t.Errorf("freed a2 reaches %s", to)
		}
	}
	if err := host["a2"].Ping(ctx, ip["a2"], f.Leaves[1].Loopback, 2*time.Second); err == nil {
		t.Errorf("freed a2 reaches the underlay (leaf2 loopback)")
	}
	if err := host["a1"].Ping(ctx, ip["a1"], ip["a2"], 2*time.Second); err == nil {
		t.Errorf("a1 reaches freed a2")
	}
	if err := host["b1"].Ping(ctx, ip["b1"], ip["b2"], 5*time.Second); err != nil {
		t.Errorf("tenant B broken by freeing a2: %v", err)
	}

	// Freeing b1 reloads leaf1 without its VRF; the sessions the change does not touch (a1's and
	// the uplink's) stay up through the reload.
	a1Before, err := f.Leaves[0].Established(ctx, vrf["a1"], host["a1"].Port)
	if err != nil {
		t.Fatal(err)
	}
	upBefore, err := f.Leaves[0].Established(ctx, "default", f.Leaves[0].Uplink)
	if err != nil {
		t.Fatal(err)
	}
	freed = time.Now()
	r.must(admin, "POST", "/v1/machine/"+ids["b1"]+"/free", nil, nil)
	converge(t, ctx, 30*time.Second, []watch{{"free b1 → " + vrf["b1"] + " gone from leaf1's frr", freed, func() (bool, error) {
		ok, err := f.Leaves[0].HasVRF(ctx, vrf["b1"])
		return !ok, err
	}}})
	if n, err := f.Leaves[0].Established(ctx, vrf["a1"], host["a1"].Port); err != nil || n != a1Before {
		t.Errorf("a1's session was re-established by leaf1's reload (%d → %d, %v)", a1Before, n, err)
	}
	if n, err := f.Leaves[0].Established(ctx, "default", f.Leaves[0].Uplink); err != nil || n != upBefore {
		t.Errorf("leaf1's uplink session was re-established by its reload (%d → %d, %v)", upBefore, n, err)
	}
	// a2 boots into the hammer again and is allocated to tenant A again: leaf2 reuses the parked
	// VRF namespace and a1 reaches a2 again.
	hammer(t, hammerCtx, host["a2"], boot, partition, true)
	eventually(t, ctx, 30*time.Second, "a2 waiting again", func() (bool, error) {
		var m api.Machine
		err := r.call(admin, "GET", "/v1/machine/"+ids["a2"], nil, &m)
		return err == nil && m.Waiting, err
	})
	var again api.Machine
	reallocated := time.Now()
	r.must(admin, "POST", "/v1/machine/allocate", api.MachineAllocateRequest{MachineID: ids["a2"], ProjectID: projA.ID,
		PartitionID: partition, SizeID: "lab-size", ImageID: "lab-image", Hostname: "a2", AutoNetwork: true}, &again)
	if err := host["a2"].Configure(ctx, again.Allocation); err != nil {
		t.Fatal(err)
	}
	ip["a2"], _ = privateIP(t, &again)
	converge(t, ctx, 60*time.Second, []watch{{"re-allocate a2 → route on a1 (parked vrf reused)", reallocated, func() (bool, error) {
		return host["a1"].HasRoute(ip["a2"])
	}}})
	if err := host["a1"].Ping(ctx, ip["a1"], ip["a2"], 10*time.Second); err != nil {
		t.Errorf("after re-allocation: %v", err)
	}

	for _, l := range f.Leaves {
		var sw api.Switch
		r.must(admin, "GET", "/v1/switch/"+l.Name, nil, &sw)
		if sw.LastSync == nil || sw.LastSync.Error != "" {
			t.Errorf("%s last sync: %+v", l.Name, sw.LastSync)
		}
	}
}

// seed writes the partition's fixed data.
func seed(r rest, admin string) {
	r.must(admin, "POST", "/v1/partition", api.Partition{Meta: api.Meta{ID: partition}}, nil)
	r.must(admin, "POST", "/v1/size", api.Size{Meta: api.Meta{ID: "lab-size"}, Constraints: []api.Constraint{
		{Type: api.ConstraintCores, Min: 1, Max: 64}}}, nil)
	r.must(admin, "POST", "/v1/image", api.Image{Meta: api.Meta{ID: "lab-image"}, URL: "http://images/lab.tar.zst",
		SHA256: strings.Repeat("ab", 32), OS: "debian", OSVersion: "12", Features: []string{api.FeatureMachine}}, nil)
	r.must(admin, "POST", "/v1/filesystemlayout", api.FilesystemLayout{Meta: api.Meta{ID: "lab-layout"},
		Disks:       []api.Disk{{Device: "/dev/vda", Partitions: []api.DiskPartition{{Number: 1, Label: "root"}}}},
		Filesystems: []api.Filesystem{{Device: "/dev/vda1", Format: "ext4", Path: "/"}}}, nil)
	r.must(admin, "POST", "/v1/network", api.Network{Meta: api.Meta{ID: "lab-super"}, Type: api.NetworkSuper,
		Prefixes: []string{"10.128.0.0/14"}, PartitionID: partition, ChildPrefixLength: 22}, nil)
}

// dumpLogs prints the lab's logs of a failed run.
func dumpLogs(t *testing.T, work string) {
	files, _ := filepath.Glob(filepath.Join(work, "log", "*.log"))
	files = append(files, filepath.Join(work, "lab.log"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil || len(b) == 0 {
			continue
		}
		if len(b) > 6000 {
			b = b[len(b)-6000:]
		}
		t.Logf("==> %s\n%s", p, b)
	}
}
