package osinit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/metalforge/metalforge/pkg/api"
)

// Paths, relative to the installed OS's root, that the firewall setup reads (written by the
// hammer, hammer/install) and writes.
const (
	InstallPath   = "etc/metalforge/install.json"
	PhoneHomePath = "etc/metalforge/phonehome.json"
	UserDataPath  = "etc/metalforge/userdata"
	ResolvConf    = "etc/resolv.conf"
	// KubeconfigPath is the tenant cluster's kubeconfig for firewall-controller. It is taken from
	// the allocation's user data when that is a kubeconfig (YAML with "kind: Config" and a
	// "clusters:" section); otherwise a file already at this path (dropped there by the image, an
	// operator or earlier user data) is used; otherwise the firewall runs its base ruleset only.
	KubeconfigPath = "etc/metalforge/firewall-kubeconfig"
	FRRConfPath    = "etc/frr/frr.conf"
	NetworkdDir    = "etc/systemd/network"
	// FirewallMarker starts the kernel log line written once the configuration is in place.
	FirewallMarker = "metalforge: firewall config written"
)

// FirewallSetup configures SetupFirewall; zero fields take defaults.
type FirewallSetup struct {
	// Root is the installed OS's root ("/").
	Root string
	// SysClassNet lists the network interfaces (/sys/class/net).
	SysClassNet string
	// Kmsg takes the marker line (/dev/kmsg); "-" writes none.
	Kmsg string
}

// SetupFirewall is the first-boot step of a firewall image (`metal-osinit firewall`, a oneshot
// unit before systemd-networkd, frr and firewall-controller): from the allocation the hammer wrote it
// writes api.FirewallConfigPath, FRR's frr.conf and the networkd files of the VRF devices. A
// machine whose allocation is not a firewall's is left alone. It is idempotent: every file is
// rewritten from the allocation at each boot.
func SetupFirewall(c FirewallSetup, log *slog.Logger) error {
	if c.Root == "" {
		c.Root = "/"
	}
	if c.SysClassNet == "" {
		c.SysClassNet = "/sys/class/net"
	}
	if c.Kmsg == "" {
		c.Kmsg = "/dev/kmsg"
	}
	root, err := os.OpenRoot(c.Root)
	if err != nil {
		return fmt.Errorf("setup firewall: %w", err)
	}
	defer root.Close()

	var a api.MachineAllocation
	if err := readJSON(root, InstallPath, &a); err != nil {
		return fmt.Errorf("setup firewall: %w", err)
	}
	if a.Role != api.RoleFirewall {
		log.Info("not a firewall, nothing to do", "role", a.Role)
		return nil
	}
	var ph struct {
		MachineID string `json:"machineID"`
	}
	if err := readJSON(root, PhoneHomePath, &ph); err != nil {
		return fmt.Errorf("setup firewall: %w", err)
	}
	nics, err := LeafNICs(c.SysClassNet)
	if err != nil {
		return fmt.Errorf("setup firewall: %w", err)
	}
	fw := Firewall{MachineID: ph.MachineID, Allocation: &a, NICs: nics, DNSServers: readNameservers(root)}
	if fw.Kubeconfig, err = kubeconfig(root, a.UserData); err != nil {
		return fmt.Errorf("setup firewall: %w", err)
	}
	cfg, err := FirewallConfig(fw)
	if err != nil {
		return fmt.Errorf("setup firewall: %w", err)
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return fmt.Errorf("setup firewall: %w", err)
	}
	conf, err := FirewallFRR(fw)
	if err != nil {
		return fmt.Errorf("setup firewall: %w", err)
	}
	netd, err := NetworkdFiles(fw)
	if err != nil {
		return fmt.Errorf("setup firewall: %w", err)
	}
	files := map[string][]byte{strings.TrimPrefix(api.FirewallConfigPath, "/"): append(b, '\n'), FRRConfPath: conf}
	for name, body := range netd {
		files[filepath.Join(NetworkdDir, name)] = []byte(body)
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if err := writeFile(root, n, files[n], 0o644); err != nil {
			return fmt.Errorf("setup firewall: %w", err)
		}
	}
	log.Info("firewall configured", "machine", cfg.MachineID, "external", cfg.ExternalInterface, "egress", cfg.EgressIPs,
		"networks", len(cfg.Networks), "nics", nics, "kubeconfig", cfg.Kubeconfig)
	if c.Kmsg != "-" {
		msg := fmt.Sprintf("<5>%s machine=%s external=%s egress=%s\n", FirewallMarker, cfg.MachineID, cfg.ExternalInterface,
			strings.Join(cfg.EgressIPs, ","))
		if err := os.WriteFile(c.Kmsg, []byte(msg), 0); err != nil {
			log.Warn("write kernel log marker failed", "err", err)
		}
	}
	return nil
}

