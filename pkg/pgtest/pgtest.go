// Package pgtest starts real, throwaway PostgreSQL servers for tests.
//
// A Server is a private cluster (initdb into a fresh temporary directory) and a
// postmaster listening on 127.0.0.1 on a free port, with fsync off; it holds no
// data worth keeping and is deleted by Stop. Tests usually call Start, which
// skips or fails the test with a clear reason when PostgreSQL is not installed,
// and registers Stop with Cleanup; each test then takes its own database with
// CreateDB or NewDB.
//
// The binaries come from the newest /usr/lib/postgresql/<major>/bin (Debian's
// postgresql package; hack/deps.sh installs it). initdb and postgres refuse to
// run as root, so as root both run as the "postgres" OS user, which the package
// creates, in a directory handed over to that user.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	// superuser is the bootstrap superuser initdb creates (initdb -U).
	superuser = "postgres"
	// readyTimeout bounds the wait for a fresh server when ctx has no deadline.
	readyTimeout = 60 * time.Second
	// stopTimeout bounds each step of Stop: immediate shutdown, then SIGKILL.
	stopTimeout = 10 * time.Second
	// startAttempts bounds retries when another process takes the chosen port
	// between picking it and the postmaster binding it.
	startAttempts = 3
)

// pgRoot is where Debian installs one directory per PostgreSQL major version.
const pgRoot = "/usr/lib/postgresql"

// ErrNotInstalled is returned (wrapped) by BinDir and New when no PostgreSQL
// server binaries are found.
var ErrNotInstalled = errors.New("postgresql server binaries not found")

// BinDir returns the bin directory of the newest PostgreSQL installed under
// /usr/lib/postgresql that has both initdb and postgres.
func BinDir() (string, error) { return binDirIn(pgRoot) }

func binDirIn(root string) (string, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return "", fmt.Errorf("find postgresql in %s: %w: %w", root, ErrNotInstalled, err)
	}
	type version struct {
		major int
		dir   string
	}
	var found []version
	for _, e := range entries {
		major, err := strconv.Atoi(strings.SplitN(e.Name(), ".", 2)[0])
		if err != nil {
			continue
		}
		dir := filepath.Join(root, e.Name(), "bin")
		if isExecutable(filepath.Join(dir, "initdb")) && isExecutable(filepath.Join(dir, "postgres")) {
			found = append(found, version{major, dir})
		}
	}
	if len(found) == 0 {
		return "", fmt.Errorf("find postgresql in %s: %w", root, ErrNotInstalled)
	}
	newest := slices.MaxFunc(found, func(a, b version) int { return a.major - b.major })
	return newest.dir, nil
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// Server is a running throwaway PostgreSQL server. Its methods are safe for
// concurrent use.
type Server struct {
	root string // temporary directory: data/, socket, log; removed by Stop
	bin  string
	port int
	cred *syscall.Credential // nil when running as ourselves

	cmd  *exec.Cmd     // the postmaster itself (no wrapper process)
	done chan struct{} // closed once the postmaster has been reaped

	dbSeq atomic.Int64 // NewDB's name suffix

	stopOnce sync.Once
	stopErr  error
}

// New initialises a cluster in a fresh directory under dir (os.TempDir() when
// empty) and starts a server on it, returning once it accepts connections.
// ctx bounds the start-up (60 s when it has no deadline). As root, dir and its
// parents must be searchable by the postgres user, which /tmp is and a
// testing.T.TempDir is not. On error nothing is left running or on disk.
func New(ctx context.Context, dir string) (*Server, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, readyTimeout)
		defer cancel()
	}
	if dir == "" {
		dir = os.TempDir()
	}
	// Absolute, as the server reports its data directory (see waitReady).
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, fmt.Errorf("create server directory: %w", err)
	}
	root, err := os.MkdirTemp(dir, "pgtest-")
	if err != nil {
		return nil, fmt.Errorf("create server directory: %w", err)
	}
	s := &Server{root: root, bin: bin}
	if err := s.setUp(ctx); err != nil {
		if stopErr := s.Stop(); stopErr != nil {
			err = errors.Join(err, stopErr)
		}
		return nil, err
	}
	return s, nil
}

