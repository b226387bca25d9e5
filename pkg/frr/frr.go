// Package frr checks, applies and queries FRR configuration, and renders the routing-on-the-host
// configuration of an installed machine or firewall from its allocation.
//
// Every config is checked offline with `vtysh -m -f` (exit code 2 and "line N: % ..." on the first
// error; `vtysh --dryrun` is not trusted) before frr-reload.py applies only the difference to the
// running daemons, so BGP sessions that the change does not touch stay up. All of it is syntax only:
// what the daemons make of a config shows in the show commands (Show, ShowJSON).
package frr

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Tools runs FRR's command line tools against one FRR instance.
type Tools struct {
	// Vtysh is the vtysh binary (default "vtysh" from PATH).
	Vtysh string
	// ReloadScript is frr-reload.py (default /usr/lib/frr/frr-reload.py).
	ReloadScript string
	// Pathspace names the instance (-N, one per network namespace); "" is the default instance.
	Pathspace string
	// ConfDir holds vtysh.conf (in ConfDir/<Pathspace>/ with a pathspace); default /etc/frr.
	ConfDir string
	// RunDir takes frr-reload.py's temporary files; default os.TempDir().
	RunDir string
	// Timeout bounds each command (default 30s).
	Timeout time.Duration
}

func (t Tools) withDefaults() Tools {
	if t.Vtysh == "" {
		t.Vtysh = "vtysh"
	}
	if t.ReloadScript == "" {
		t.ReloadScript = "/usr/lib/frr/frr-reload.py"
	}
	if t.ConfDir == "" {
		t.ConfDir = "/etc/frr"
	}
	if t.RunDir == "" {
		t.RunDir = os.TempDir()
	}
	if t.Timeout == 0 {
		t.Timeout = 30 * time.Second
	}
	return t
}

// vtyshArgs are the arguments that select the instance.
func (t Tools) vtyshArgs() []string {
	args := []string{"--config_dir", t.ConfDir}
	if t.Pathspace != "" {
		args = append(args, "-N", t.Pathspace)
	}
	return args
}

// lineError matches vtysh's "line 13: % Unknown command: ..." messages.
var lineError = regexp.MustCompile(`(?m)^line \d+: .*$`)

// ErrInvalid is a config that vtysh rejects.
var ErrInvalid = errors.New("invalid frr config")

// Validate checks conf offline with `vtysh -m -f`: no daemon is contacted.
func (t Tools) Validate(ctx context.Context, conf []byte) error {
	t = t.withDefaults()
	f, err := os.CreateTemp(t.RunDir, "frr-validate-*.conf")
	if err != nil {
		return fmt.Errorf("validate frr config: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(conf); err != nil {
		f.Close()
		return fmt.Errorf("validate frr config: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("validate frr config: %w", err)
	}
	out, err := t.run(ctx, t.Vtysh, "-m", "-f", f.Name())
	if err == nil {
		return nil
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		return fmt.Errorf("validate frr config: %w", err)
	}
	msgs := lineError.FindAll(out, 5)
	if len(msgs) == 0 {
		return fmt.Errorf("validate frr config: %w: vtysh exit code %d", ErrInvalid, exit.ExitCode())
	}
	return fmt.Errorf("validate frr config: %w: %s", ErrInvalid, bytes.Join(msgs, []byte("; ")))
}

// Reload applies conf to the running daemons with frr-reload.py: it computes the difference to the
// running config and sends only that, so untouched sessions stay up. frr-reload.py deletes in an
// order FRR sometimes refuses — a VRF's BGP instance before the VRF's L3VNI ("Please unconfigure
// l3vni") — so a failed pass is followed by a second one, which finds the rest of the difference.
func (t Tools) Reload(ctx context.Context, conf []byte) error {
	first := t.reload(ctx, conf)
	if first == nil || ctx.Err() != nil {
		return first
	}
	if err := t.reload(ctx, conf); err != nil {
		return fmt.Errorf("%w (first pass: %v)", err, first)
	}
	return nil
}

// Diff returns what Reload would change ("" when the running config already matches conf). The
// hostname is left out: FRR shows the system's, and frr-reload.py proposes to delete it whenever
// the config has none, which changes nothing.
func (t Tools) Diff(ctx context.Context, conf []byte) (string, error) {
	t = t.withDefaults()
	path, cleanup, err := t.temp(conf)
	if err != nil {
		return "", fmt.Errorf("diff frr config: %w", err)
	}
	defer cleanup()
	out, err := t.run(ctx, "python3", t.reloadArgs("--test", path)...)
	if err != nil {
		return "", fmt.Errorf("diff frr config: %w: %s", err, tail(out))
	}
	var diff []string
	keep := false
	for _, l := range strings.Split(string(out), "\n") {
		switch {
		case strings.HasPrefix(l, "Lines To Delete"), strings.HasPrefix(l, "Lines To Add"):
			keep = true
			continue
		case !keep, strings.HasPrefix(l, "===="), strings.TrimSpace(l) == "", strings.Contains(l, " INFO: "),
			strings.HasPrefix(l, "no hostname "), strings.HasPrefix(l, "hostname "):
			continue
		}
		diff = append(diff, l)
	}
	return strings.Join(diff, "\n"), nil
}

func (t Tools) reload(ctx context.Context, conf []byte) error {
	t = t.withDefaults()
	path, cleanup, err := t.temp(conf)
	if err != nil {
		return fmt.Errorf("reload frr config: %w", err)
	}
	defer cleanup()
	if out, err := t.run(ctx, "python3", t.reloadArgs("--reload", path)...); err != nil {
		return fmt.Errorf("reload frr config: %w: %s", err, problems(out))
	}
	return nil
}

func (t Tools) reloadArgs(mode, path string) []string {
	args := []string{t.ReloadScript, mode, "--stdout", "--bindir", filepath.Dir(t.vtyshPath()), "--confdir", t.ConfDir,
		"--rundir", t.RunDir}
	if t.Pathspace != "" {
		args = append(args, "--pathspace", t.Pathspace)
	}
	return append(args, path)
}

// vtyshPath resolves the vtysh binary for frr-reload.py, which wants its directory.
func (t Tools) vtyshPath() string {
	if p, err := exec.LookPath(t.Vtysh); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs
		}
	}
	return "/usr/bin/vtysh"
}