// LeafNICs lists the physical Ethernet interfaces below sysClassNet (those with a device link and
// type 1), sorted: on a firewall every one of them faces a leaf and gets a BGP unnumbered session.
func LeafNICs(sysClassNet string) ([]string, error) {
	entries, err := os.ReadDir(sysClassNet)
	if err != nil {
		return nil, fmt.Errorf("list nics: %w", err)
	}
	var out []string
	for _, e := range entries {
		dir := filepath.Join(sysClassNet, e.Name())
		if _, err := os.Stat(filepath.Join(dir, "device")); err != nil {
			continue
		}
		t, err := os.ReadFile(filepath.Join(dir, "type"))
		if err != nil || strings.TrimSpace(string(t)) != "1" {
			continue
		}
		out = append(out, e.Name())
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("list nics: no physical ethernet interface in %s", sysClassNet)
	}
	slices.Sort(out)
	return out, nil
}

// readNameservers returns the nameserver lines of resolv.conf (the partition's DNS servers, which
// the hammer writes there); none when the file is missing.
func readNameservers(root *os.Root) []string {
	b, err := root.ReadFile(ResolvConf)
	if err != nil {
		return nil
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "nameserver" {
			out = append(out, f[1])
		}
	}
	return out
}

// kubeconfig writes the user data to KubeconfigPath (mode 0600) when it is a kubeconfig and returns
// the absolute path; without one it returns the path of an existing file there, else "".
func kubeconfig(root *os.Root, userData string) (string, error) {
	if IsKubeconfig(userData) {
		if err := writeFile(root, KubeconfigPath, []byte(userData), 0o600); err != nil {
			return "", err
		}
		return "/" + KubeconfigPath, nil
	}
	if st, err := root.Stat(KubeconfigPath); err == nil && st.Mode().IsRegular() && st.Size() > 0 {
		return "/" + KubeconfigPath, nil
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("kubeconfig: %w", err)
	}
	return "", nil
}

// IsKubeconfig reports whether s looks like a kubeconfig: top-level "kind: Config" and "clusters:".
func IsKubeconfig(s string) bool {
	var kind, clusters bool
	for line := range strings.SplitSeq(s, "\n") {
		line = strings.TrimRight(line, " \t\r")
		switch {
		case line == "kind: Config" || line == `kind: "Config"`:
			kind = true
		case strings.HasPrefix(line, "clusters:"):
			clusters = true
		}
	}
	return kind && clusters
}

func readJSON(root *os.Root, name string, v any) error {
	b, err := root.ReadFile(name)
	if err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("parse %s: %w", name, err)
	}
	return nil
}

// writeFile replaces name with content through a temporary file and a rename, so a crash never
// leaves a half-written file.
func writeFile(root *os.Root, name string, content []byte, mode fs.FileMode) error {
	if err := root.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	tmp := name + ".metal-osinit.tmp"
	_ = root.Remove(tmp)
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	_, err = f.Write(content)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = root.Rename(tmp, name)
	}
	if err != nil {
		_ = root.Remove(tmp)
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}
