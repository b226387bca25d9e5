package lab

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Config of a lab. Zero values take the defaults of Defaults.
type Config struct {
	// Name is the network namespace (default "mflab").
	Name string
	// Machines is the number of QEMU machines (default 2).
	Machines int
	// Dir holds state, logs, data and machine files (default $METALFORGE_CACHE/metal-lab, i.e.
	// ~/.cache/metalforge/metal-lab).
	Dir string
	// RepoDir is the repository root, for building the binaries and running hack/ scripts
	// (default: the git top level of the working directory).
	RepoDir string
	// BinDir holds metal-api, boot-server and bmc-agent (default Dir/bin, built from RepoDir).
	BinDir string
	// SkipBuild uses the binaries in BinDir as they are.
	SkipBuild bool
	// InstallDeps runs hack/deps.sh for the lab's Debian packages first.
	InstallDeps bool
	// NoArtifacts skips hack/initramfs/build.sh and hack/images/build.sh: the machines then
	// PXE-boot into the boot-server's retry loop (for tests of the lab itself).
	NoArtifacts bool
	// Images to build with hack/images/build.sh and serve (default ["small"]).
	Images []string
	// Bridge is the PXE bridge (default "pxe0") and BridgeAddr its address (10.255.0.1/24).
	Bridge     string
	BridgeAddr netip.Prefix
	// Ports inside the namespace on the bridge address: REST 8080, gRPC 50051, boot HTTP 8081.
	APIPort      int
	GRPCPort     int
	BootHTTPPort int
	// Partition is the partition the lab seeds and serves (default "lab").
	Partition string
	// Forward, if set, is a host address (e.g. 127.0.0.1:8080) forwarded to the REST API inside
	// the namespace by ForwardCmd (e.g. ["metal-lab", "forward"]), started as a background
	// process with --netns, --listen and --target appended.
	Forward    string
	ForwardCmd []string
	// MemoryMB per machine (default 1024), DiskSize of the qcow2 disk (default "8G"), Accel the
	// QEMU accelerator (default "tcg": the hosts' nested KVM hangs stock kernels).
	MemoryMB int
	DiskSize string
	Accel    string
	// NoPowerOn leaves the machines off after Up.
	NoPowerOn bool
	// KeepData makes Down keep metal-api's database, the tokens and the machines' disks.
	KeepData bool
	Log      *slog.Logger
}

// Defaults fills zero fields.
func (c *Config) Defaults() {
	if c.Name == "" {
		c.Name = "mflab"
	}
	if c.Machines == 0 {
		c.Machines = 2
	}
	if c.Dir == "" {
		cache := os.Getenv("METALFORGE_CACHE")
		if cache == "" {
			home, _ := os.UserHomeDir()
			cache = filepath.Join(home, ".cache", "metalforge")
		}
		c.Dir = filepath.Join(cache, "metal-lab")
	}
	if c.RepoDir == "" {
		if out, err := exec.Command("git", "rev-parse", "--show-toplevel").Output(); err == nil {
			c.RepoDir = strings.TrimSpace(string(out))
		}
	}
	if c.BinDir == "" {
		c.BinDir = filepath.Join(c.Dir, "bin")
	}
	if c.Images == nil {
		c.Images = []string{"small"}
	}
	if c.Bridge == "" {
		c.Bridge = "pxe0"
	}
	if !c.BridgeAddr.IsValid() {
		c.BridgeAddr = netip.MustParsePrefix("10.255.0.1/24")
	}
	if c.APIPort == 0 {
		c.APIPort = 8080
	}
	if c.GRPCPort == 0 {
		c.GRPCPort = 50051
	}
	if c.BootHTTPPort == 0 {
		c.BootHTTPPort = 8081
	}
	if c.Partition == "" {
		c.Partition = "lab"
	}
	if c.MemoryMB == 0 {
		c.MemoryMB = 1024
	}
	if c.DiskSize == "" {
		c.DiskSize = "8G"
	}
	if c.Accel == "" {
		c.Accel = "tcg"
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

// Validate checks a defaulted config.
func (c *Config) Validate() error {
	var errs []error
	if c.Machines < 0 || c.Machines > 50 {
		errs = append(errs, fmt.Errorf("machines %d: want 0 to 50", c.Machines))
	}
	if c.BridgeAddr.Bits() > 24 || !c.BridgeAddr.Addr().Is4() {
		errs = append(errs, fmt.Errorf("bridge address %s: want IPv4 with a prefix of /24 or shorter", c.BridgeAddr))
	}
	if len(c.Name) > 12 || c.Name == "" || strings.ContainsAny(c.Name, "/ ") {
		errs = append(errs, fmt.Errorf("name %q: want 1 to 12 characters without / or spaces", c.Name))
	}
	if c.Forward != "" && len(c.ForwardCmd) == 0 {
		errs = append(errs, errors.New("forward needs a forward command"))
	}
	if !c.SkipBuild && c.RepoDir == "" {
		errs = append(errs, errors.New("no repository to build from (run inside it, or set RepoDir or SkipBuild)"))
	}
	return errors.Join(errs...)
}

// ServerIP is the address of the bridge: metal-api, boot-server and the machines' gateway.
func (c *Config) ServerIP() netip.Addr { return c.BridgeAddr.Addr() }

// APIURL is metal-api's REST URL inside the namespace.
func (c *Config) APIURL() string { return fmt.Sprintf("http://%s:%d", c.ServerIP(), c.APIPort) }

// statePath is the lab's state file.
func (c *Config) statePath() string { return filepath.Join(c.Dir, "state.json") }
