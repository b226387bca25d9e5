package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// runMain makes the test binary run main() instead of the tests (main exits the process).
const runMain = "METALFORGE_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMain) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// TestFlags runs the binary's main: MCM's flags, MCM's validation, and the exit codes.
// pkg/mcm's TestMachineDeployment runs the same mcm.Main against a real control plane.
func TestFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"help", []string{"--help"}, 0, []string{"--control-kubeconfig", "--target-kubeconfig", "--namespace",
			"--machine-creation-timeout", "--machine-drain-timeout", "--leader-elect", "--v "}},
		{"unknown flag", []string{"--no-such-flag"}, 2, []string{"unknown flag: --no-such-flag"}},
		{"no target and no control cluster", []string{"--target-kubeconfig=none"}, 1,
			[]string{"--control-kubeconfig cannot be empty if --target-kubeconfig=none is specified"}},
		{"missing kubeconfig", []string{"--target-kubeconfig=none", "--control-kubeconfig=/nonexistent/kubeconfig", "--leader-elect=false"}, 1,
			[]string{"/nonexistent/kubeconfig"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], tc.args...)
			cmd.Env = append(os.Environ(), runMain+"=1")
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.code {
				t.Errorf("exit code %d, want %d; output:\n%s", code, tc.code, out.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output does not contain %q:\n%s", w, out.String())
				}
			}
		})
	}
}