func (t Tools) temp(conf []byte) (string, func(), error) {
	f, err := os.CreateTemp(t.RunDir, "frr-*.conf")
	if err != nil {
		return "", nil, err
	}
	cleanup := func() { os.Remove(f.Name()) }
	if _, err := f.Write(conf); err != nil {
		f.Close()
		cleanup()
		return "", nil, err
	}
	if err := f.Close(); err != nil {
		cleanup()
		return "", nil, err
	}
	return f.Name(), cleanup, nil
}

// Show runs show commands and returns their output.
func (t Tools) Show(ctx context.Context, cmds ...string) ([]byte, error) {
	t = t.withDefaults()
	args := t.vtyshArgs()
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	out, err := t.run(ctx, t.Vtysh, args...)
	if err != nil {
		return nil, fmt.Errorf("vtysh %q: %w: %s", cmds, err, tail(out))
	}
	return out, nil
}

// ShowJSON runs one show command ending in "json" and decodes its output into v.
func (t Tools) ShowJSON(ctx context.Context, cmd string, v any) error {
	out, err := t.Show(ctx, cmd)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(out, v); err != nil {
		return fmt.Errorf("vtysh %q: decode: %w", cmd, err)
	}
	return nil
}

// run runs a command with the timeout and returns its combined output. vtysh prints its warnings
// about a missing vtysh.conf on stderr; they end up in the output but not in JSON (stderr is only
// appended on failure).
func (t Tools) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, t.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		stdout.Write(stderr.Bytes())
	}
	return stdout.Bytes(), err
}

// ansi matches terminal colour codes (frr-reload.py colours its log levels).
var ansi = regexp.MustCompile(`\x1b\[[0-9;]*m`)

// problems keeps the error and warning lines of frr-reload.py's output (its INFO lines repeat the
// whole config), or the output's end if there are none.
func problems(out []byte) string {
	var keep []string
	for _, l := range strings.Split(ansi.ReplaceAllString(string(out), ""), "\n") {
		if strings.Contains(l, "ERROR") || strings.Contains(l, "WARNING") || strings.HasPrefix(strings.TrimSpace(l), "%") ||
			strings.HasPrefix(l, "line ") {
			keep = append(keep, strings.TrimSpace(l))
		}
	}
	if len(keep) == 0 {
		return tail(out)
	}
	return tail([]byte(strings.Join(keep, "; ")))
}

// tail keeps the end of a command's output for an error message.
func tail(out []byte) string {
	s := strings.TrimSpace(string(out))
	if len(s) > 1500 {
		s = "..." + s[len(s)-1500:]
	}
	return s
}
