package machine_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver for raw checks of the PostgreSQL store

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/machine"
	"github.com/metalforge/metalforge/pkg/network"
	"github.com/metalforge/metalforge/pkg/pgtest"
	"github.com/metalforge/metalforge/pkg/store"
	"github.com/metalforge/metalforge/pkg/store/postgres"
	"github.com/metalforge/metalforge/pkg/store/sqlite"
)

// The seed data every fixture has.
const (
	partitionID = "fra-equ01"
	projA       = "project-a" // has the private network privateA
	projB       = "project-b" // has no network: allocations use AutoNetwork
	sizeLarge   = "c1-xlarge-x86"
	sizeSmall   = "c1-small-x86"
	imgUbuntu   = "ubuntu-24.04"
	imgFirewall = "firewall-ubuntu-3.0"
	imgExpired  = "debian-11"
	superID     = "tenant-super-" + partitionID
	underlayID  = "underlay-" + partitionID
	internetID  = "internet"
	privateAID  = "private-" + projA
	gib         = 1 << 30
)

// t0 is the fixture clock's start.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// pg is the package's PostgreSQL server, started by the first test that needs it and stopped by
// TestMain.
var pg struct {
	once   sync.Once
	server *pgtest.Server
	err    error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if pg.server != nil {
		if err := pg.server.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stop postgres: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}

// postgresDSN returns a fresh database for t. Without PostgreSQL it skips t when not root and fails
// it as root (CI runs as root with hack/deps.sh done).
func postgresDSN(t *testing.T) string {
	t.Helper()
	if _, err := pgtest.BinDir(); err != nil {
		if os.Geteuid() != 0 {
			t.Skipf("%v; not root, so skipping (install postgresql with hack/deps.sh)", err)
		}
		t.Fatalf("%v; run hack/deps.sh to install postgresql", err)
	}
	pg.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		pg.server, pg.err = pgtest.New(ctx, "")
	})
	if pg.err != nil {
		t.Fatalf("start postgres: %v", pg.err)
	}
	return pg.server.NewDB(t)
}

// clock is the injected clock of the services: it stands still unless a test advances it.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// backend opens a store and a raw connection to its database, for checks below the store interface.
type backend struct {
	name string
	open func(t *testing.T) (store.Store, *sql.DB)
}

var sqliteBackend = backend{"sqlite", openSQLite}

