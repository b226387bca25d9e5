package pgtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
)

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestStartQueryAndCreateDB(t *testing.T) {
	start := time.Now()
	s := Start(t)
	t.Logf("server up on port %d in %v", s.Port(), time.Since(start).Round(time.Millisecond))

	ctx := t.Context()
	conn := connect(t, s.DSN())
	var version string
	if err := conn.QueryRow(ctx, "SHOW server_version").Scan(&version); err != nil {
		t.Fatalf("server_version: %v", err)
	}
	var fsync string
	if err := conn.QueryRow(ctx, "SHOW fsync").Scan(&fsync); err != nil || fsync != "off" {
		t.Fatalf("fsync = %q, %v; want off", fsync, err)
	}
	t.Logf("PostgreSQL %s", version)

	// A database of our own: create a table, insert, read back.
	dsn1, err := s.CreateDB(ctx, "Machines-DB")
	if err != nil {
		t.Fatalf("CreateDB: %v", err)
	}
	db1 := connect(t, dsn1)
	if _, err := db1.Exec(ctx, `CREATE TABLE machine (id text PRIMARY KEY, ip inet NOT NULL, cores int NOT NULL)`); err != nil {
		t.Fatalf("create table: %v", err)
	}
	type machine struct {
		ID    string
		IP    string
		Cores int
	}
	want := []machine{{"m1", "10.0.0.1", 8}, {"m2", "2001:db8::2", 64}}
	for _, m := range want {
		if _, err := db1.Exec(ctx, `INSERT INTO machine (id, ip, cores) VALUES ($1, $2, $3)`, m.ID, m.IP, m.Cores); err != nil {
			t.Fatalf("insert %v: %v", m, err)
		}
	}
	rows, err := db1.Query(ctx, `SELECT id, host(ip), cores FROM machine ORDER BY id`)
	if err != nil {
		t.Fatalf("select: %v", err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[machine])
	if err != nil {
		t.Fatalf("collect rows: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("rows read back (-want +got):\n%s", diff)
	}

	// Databases are isolated: a second one does not see the table.
	db2 := connect(t, s.NewDB(t))
	var n int
	err = db2.QueryRow(ctx, `SELECT count(*) FROM information_schema.tables WHERE table_name = 'machine'`).Scan(&n)
	if err != nil || n != 0 {
		t.Fatalf("table visible in a second database: count = %d, %v", n, err)
	}
	if _, err := s.CreateDB(ctx, "Machines-DB"); err == nil {
		t.Fatal("CreateDB of an existing name succeeded")
	}
	if _, err := s.CreateDB(ctx, ""); err == nil {
		t.Fatal("CreateDB of an empty name succeeded")
	}
}

// processGone reports whether pid no longer runs (absent or a zombie).
func processGone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the parenthesised command name.
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z' || b[i+2] == 'X'
}

func waitGone(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if processGone(pid) {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return processGone(pid)
}

func TestStopEndsServerAndRemovesDir(t *testing.T) {
	if _, err := BinDir(); err != nil {
		Start(t) // skips or fails with the reason
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	s, err := New(ctx, "")
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	pid := s.cmd.Process.Pid
	if st, err := os.Stat(s.dataDir()); err != nil || !st.IsDir() {
		t.Fatalf("data directory: %v", err)
	}
	if os.Geteuid() == 0 {
		st, _ := os.Stat(s.dataDir())
		if uid := st.Sys().(*syscall.Stat_t).Uid; uid == 0 {
			t.Fatal("data directory owned by root, want the postgres user")
		}
	}
	// A backend, so that Stop has children to end as well.
	conn, err := pgx.Connect(ctx, s.DSN())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(context.Background())

	start := time.Now()
	if err := s.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	t.Logf("stopped in %v", time.Since(start).Round(time.Millisecond))
	if !processGone(pid) {
		t.Fatalf("postmaster %d still running after Stop", pid)
	}
	if _, err := os.Stat(s.root); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("server directory %s still there: %v", s.root, err)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if _, err := ping(ctx, s.DSN()); err == nil {
		t.Fatal("server still answers after Stop")
	}
}

const helperEnv = "PGTEST_HELPER_PROCESS"

// TestHelperProcess is not a test: TestServerDiesWithTestProcess runs the test
// binary with it to get a process that starts a server and then dies without
// calling Stop.
func TestHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		t.Skip("helper process for TestServerDiesWithTestProcess")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := New(ctx, "")
	if err != nil {
		fmt.Printf("ERROR %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("READY %d %s\n", s.cmd.Process.Pid, s.root)
	time.Sleep(time.Minute) // killed long before
	os.Exit(2)
}

func TestServerDiesWithTestProcess(t *testing.T) {
	if _, err := BinDir(); err != nil {
		Start(t) // skips or fails with the reason
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		lines <- line
	}()
	var line string
	select {
	case line = <-lines:
	case <-time.After(time.Minute):
		t.Fatal("helper did not start a server within a minute")
	}
	var pid int
	var root string
	if _, err := fmt.Sscanf(line, "READY %d %s", &pid, &root); err != nil {
		t.Fatalf("helper said %q: %v", line, err)
	}
	t.Cleanup(func() {
		if !processGone(pid) { // do not leak a server if the test failed
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
		_ = os.RemoveAll(root)
	})
	if processGone(pid) {
		t.Fatalf("postmaster %d not running while the helper lives", pid)
	}

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if !waitGone(pid, 15*time.Second) {
		t.Fatalf("postmaster %d outlived the killed test process by 15 s", pid)
	}
}

func TestDBName(t *testing.T) {
	s := &Server{}
	got := []string{
		s.dbName("TestFoo/sub case"),
		s.dbName("TestFoo/sub case"),
		s.dbName(strings.Repeat("x", 100)),
	}
	want := []string{"testfoo_sub_case_1", "testfoo_sub_case_2", strings.Repeat("x", 61) + "_3"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("dbName (-want +got):\n%s", diff)
	}
	for _, n := range got {
		if len(n) > 63 {
			t.Fatalf("%q longer than 63 bytes", n)
		}
	}
}

func TestBinDir(t *testing.T) {
	dir, err := BinDir()
	if err != nil {
		if !errors.Is(err, ErrNotInstalled) {
			t.Fatalf("BinDir error %v does not wrap ErrNotInstalled", err)
		}
		Start(t) // skips or fails with the reason
	}
	for _, name := range []string{"initdb", "postgres"} {
		if !isExecutable(dir + "/" + name) {
			t.Fatalf("%s/%s is not executable", dir, name)
		}
	}
	major, err := strconv.Atoi(strings.Split(strings.TrimPrefix(dir, pgRoot+"/"), "/")[0])
	if err != nil || major < 10 {
		t.Fatalf("BinDir() = %s: want /usr/lib/postgresql/<major>/bin", dir)
	}
}

func TestBinDirPicksNewestComplete(t *testing.T) {
	root := t.TempDir()
	if _, err := binDirIn(root); !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("empty root: err = %v, want ErrNotInstalled", err)
	}
	if _, err := binDirIn(root + "/missing"); !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("missing root: err = %v, want ErrNotInstalled", err)
	}
	mk := func(version string, names ...string) {
		dir := root + "/" + version + "/bin"
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			if err := os.WriteFile(dir+"/"+n, []byte("#!/bin/sh\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	mk("9.6", "initdb", "postgres")
	mk("13", "initdb", "postgres")
	mk("15", "initdb", "postgres")
	mk("16", "initdb") // incomplete: no server
	mk("notaversion", "initdb", "postgres")
	got, err := binDirIn(root)
	if err != nil || got != root+"/15/bin" {
		t.Fatalf("binDirIn() = %q, %v; want %s/15/bin", got, err, root)
	}
}

// TestPortTakenDetected checks that a postmaster failing to bind is reported
// as errPortTaken, which makes New retry on another port.
func TestPortTakenDetected(t *testing.T) {
	s := Start(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	root, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		t.Fatal(err)
	}
	s2 := &Server{root: root, bin: s.bin, cred: s.cred, port: s.port}
	t.Cleanup(func() {
		if err := s2.Stop(); err != nil {
			t.Error(err)
		}
	})
	if s.cred != nil {
		if err := os.Chown(root, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s2.initdb(ctx); err != nil {
		t.Fatal(err)
	}
	err = s2.start(ctx)
	if !errors.Is(err, errPortTaken) {
		t.Fatalf("start on a taken port: err = %v, want errPortTaken", err)
	}
	if s2.cmd != nil {
		t.Fatal("failed start left a postmaster behind")
	}
}
