// Package fabric is the lab's network: a CLOS fabric of network namespaces — one spine, leaves and
// host namespaces standing in for machines — with FRR in each. Leaves run FRR in a mount namespace
// of their own whose /run/netns is the leaf's VRF directory, so that zebra (-n) takes the network
// namespaces the switch agent creates there as the leaf's VRFs (the kernel has no VRF device). The
// switch agents (switch-agent/agent with the nsvrf device) run in-process, one per leaf.
//
// Everything lives in namespaces the lab creates (named <Name>-spine, <Name>-leaf1, ...) and under
// /run/<Name>; Close tears it all down, also after a failed Start. Root is required.
package fabric

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/metalforge/metalforge/pkg/frr"
	"github.com/metalforge/metalforge/switch-agent/nsvrf"
)

// Fabric ASNs (2-byte private: metal-api gives machines the 4-byte private range).
const (
	SpineASN     = 64512
	leafASNFirst = 64513
)

// HostSpec is a machine stand-in: a namespace with one NIC (lan0) on a leaf port.
type HostSpec struct {
	Name string
	// Leaf is the index of the leaf (0-based).
	Leaf int
}

// Config describes the fabric.
type Config struct {
	// Name prefixes every namespace and directory (default "mf" + 4 random hex digits).
	Name string
	// Leaves is the number of leaves (default 2).
	Leaves int
	Hosts  []HostSpec
	// WorkDir takes FRR configs and logs (required).
	WorkDir string
	// Keepalive and Hold are the BGP timers of every session (default 1 and 3).
	Keepalive, Hold int
	Log             *slog.Logger
}

// Fabric is a running lab fabric.
type Fabric struct {
	cfg    Config
	Spine  *Switch
	Leaves []*Leaf
	Hosts  []*Host
	undo   []func() error
}

// Switch is a spine or leaf namespace with its FRR.
type Switch struct {
	Name     string // e.g. "leaf1"
	Netns    string // namespace name in /run/netns, also the FRR pathspace
	ASN      uint32
	Loopback netip.Addr
	FRR      frr.Tools
	frr      *instance
}

// NetnsPath is the path of the switch's namespace.
func (s *Switch) NetnsPath() string { return filepath.Join("/run/netns", s.Netns) }

// Leaf is a leaf switch.
type Leaf struct {
	Switch
	// VRFDir holds the VRF namespaces (a shared mount; FRR sees it as /run/netns).
	VRFDir string
	// PXENetns is the namespace of the PXE bridge.
	PXENetns string
	// Ports are the machine-facing ports, Uplink the port to the spine.
	Ports  []string
	Uplink string
}

// Start builds the fabric: namespaces, links, and FRR on the spine and the leaves (with their
// underlay sessions configured; the leaves' tenant config is the switch agents' job). Hosts get
// their namespace and link; their FRR starts with Host.Configure.
func Start(ctx context.Context, cfg Config) (f *Fabric, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("lab fabric: needs root")
	}
	if cfg.WorkDir == "" {
		return nil, errors.New("lab fabric: work directory is required")
	}
	if cfg.Name == "" {
		b := make([]byte, 2)
		_, _ = rand.Read(b)
		cfg.Name = "mf" + hex.EncodeToString(b)
	}
	if cfg.Leaves == 0 {
		cfg.Leaves = 2
	}
	if cfg.Keepalive == 0 || cfg.Hold == 0 {
		cfg.Keepalive, cfg.Hold = 1, 3
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if swept, err := Sweep(); len(swept) > 0 {
		cfg.Log.Warn("removed labs of dead processes", "labs", swept, "err", err)
	}
	f = &Fabric{cfg: cfg}
	defer func() {
		if err != nil {
			err = errors.Join(err, f.Close())
			f = nil
		}
	}()
	root := f.root()
	if err := os.MkdirAll(root, 0o755); err != nil {
		return f, fmt.Errorf("lab fabric: %w", err)
	}
	f.push(func() error { return os.RemoveAll(root) })
	if err := f.claim(); err != nil {
		return f, fmt.Errorf("lab fabric: %w", err)
	}

	f.Spine = &Switch{Name: "spine", Netns: cfg.Name + "-spine", ASN: SpineASN, Loopback: netip.AddrFrom4([4]byte{10, 255, 0, 1})}
	if err := f.namespace(f.Spine.Netns); err != nil {
		return f, err
	}
	for i := range cfg.Leaves {
		name := fmt.Sprintf("leaf%d", i+1)
		l := &Leaf{Switch: Switch{Name: name, Netns: cfg.Name + "-" + name, ASN: uint32(leafASNFirst + i),
			Loopback: netip.AddrFrom4([4]byte{10, 255, 0, byte(11 + i)})},
			VRFDir: filepath.Join(root, name+"-vrf"), PXENetns: filepath.Join(root, name+"-pxe"), Uplink: "uplink"}
		if err := f.namespace(l.Netns); err != nil {
			return f, err
		}
		if err := f.sharedDir(l.VRFDir); err != nil {
			return f, err
		}
		if err := nsvrf.CreateNetns(l.PXENetns); err != nil {
			return f, fmt.Errorf("lab fabric: %w", err)
		}
		f.push(func() error { return nsvrf.DeleteNetns(l.PXENetns) })
		if err := link(l.Uplink, l.NetnsPath(), fmt.Sprintf("down%d", i+1), f.Spine.NetnsPath(), nil); err != nil {
			return f, err
		}
		f.Leaves = append(f.Leaves, l)
	}
	for _, h := range cfg.Hosts {
		if h.Leaf < 0 || h.Leaf >= len(f.Leaves) {
			return f, fmt.Errorf("lab fabric: host %s on leaf %d of %d", h.Name, h.Leaf, len(f.Leaves))
		}
		l := f.Leaves[h.Leaf]
		host := &Host{Name: h.Name, Netns: cfg.Name + "-" + h.Name, Leaf: l, Port: fmt.Sprintf("swp%d", len(l.Ports)+1), fabric: f}
		if err := f.namespace(host.Netns); err != nil {
			return f, err
		}
		if err := link(host.Port, l.NetnsPath(), "lan0", host.NetnsPath(), nil); err != nil {
			return f, err
		}
		l.Ports = append(l.Ports, host.Port)
		f.Hosts = append(f.Hosts, host)
	}
	for _, ns := range f.namespaces() {
		if err := up(ns); err != nil {
			return f, err
		}
	}
	if err := f.startSwitches(ctx); err != nil {
		return f, err
	}
	return f, nil
}