func openSQLite(t *testing.T) (store.Store, *sql.DB) {
	t.Helper()
	dir := t.TempDir()
	s, err := sqlite.Open(t.Context(), dir)
	if err != nil {
		t.Fatalf("open sqlite: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	raw, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "metal.db")+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatalf("open raw sqlite: %v", err)
	}
	t.Cleanup(func() { raw.Close() })
	return s, raw
}

var postgresBackend = backend{"postgres", func(t *testing.T) (store.Store, *sql.DB) {
	t.Helper()
	return openPostgres(t, postgresDSN(t))
}}

// postgresWithDSN is the PostgreSQL backend that also tells the database, so a test can open more
// replicas on it.
func postgresWithDSN(dsn *string) backend {
	return backend{"postgres", func(t *testing.T) (store.Store, *sql.DB) {
		t.Helper()
		*dsn = postgresDSN(t)
		return openPostgres(t, *dsn)
	}}
}

// openPostgres opens one "replica" on the database dsn.
func openPostgres(t *testing.T, dsn string) (store.Store, *sql.DB) {
	t.Helper()
	s, err := postgres.Open(t.Context(), dsn)
	if err != nil {
		t.Fatalf("open postgres: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	raw, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatalf("open raw postgres: %v", err)
	}
	t.Cleanup(func() { raw.Close() })
	return s, raw
}

// fixture is a store seeded with a partition and its networks, two projects, sizes, images and
// registered, waiting machines, and a machine service on it.
type fixture struct {
	t     *testing.T
	ctx   context.Context
	store store.Store
	raw   *sql.DB
	svc   *machine.Service
	clock *clock
	cfg   fixtureConfig
	// machines are the seeded machines as registered, in ID order.
	machines []*api.Machine
}

type fixtureConfig struct {
	// machines is how many registered, waiting machines of size c1-xlarge-x86 to seed.
	machines int
	// racks spreads the machines over this many racks of two leaf switches each (default 1).
	racks int
	// backend is where the store lives (default SQLite).
	backend backend
}

func newFixture(t *testing.T, cfg fixtureConfig) *fixture {
	t.Helper()
	if cfg.racks == 0 {
		cfg.racks = 1
	}
	if cfg.backend.open == nil {
		cfg.backend = sqliteBackend
	}
	s, raw := cfg.backend.open(t)
	f := &fixture{t: t, ctx: t.Context(), store: s, raw: raw, clock: &clock{now: t0}, cfg: cfg}
	f.svc = f.service(s)
	f.seed()
	for i := range cfg.machines {
		m := f.register(f.inventory(i))
		f.markWaiting(m.ID)
	}
	f.machines = f.list()
	return f
}

// service returns another machine service on s (e.g. a second replica) with the fixture's clock.
func (f *fixture) service(s store.Store) *machine.Service {
	return machine.New(machine.Config{Store: s, Now: f.clock.Now, RecheckInterval: time.Hour})
}

// write runs fn in a write transaction that must succeed.
func (f *fixture) write(fn func(tx store.Tx) error) {
	f.t.Helper()
	if err := f.store.Write(f.ctx, fn); err != nil {
		f.t.Fatalf("write: %v", err)
	}
}

// read runs fn in a read transaction that must succeed.
func (f *fixture) read(fn func(tx store.Tx) error) {
	f.t.Helper()
	if err := f.store.Read(f.ctx, fn); err != nil {
		f.t.Fatalf("read: %v", err)
	}
}

func (f *fixture) seed() {
	f.t.Helper()
	expired := t0.Add(-24 * time.Hour)
	f.write(func(tx store.Tx) error {
		ctx := f.ctx
		err := tx.Partitions().Create(ctx, &api.Partition{Meta: api.Meta{ID: partitionID, Description: "Equinix FR5"},
			Boot: api.BootConfig{KernelURL: "http://boot.fra-equ01/vmlinuz", InitrdURL: "http://boot.fra-equ01/hammer.cpio.gz",
				Cmdline: "console=ttyS0,115200n8 ip=dhcp"},
			MgmtServiceAddress: "metal-api.example:50051", DNSServers: []string{"1.1.1.1", "8.8.8.8"},
			NTPServers: []string{"time.cloudflare.com"}})
		if err != nil {
			return err
		}
		for _, p := range []string{projA, projB} {
			if err := tx.Projects().Create(ctx, &api.Project{Meta: api.Meta{ID: p}, Tenant: "acme"}); err != nil {
				return err
			}
		}
		sizes := []*api.Size{
			{Meta: api.Meta{ID: sizeLarge}, Constraints: []api.Constraint{
				{Type: api.ConstraintCores, Min: 32, Max: 32},
				{Type: api.ConstraintMemory, Min: 128 * gib, Max: 512 * gib},
				{Type: api.ConstraintStorage, Min: 1000 * gib, Max: 4000 * gib},
			}},
			{Meta: api.Meta{ID: sizeSmall}, Constraints: []api.Constraint{
				{Type: api.ConstraintCores, Min: 4, Max: 16},
				{Type: api.ConstraintMemory, Min: 16 * gib, Max: 64 * gib},
			}},
		}
		for _, sz := range sizes {
			if err := tx.Sizes().Create(ctx, sz); err != nil {
				return err
			}
		}
		images := []*api.Image{
			{Meta: api.Meta{ID: imgUbuntu}, URL: "https://images.example/ubuntu/24.04/img.tar.lz4", SHA256: "ab12", OS: "ubuntu",
				OSVersion: "24.04", Features: []string{api.FeatureMachine}, Classification: api.ClassificationSupported},
			{Meta: api.Meta{ID: imgFirewall}, URL: "https://images.example/firewall/3.0/img.tar.lz4", SHA256: "cd34", OS: "firewall",
				OSVersion: "3.0", Features: []string{api.FeatureFirewall}, Classification: api.ClassificationSupported},
			{Meta: api.Meta{ID: imgExpired}, URL: "https://images.example/debian/11/img.tar.lz4", SHA256: "ef56", OS: "debian",
				OSVersion: "11", Features: []string{api.FeatureMachine}, Classification: api.ClassificationDeprecated,
				ExpirationDate: &expired},
		}
		for _, img := range images {
			if err := tx.Images().Create(ctx, img); err != nil {
				return err
			}
		}
		nets := []*api.Network{
			{Meta: api.Meta{ID: superID}, Type: api.NetworkSuper, Prefixes: []string{"10.0.0.0/16"}, PartitionID: partitionID,
				ChildPrefixLength: 22},
			{Meta: api.Meta{ID: underlayID}, Type: api.NetworkUnderlay, Prefixes: []string{"10.255.0.0/22"}, PartitionID: partitionID},
			{Meta: api.Meta{ID: internetID}, Type: api.NetworkExternal, Prefixes: []string{"185.1.0.0/22"},
				DestinationPrefixes: []string{"0.0.0.0/0"}, VRF: 104009, NAT: true},
		}
		for _, n := range nets {
			if err := network.Create(ctx, tx, n); err != nil {
				return err
			}
		}
		// Project A's cluster network, with a fixed id to keep the tests readable.
		priv := &api.Network{Meta: api.Meta{ID: privateAID, Name: "cluster-a"}, Type: api.NetworkPrivate, ProjectID: projA,
			PartitionID: partitionID, ParentNetworkID: superID, Prefixes: []string{"10.0.0.0/22"}}
		if err := network.Create(ctx, tx, priv); err != nil {
			return err
		}
		for r := range f.cfg.racks {
			for l := 1; l <= 2; l++ {
				if err := tx.Switches().Create(ctx, f.leaf(r, l)); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// ports is how many front ports each leaf has.
func (f *fixture) ports() int { return f.cfg.machines/f.cfg.racks + 16 }

func rackID(r int) string        { return fmt.Sprintf("rack-%02d", r+1) }
func leafID(r, l int) string     { return fmt.Sprintf("r%02d-leaf%02d", r+1, l) }
func portMAC(r, l, p int) string { return fmt.Sprintf("0c:42:a1:%02x:%02x:%02x", r+1, l, p) }

func (f *fixture) leaf(r, l int) *api.Switch {
	sw := &api.Switch{Meta: api.Meta{ID: leafID(r, l), Name: leafID(r, l)}, PartitionID: partitionID, RackID: rackID(r),
		OS: api.SwitchOS{Vendor: "SONiC", Version: "202311"}, ManagementIP: fmt.Sprintf("10.1.%d.%d", r+1, l)}
	for p := 1; p <= f.ports(); p++ {
		sw.Ports = append(sw.Ports, api.SwitchPort{Name: fmt.Sprintf("Ethernet%d", (p-1)*4), MAC: portMAC(r, l, p)})
	}
	return sw
}

// machineID is the DMI UUID of machine i. IDs sort like the indexes and below (almost) any random
// UUID: like the UUIDs of one vendor's batch they are not spread over the ID space, which is the
// worst case for allocation's random start within a rack.
func machineID(i int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012x", i+1) }

// nicMAC is the MAC of NIC n of machine i.
func nicMAC(i, n int) string { return fmt.Sprintf("b4:96:91:%02x:%02x:%02x", n, (i>>8)&0xff, i&0xff) }

// inventory is what the hammer of machine i reports: a c1-xlarge-x86 with one NIC to each leaf of its
// rack, one seen by system name and one by chassis MAC.
func (f *fixture) inventory(i int) *api.Machine {
	r, p := i%f.cfg.racks, i/f.cfg.racks+1
	port := fmt.Sprintf("Ethernet%d", (p-1)*4)
	return &api.Machine{
		Meta:        api.Meta{ID: machineID(i), Name: fmt.Sprintf("m%03d", i)},
		PartitionID: partitionID,
		Hardware: api.MachineHardware{
			CPUs: []api.MachineCPU{
				{Vendor: "AuthenticAMD", Model: "AMD EPYC 7302 16-Core Processor", Cores: 16, Threads: 32},
				{Vendor: "AuthenticAMD", Model: "AMD EPYC 7302 16-Core Processor", Cores: 16, Threads: 32},
			},
			Memory: 256 * gib,
			Disks: []api.MachineBlockDevice{
				{Name: "/dev/nvme0n1", Size: 960 * gib, Model: "SAMSUNG MZQL2960HCJR", Serial: fmt.Sprintf("S64FNE0R%04d", i)},
				{Name: "/dev/nvme1n1", Size: 960 * gib, Model: "SAMSUNG MZQL2960HCJR", Serial: fmt.Sprintf("S64FNE0S%04d", i)},
			},
			NICs: []api.MachineNIC{
				{Name: "lan0", MAC: nicMAC(i, 0), Neighbors: []api.LLDPNeighbor{{ChassisID: "0c:42:a1:ff:ff:01",
					SystemName: leafID(r, 1), PortID: port}}},
				{Name: "lan1", MAC: nicMAC(i, 1), Neighbors: []api.LLDPNeighbor{{ChassisID: portMAC(r, 2, 1), PortID: port}}},
			},
		},
		BIOS: api.MachineBIOS{Vendor: "Supermicro", Version: "2.4a", Date: "05/05/2023"},
		BMC: api.MachineBMC{Address: fmt.Sprintf("10.2.%d.%d:623", i/250, i%250+1), MAC: nicMAC(i, 9), User: "ADMIN",
			Password: "secret-" + fmt.Sprint(i), Vendor: "Supermicro"},
	}
}

// register registers a machine that must be accepted.
func (f *fixture) register(in *api.Machine) *api.Machine {
	f.t.Helper()
	m, err := f.svc.Register(f.ctx, in)
	if err != nil {
		f.t.Fatalf("register %s: %v", in.ID, err)
	}
	return m
}

// markWaiting makes a registered machine wait for an allocation, as a hammer in Wait would, without
// a Wait call: the flag is written directly and the Waiting event recorded (so it is alive).
func (f *fixture) markWaiting(id string) {
	f.t.Helper()
	f.write(func(tx store.Tx) error {
		m, err := tx.Machines().Get(f.ctx, id)
		if err != nil {
			return err
		}
		m.Waiting = true
		return tx.Machines().Update(f.ctx, m)
	})
	if err := f.svc.Event(f.ctx, id, api.EventRequest{Event: api.EventWaiting}); err != nil {
		f.t.Fatalf("waiting event: %v", err)
	}
}

// get reads a machine that must exist.
func (f *fixture) get(id string) *api.Machine {
	f.t.Helper()
	m, err := f.svc.Get(f.ctx, id)
	if err != nil {
		f.t.Fatalf("get %s: %v", id, err)
	}
	return m
}

// list reads every machine in ID order.
func (f *fixture) list() []*api.Machine {
	f.t.Helper()
	var ms []*api.Machine
	f.read(func(tx store.Tx) error {
		var err error
		ms, _, err = tx.Machines().List(f.ctx, store.Query{})
		return err
	})
	return ms
}

// update changes a machine in the store directly.
func (f *fixture) update(id string, fn func(m *api.Machine)) {
	f.t.Helper()
	f.write(func(tx store.Tx) error {
		m, err := tx.Machines().Get(f.ctx, id)
		if err != nil {
			return err
		}
		fn(m)
		return tx.Machines().Update(f.ctx, m)
	})
}

// req is an allocation of a c1-xlarge-x86 for project A in its private network.
func (f *fixture) req() api.MachineAllocateRequest {
	return api.MachineAllocateRequest{ProjectID: projA, PartitionID: partitionID, SizeID: sizeLarge, ImageID: imgUbuntu,
		Networks: []api.AllocationNetwork{{NetworkID: privateAID}}}
}

// allocate allocates a machine that must succeed.
func (f *fixture) allocate(req api.MachineAllocateRequest) *api.Machine {
	f.t.Helper()
	m, err := f.svc.Allocate(f.ctx, req, "test")
	if err != nil {
		f.t.Fatalf("allocate: %v", err)
	}
	return m
}

// ipsOf lists the addresses the ips table gives to a machine.
func (f *fixture) ipsOf(machineID string) []*api.IP {
	f.t.Helper()
	var ips []*api.IP
	f.read(func(tx store.Tx) error {
		var err error
		ips, _, err = tx.IPs().List(f.ctx, store.Query{Key2: machineID})
		return err
	})
	return ips
}

// asnOf lists the ASN pool values a machine holds.
func (f *fixture) asnOf(machineID string) []uint64 {
	f.t.Helper()
	var v []uint64
	f.read(func(tx store.Tx) error {
		var err error
		v, err = tx.Held(f.ctx, machine.PoolASN, machineID)
		return err
	})
	return v
}

func (f *fixture) eventLog(id string) *api.MachineEventLog {
	f.t.Helper()
	l, err := f.svc.EventLog(f.ctx, id)
	if err != nil {
		f.t.Fatalf("event log of %s: %v", id, err)
	}
	return l
}

func (f *fixture) network(id string) *api.Network {
	f.t.Helper()
	var n *api.Network
	f.read(func(tx store.Tx) error {
		var err error
		n, err = tx.Networks().Get(f.ctx, id)
		return err
	})
	return n
}

// createIP allocates an address for a project outside any machine allocation (or for machineID).
func (f *fixture) createIP(req api.IPAllocateRequest, machineID string) *api.IP {
	f.t.Helper()
	var ip *api.IP
	f.write(func(tx store.Tx) error {
		var err error
		ip, err = network.AllocateIP(f.ctx, tx, req, machineID)
		return err
	})
	return ip
}

// dump is every row of every table of the database, below the store interface: a failed operation
// must leave it identical.
type dump map[string][]string

func (f *fixture) dump() dump {
	f.t.Helper()
	d := dump{}
	query := func(table, q string) {
		rows, err := f.raw.QueryContext(f.ctx, q)
		if err != nil {
			f.t.Fatalf("dump %s: %v", table, err)
		}
		defer rows.Close()
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				f.t.Fatalf("dump %s: %v", table, err)
			}
			row := ""
			for _, v := range vals {
				if b, ok := v.([]byte); ok {
					v = string(b)
				}
				row += fmt.Sprint(v) + " | "
			}
			d[table] = append(d[table], row)
		}
		if err := rows.Err(); err != nil {
			f.t.Fatalf("dump %s: %v", table, err)
		}
		slices.Sort(d[table])
	}
	for _, k := range store.Kinds() {
		query(string(k), fmt.Sprintf("SELECT id, version, data FROM %s", k))
	}
	query("unique_keys", "SELECT kind, key, id FROM unique_keys")
	query("pools", "SELECT pool, value, owner FROM pools")
	return d
}

// poolCount counts the values of a pool and the distinct ones, below the store interface.
func (f *fixture) poolCount(pool string) (n, distinct int) {
	f.t.Helper()
	err := f.raw.QueryRowContext(f.ctx, fmt.Sprintf("SELECT COUNT(*), COUNT(DISTINCT value) FROM pools WHERE pool = '%s'", pool)).
		Scan(&n, &distinct)
	if err != nil {
		f.t.Fatalf("count pool %s: %v", pool, err)
	}
	return n, distinct
}

// isErr reports whether err wraps target, for table tests where nil means success.
func isErr(err, target error) bool {
	if target == nil {
		return err == nil
	}
	return errors.Is(err, target)
}

// countingStore counts write transactions and their attempts (the store retries a transaction
// function on conflict), per call and in total.
type countingStore struct {
	store.Store
	mu          sync.Mutex
	writes      int
	attempts    int
	maxAttempts int
}

func (c *countingStore) Write(ctx context.Context, fn func(store.Tx) error) error {
	n := 0
	err := c.Store.Write(ctx, func(tx store.Tx) error {
		n++
		return fn(tx)
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes++
	c.attempts += n
	c.maxAttempts = max(c.maxAttempts, n)
	return err
}

func (c *countingStore) counts() (writes, attempts, maxAttempts int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes, c.attempts, c.maxAttempts
}