// setUp runs initdb and starts the postmaster, retrying with another port when
// the chosen one was taken meanwhile.
func (s *Server) setUp(ctx context.Context) error {
	if os.Geteuid() == 0 {
		u, err := user.Lookup(superuser)
		if err != nil {
			return fmt.Errorf("look up the %s user (installed with postgresql, see hack/deps.sh): %w", superuser, err)
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err := errors.Join(err1, err2); err != nil {
			return fmt.Errorf("parse ids of the %s user: %w", superuser, err)
		}
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(s.root, int(uid), int(gid)); err != nil {
			return fmt.Errorf("hand %s to the %s user: %w", s.root, superuser, err)
		}
	}
	if err := s.initdb(ctx); err != nil {
		return err
	}
	var err error
	for range startAttempts {
		if s.port, err = freePort(); err != nil {
			return err
		}
		err = s.start(ctx)
		if err == nil || !errors.Is(err, errPortTaken) {
			return err
		}
	}
	return err
}

func (s *Server) dataDir() string { return filepath.Join(s.root, "data") }
func (s *Server) logPath() string { return filepath.Join(s.root, "postgres.log") }

// command prepares a PostgreSQL binary to run as the postgres user (as root)
// in the server directory, with a minimal environment so that the caller's
// PG* variables and locale do not leak in. It runs in its own process group,
// and ending ctx kills that whole group.
func (s *Server) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, name), args...)
	cmd.Dir = s.root
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C", "TZ=UTC", "HOME=" + s.root}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	return cmd
}

func (s *Server) initdb(ctx context.Context) error {
	cmd := s.command(ctx, "initdb",
		"-D", s.dataDir(), "-A", "trust", "-U", superuser,
		"-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, tail(out, 2000))
	}
	return nil
}

var errPortTaken = errors.New("port taken")

// start runs the postmaster in the foreground as our direct child (no pg_ctl,
// no runuser wrapper), so that its PID is known and Stop can signal it.
func (s *Server) start(ctx context.Context) error {
	logf, err := os.OpenFile(s.logPath(), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("open server log: %w", err)
	}
	defer logf.Close() // the child keeps its own copy
	// The unix socket is a convenience for debugging with psql -h <dir>; a
	// path over the kernel's 107-byte limit would stop the server, so then
	// go without it.
	sockDir := s.root
	if len(filepath.Join(sockDir, ".s.PGSQL.65535")) > 100 {
		sockDir = ""
	}
	// WithoutCancel: ctx bounds the start-up, not the server's life.
	cmd := s.command(context.WithoutCancel(ctx), "postgres",
		"-D", s.dataDir(),
		"-p", strconv.Itoa(s.port),
		"-k", sockDir,
		"-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		"-c", "max_connections=200",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	// SIGQUIT (immediate shutdown) if the test binary dies without Stop. Its
	// own process group (see command) lets Stop kill stray backends too.
	cmd.SysProcAttr.Pdeathsig = syscall.SIGQUIT

	// Pdeathsig fires when the thread that forked exits, not the process.
	// Go may retire threads (a goroutine that exits while locked to its
	// thread, as network-namespace code does), so fork from a goroutine that
	// holds its thread for as long as the postmaster lives.
	started := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		_ = cmd.Wait() // exit status is meaningless after SIGQUIT; see Stop
		close(done)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	s.cmd, s.done = cmd, done

	if err := s.waitReady(ctx); err != nil {
		log, _ := os.ReadFile(s.logPath())
		stopErr := s.kill()
		s.cmd, s.done = nil, nil
		if bytesContainAny(log, "could not bind", "Address already in use") {
			err = fmt.Errorf("%w: %w", errPortTaken, err)
		}
		return errors.Join(fmt.Errorf("start postgres on port %d: %w\n%s", s.port, err, tail(log, 4000)), stopErr)
	}
	return nil
}

// waitReady polls until our server answers, the postmaster exits, or ctx
// ends. It checks the data directory of the server that answers: another
// server that grabbed the port first must not pass for ours.
func (s *Server) waitReady(ctx context.Context) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		pingCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		var dataDir string
		dataDir, lastErr = ping(pingCtx, s.DSN())
		cancel()
		if lastErr == nil && dataDir != s.dataDir() {
			lastErr = fmt.Errorf("port %d answered by another server (data directory %s)", s.port, dataDir)
		}
		if lastErr == nil {
			return nil
		}
		select {
		case <-s.done:
			return errors.New("postgres exited during start-up")
		case <-ctx.Done():
			return fmt.Errorf("not ready: %w (last ping: %w)", ctx.Err(), lastErr)
		case <-tick.C:
		}
	}
}

