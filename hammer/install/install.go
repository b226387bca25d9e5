// Package install writes the machine-specific configuration of a freshly extracted OS image
// (hostname, hosts, DNS, NTP, SSH keys, userdata, allocation, phone-home and network data, fstab)
// and finds what to boot in it. All writes go through an os.Root, so a symlink in the image can't
// redirect them outside the target.
package install

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/phonehome"
)

// Paths in the installed OS that metalforge components read.
const (
	UserDataPath  = "etc/metalforge/userdata"
	InstallPath   = "etc/metalforge/install.json"
	PhoneHomePath = "etc/metalforge/phonehome.json"
	NetworksPath  = "etc/metalforge/networks.json"
	NTPPath       = "etc/systemd/timesyncd.conf.d/metal.conf"
)

// Config is what Write needs.
type Config struct {
	// Target is the mounted root of the installed OS.
	Target string
	Spec   api.InstallSpec
	// API is the boot service address the hammer used (mf.api), for phoning home.
	API string
	// Fstab is the content of /etc/fstab; "" leaves the image's file.
	Fstab string
}

// Write writes the configuration files into the target.
func Write(cfg Config) error {
	a := cfg.Spec.Machine.Allocation
	if a == nil {
		return errors.New("write install config: the machine has no allocation")
	}
	if cfg.Spec.Machine.ID == "" {
		return errors.New("write install config: the machine has no id")
	}
	root, err := os.OpenRoot(cfg.Target)
	if err != nil {
		return fmt.Errorf("write install config: %w", err)
	}
	defer root.Close()
	w := writer{root: root}

	hostname := a.Hostname
	if hostname == "" {
		hostname = cfg.Spec.Machine.ID
	}
	w.file("etc/hostname", 0o644, hostname+"\n")
	w.file("etc/hosts", 0o644, hosts(hostname, a.Networks))
	if len(cfg.Spec.DNSServers) > 0 {
		var b strings.Builder
		b.WriteString("# written by the metalforge hammer\n")
		for _, s := range cfg.Spec.DNSServers {
			fmt.Fprintf(&b, "nameserver %s\n", s)
		}
		w.file("etc/resolv.conf", 0o644, b.String())
	}
	if len(cfg.Spec.NTPServers) > 0 {
		w.file(NTPPath, 0o644, "# written by the metalforge hammer\n[Time]\nNTP="+strings.Join(cfg.Spec.NTPServers, " ")+"\n")
	}
	if len(a.SSHPubKeys) > 0 {
		w.dir("root/.ssh", 0o700)
		w.file("root/.ssh/authorized_keys", 0o600, strings.Join(trimAll(a.SSHPubKeys), "\n")+"\n")
	}
	if a.UserData != "" {
		w.file(UserDataPath, 0o600, a.UserData)
	}
	w.json(InstallPath, 0o600, a)
	w.json(NetworksPath, 0o644, a.Networks)
	w.json(PhoneHomePath, 0o600, phonehome.File{API: cfg.API, MachineID: cfg.Spec.Machine.ID, Token: cfg.Spec.PhoneHomeToken})
	if cfg.Fstab != "" {
		w.file("etc/fstab", 0o644, cfg.Fstab)
	}
	if w.err != nil {
		return fmt.Errorf("write install config: %w", w.err)
	}
	return nil
}

// hosts renders /etc/hosts with the hostname on 127.0.1.1 (the Debian way) and on the
// machine's first private address.
func hosts(hostname string, nets []api.MachineNetwork) string {
	var b strings.Builder
	b.WriteString("# written by the metalforge hammer\n127.0.0.1\tlocalhost\n")
	for _, n := range nets {
		if n.Private && len(n.IPs) > 0 {
			fmt.Fprintf(&b, "%s\t%s\n", n.IPs[0], hostname)
			break
		}
	}
	fmt.Fprintf(&b, "127.0.1.1\t%s\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n", hostname)
	return b.String()
}

func trimAll(ss []string) []string {
	out := make([]string, 0, len(ss))
	for _, s := range ss {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// writer keeps the first error, so Write reads as a list of files.
type writer struct {
	root *os.Root
	err  error
}

func (w *writer) dir(name string, mode fs.FileMode) {
	if w.err != nil {
		return
	}
	if err := w.root.MkdirAll(name, mode); err != nil {
		w.err = err
		return
	}
	if err := w.root.Chmod(name, mode); err != nil {
		w.err = err
	}
}

// file replaces name (a file or a symlink the image may have there, such as resolv.conf) with a
// regular file of the given mode owned by root.
func (w *writer) file(name string, mode fs.FileMode, content string) {
	if w.err != nil {
		return
	}
	if dir := path.Dir(name); dir != "." {
		if err := w.root.MkdirAll(dir, 0o755); err != nil {
			w.err = err
			return
		}
	}
	if err := w.root.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		w.err = err
		return
	}
	f, err := w.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		w.err = err
		return
	}
	_, err = f.WriteString(content)
	if err == nil {
		err = f.Chmod(mode) // the umask applied at creation
	}
	if err == nil && os.Geteuid() == 0 {
		err = f.Chown(0, 0)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		w.err = fmt.Errorf("%s: %w", name, err)
	}
}

func (w *writer) json(name string, mode fs.FileMode, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		w.err = errors.Join(w.err, fmt.Errorf("%s: %w", name, err))
		return
	}
	w.file(name, mode, string(b)+"\n")
}
