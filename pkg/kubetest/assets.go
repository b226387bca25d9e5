package kubetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

const module = "github.com/metalforge/metalforge"

// Assets returns the directory with kube-apiserver and etcd: $KUBEBUILDER_ASSETS when set,
// otherwise the cache directory of hack/kube.sh, which it builds first when it is empty (unless
// METALFORGE_KUBE_BUILD=0).
func Assets(ctx context.Context, log *slog.Logger) (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		if err := haveBinaries(dir); err != nil {
			return "", fmt.Errorf("KUBEBUILDER_ASSETS=%s: %w", dir, err)
		}
		return dir, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", fmt.Errorf("find the kube-apiserver build script: %w; set KUBEBUILDER_ASSETS to a directory with kube-apiserver and etcd", err)
	}
	script := filepath.Join(root, "hack", "kube.sh")
	dir, err := runScript(ctx, script, "--print")
	if err != nil {
		return "", err
	}
	if haveBinaries(dir) == nil {
		return dir, nil
	}
	if os.Getenv("METALFORGE_KUBE_BUILD") == "0" {
		return "", fmt.Errorf("no kube-apiserver and etcd in %s: run %s (make test does) or unset METALFORGE_KUBE_BUILD", dir, script)
	}
	log.Info("building kube-apiserver and etcd, once per machine (cold: ~5 min, ~2.3 GB RSS)", "script", script, "dir", dir)
	begin := time.Now()
	if dir, err = runScript(ctx, script); err != nil {
		return "", fmt.Errorf("%w; run %s by hand to see why", err, script)
	}
	if err := haveBinaries(dir); err != nil {
		return "", fmt.Errorf("%s built nothing usable: %w", script, err)
	}
	log.Info("built kube-apiserver and etcd", "took", time.Since(begin).Round(time.Second), "dir", dir)
	return dir, nil
}

// runScript runs the build script and returns the last line of its stdout; its stderr (the build
// log) goes to ours.
func runScript(ctx context.Context, script string, args ...string) (string, error) {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, script, args...)
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("run %s %s: %w", script, strings.Join(args, " "), err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	dir := strings.TrimSpace(lines[len(lines)-1])
	if dir == "" {
		return "", fmt.Errorf("%s %s printed no directory", script, strings.Join(args, " "))
	}
	return dir, nil
}

func haveBinaries(dir string) error {
	for _, name := range []string{"kube-apiserver", "etcd"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			return fmt.Errorf("no %s: %w", name, err)
		}
		if fi.Mode()&0o111 == 0 {
			return fmt.Errorf("%s is not executable", name)
		}
	}
	return nil
}

// repoRoot walks up from the working directory (a test's package directory) to the go.mod of the
// metalforge module.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(bytes.TrimSpace(b), []byte("module "+module+"\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod of " + module + " above the working directory")
		}
		dir = parent
	}
}
