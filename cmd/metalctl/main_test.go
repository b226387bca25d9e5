package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/metalforge/metalforge/pkg/client/clienttest"
)

// TestMain runs main instead of the tests when the test binary is started by run below, so the tests
// see the real process: exit code, stdout and stderr.
func TestMain(m *testing.M) {
	if os.Getenv("METALCTL_TEST_MAIN") == "1" {
		os.Args = append([]string{"metalctl"}, os.Args[1:]...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func run(t *testing.T, home string, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), os.Args[0], args...)
	cmd.Env = append([]string{"METALCTL_TEST_MAIN=1", "HOME=" + home, "PATH=" + os.Getenv("PATH")}, env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

func TestProcess(t *testing.T) {
	api := clienttest.Start(t)
	home := t.TempDir()
	// The config file in $HOME is read by default.
	cfg := "url: " + api.URL + "\ntoken: " + clienttest.AdminToken + "\n"
	if err := os.WriteFile(filepath.Join(home, ".metalctl.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	out, stderr, code := run(t, home, nil, "version")
	if code != 0 || out != "Client: dev\nServer: clienttest (store sqlite)\n" || stderr != "" {
		t.Errorf("version: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	out, stderr, code = run(t, home, nil, "partition", "describe", "nope")
	if code != 1 || out != "" || !strings.HasPrefix(stderr, "Error: ") || !strings.Contains(stderr, "nope") ||
		!strings.HasSuffix(stderr, "(404 Not Found)\n") {
		t.Errorf("describe of a missing partition: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	_, stderr, code = run(t, home, []string{"METALCTL_TOKEN=wrong"}, "partition", "ls")
	if code != 1 || !strings.Contains(stderr, "401") {
		t.Errorf("wrong token from the environment: exit %d, stderr %q", code, stderr)
	}
	_, stderr, code = run(t, home, nil, "--bogus")
	if code != 1 || !strings.Contains(stderr, "unknown flag: --bogus") {
		t.Errorf("unknown flag: exit %d, stderr %q", code, stderr)
	}
}
