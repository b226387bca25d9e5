package lab

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Binaries the lab runs, built from the repository's cmd/ into Config.BinDir.
const (
	binMetalAPI   = "metal-api"
	binBootServer = "boot-server"
	binBMCAgent   = "bmc-agent"
)

// buildBinaries runs `go build` for the lab's components that exist in the repository.
func buildBinaries(ctx context.Context, c *Config, log *slog.Logger) error {
	var pkgs []string
	for _, b := range []string{binMetalAPI, binBootServer, binBMCAgent} {
		if _, err := os.Stat(filepath.Join(c.RepoDir, "cmd", b)); err == nil {
			pkgs = append(pkgs, "./cmd/"+b)
		} else {
			log.Warn("component missing from the repository, not built", "component", b)
		}
	}
	if err := os.MkdirAll(c.BinDir, 0o755); err != nil {
		return err
	}
	start := time.Now()
	args := append([]string{"build", "-o", c.BinDir + "/"}, pkgs...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = c.RepoDir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", strings.Join(pkgs, " "), err, out)
	}
	log.Info("lab binaries built", "dir", c.BinDir, "duration", time.Since(start).Round(time.Millisecond))
	return nil
}

// runScript runs a repository build script that prints its output directory on the last line
// of stdout; its stderr goes to logPath.
func runScript(ctx context.Context, c *Config, logPath string, script string, args ...string) (string, error) {
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return "", err
	}
	defer log.Close()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, filepath.Join(c.RepoDir, script), args...)
	cmd.Dir = c.RepoDir
	cmd.Stdout = io.MultiWriter(&out, log)
	cmd.Stderr = log
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %w (log: %s)", script, strings.Join(args, " "), err, logPath)
	}
	var last string
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			last = l
		}
	}
	if fi, err := os.Stat(last); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("%s: last line of stdout %q is not a directory", script, last)
	}
	return last, nil
}

// imageInfo is <name>.json of hack/images/build.sh.
type imageInfo struct {
	Name      string   `json:"name"`
	OS        string   `json:"os"`
	OSVersion string   `json:"osVersion"`
	Features  []string `json:"features"`
	SHA256    string   `json:"sha256"`
	Size      int64    `json:"size"`
	Kernel    string   `json:"kernel"`
}

// Artifacts are the boot files and images the lab serves from the boot-server's assets.
type Artifacts struct {
	// Kernel and Initrd are the hammer's boot files, "" when not built.
	Kernel string `json:"kernel,omitempty"`
	Initrd string `json:"initrd,omitempty"`
	// Images are the OS images (file names under assets/images/).
	Images []imageInfo `json:"images,omitempty"`
}

// buildArtifacts calls hack/initramfs/build.sh and hack/images/build.sh (cached by the scripts)
// and links their outputs into the assets directory the boot-server serves.
func buildArtifacts(ctx context.Context, c *Config, assets string, log *slog.Logger) (Artifacts, error) {
	var a Artifacts
	if err := os.MkdirAll(filepath.Join(assets, "images"), 0o755); err != nil {
		return a, err
	}
	logPath := filepath.Join(c.Dir, "logs", "build.log")
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return a, err
	}
	script := "hack/initramfs/build.sh"
	if _, err := os.Stat(filepath.Join(c.RepoDir, script)); err != nil {
		return a, fmt.Errorf("%s is missing: the lab's machines have nothing to boot", script)
	}
	start := time.Now()
	dir, err := runScript(ctx, c, logPath, script)
	if err != nil {
		return a, err
	}
	for _, f := range []string{"vmlinuz", "hammer-initrd.gz"} {
		if err := linkOrCopy(filepath.Join(dir, f), filepath.Join(assets, f)); err != nil {
			return a, err
		}
	}
	a.Kernel, a.Initrd = "vmlinuz", "hammer-initrd.gz"
	log.Info("hammer boot files ready", "dir", dir, "duration", time.Since(start).Round(time.Millisecond))

	script = "hack/images/build.sh"
	if _, err := os.Stat(filepath.Join(c.RepoDir, script)); err != nil {
		log.Warn("no image build script, the lab has no images", "script", script)
		return a, nil
	}
	for _, name := range c.Images {
		start := time.Now()
		dir, err := runScript(ctx, c, logPath, script, name)
		if err != nil {
			return a, err
		}
		var info imageInfo
		raw, err := os.ReadFile(filepath.Join(dir, name+".json"))
		if err == nil {
			err = json.Unmarshal(raw, &info)
		}
		if err != nil {
			return a, fmt.Errorf("image %s: read %s.json: %w", name, name, err)
		}
		if err := linkOrCopy(filepath.Join(dir, name+".tar.zst"), filepath.Join(assets, "images", name+".tar.zst")); err != nil {
			return a, err
		}
		a.Images = append(a.Images, info)
		log.Info("image ready", "image", name, "dir", dir, "duration", time.Since(start).Round(time.Millisecond))
	}
	return a, nil
}

// linkOrCopy hard-links src to dst (the boot-server's assets root refuses symlinks that leave
// it) or copies it when they are on different file systems.
func linkOrCopy(src, dst string) error {
	_ = os.Remove(dst)
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return errors.Join(out.Close())
}