// ping connects to dsn and returns the server's data directory.
func ping(ctx context.Context, dsn string) (string, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var dataDir string
	if err := conn.QueryRow(ctx, "SELECT current_setting('data_directory')").Scan(&dataDir); err != nil {
		return "", err
	}
	return dataDir, nil
}

// DSN returns a connection URL for the superuser to the "postgres" database,
// e.g. postgres://postgres@127.0.0.1:41234/postgres?sslmode=disable.
func (s *Server) DSN() string { return s.dsn("postgres") }

func (s *Server) dsn(db string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(superuser),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// Port returns the TCP port the server listens on (127.0.0.1 only).
func (s *Server) Port() int { return s.port }

// CreateDB creates an empty database named name and returns a DSN for it.
// The name is quoted, so any non-empty name of at most 63 bytes works.
func (s *Server) CreateDB(ctx context.Context, name string) (string, error) {
	if name == "" || len(name) > 63 {
		return "", fmt.Errorf("create database %q: name must be 1 to 63 bytes", name)
	}
	conn, err := pgx.Connect(ctx, s.DSN())
	if err != nil {
		return "", fmt.Errorf("create database %q: connect: %w", name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("create database %q: %w", name, err)
	}
	return s.dsn(name), nil
}

// Stop shuts the server down and deletes its directory. It sends the
// postmaster SIGQUIT (what `pg_ctl stop -m immediate` does) and, if it has not
// exited within 10 s, SIGKILLs its process group. It is idempotent; later calls
// return the first result.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		err := s.kill()
		if rmErr := os.RemoveAll(s.root); rmErr != nil {
			err = errors.Join(err, fmt.Errorf("remove %s: %w", s.root, rmErr))
		}
		s.stopErr = err
	})
	return s.stopErr
}

// kill stops the postmaster, if running, and waits until it is reaped.
func (s *Server) kill() error {
	if s.cmd == nil {
		return nil
	}
	pid := s.cmd.Process.Pid
	select {
	case <-s.done:
		return nil
	default:
	}
	_ = syscall.Kill(pid, syscall.SIGQUIT)
	select {
	case <-s.done:
		return nil
	case <-time.After(stopTimeout):
	}
	// The postmaster leads its own process group (Setpgid): kill it and any
	// backend left in it.
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill postgres process group %d: %w", pid, err)
	}
	select {
	case <-s.done:
		return fmt.Errorf("postgres (pid %d) ignored SIGQUIT for %v and was killed", pid, stopTimeout)
	case <-time.After(stopTimeout):
		return fmt.Errorf("postgres (pid %d) still running after SIGKILL", pid)
	}
}

// freePort asks the kernel for a free TCP port on 127.0.0.1. Another process
// may take it before the postmaster binds it; start retries then.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}

func bytesContainAny(b []byte, subs ...string) bool {
	s := string(b)
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