// root is the lab's directory under /run.
func (f *Fabric) root() string { return filepath.Join("/run", f.cfg.Name) }

// Name is the lab's name prefix.
func (f *Fabric) Name() string { return f.cfg.Name }

func (f *Fabric) push(fn func() error) { f.undo = append(f.undo, fn) }

// Close tears everything down in reverse order of creation and reports what failed.
func (f *Fabric) Close() error {
	var errs []error
	for i := len(f.undo) - 1; i >= 0; i-- {
		if err := f.undo[i](); err != nil {
			errs = append(errs, err)
		}
	}
	f.undo = nil
	return errors.Join(errs...)
}

func (f *Fabric) namespaces() []string {
	out := []string{f.Spine.NetnsPath()}
	for _, l := range f.Leaves {
		out = append(out, l.NetnsPath())
	}
	for _, h := range f.Hosts {
		out = append(out, h.NetnsPath())
	}
	return out
}

// namespace creates /run/netns/<name>.
func (f *Fabric) namespace(name string) error {
	path := filepath.Join("/run/netns", name)
	if err := nsvrf.CreateNetns(path); err != nil {
		return fmt.Errorf("lab fabric: %w", err)
	}
	f.push(func() error { return nsvrf.DeleteNetns(path) })
	return nil
}

// sharedDir makes dir a shared mount, so that namespaces created in it propagate to FRR's mount
// namespace; on teardown the namespaces left in it are deleted first.
func (f *Fabric) sharedDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("lab fabric: %w", err)
	}
	if err := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("lab fabric: bind %s: %w", dir, err)
	}
	f.push(func() error {
		var errs []error
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			errs = append(errs, nsvrf.DeleteNetns(filepath.Join(dir, e.Name())))
		}
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			errs = append(errs, fmt.Errorf("unmount %s: %w", dir, err))
		}
		return errors.Join(errs...)
	})
	if err := unix.Mount("", dir, "", unix.MS_SHARED, ""); err != nil {
		return fmt.Errorf("lab fabric: make %s shared: %w", dir, err)
	}
	return nil
}

// link creates a veth pair with its ends in two namespaces.
func link(a, nsA, b, nsB string, mac []byte) error {
	ha, err := netns.GetFromPath(nsA)
	if err != nil {
		return fmt.Errorf("lab fabric: %w", err)
	}
	defer ha.Close()
	hb, err := netns.GetFromPath(nsB)
	if err != nil {
		return fmt.Errorf("lab fabric: %w", err)
	}
	defer hb.Close()
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: a, Namespace: netlink.NsFd(int(ha)), HardwareAddr: mac},
		PeerName: b, PeerNamespace: netlink.NsFd(int(hb))}
	if err := netlink.LinkAdd(v); err != nil {
		return fmt.Errorf("lab fabric: veth %s-%s: %w", a, b, err)
	}
	return nil
}

// up sets every link of a namespace up.
func up(path string) error {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("lab fabric: %w", err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("lab fabric: %w", err)
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return fmt.Errorf("lab fabric: %w", err)
	}
	for _, l := range links {
		if err := h.LinkSetUp(l); err != nil {
			return fmt.Errorf("lab fabric: %s up: %w", l.Attrs().Name, err)
		}
	}
	return nil
}

// addLoopback puts an address on lo.
func addLoopback(path string, a netip.Addr) error {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return err
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return err
	}
	addr, err := netlink.ParseAddr(netip.PrefixFrom(a, a.BitLen()).String())
	if err != nil {
		return err
	}
	if err := h.AddrReplace(lo, addr); err != nil {
		return fmt.Errorf("address %s on lo: %w", a, err)
	}
	return nil
}
