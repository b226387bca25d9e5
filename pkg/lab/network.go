package lab

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
)

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func netipPrefix(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

// rangeOf is the DHCP range of the bridge network: .100 to .199 of a /24 (or the same offsets
// into a larger network).
func rangeOf(p netip.Prefix) (first, last netip.Addr) {
	b := p.Masked().Addr().As4()
	b[3] = 100
	first = netip.AddrFrom4(b)
	b[3] = 199
	return first, netip.AddrFrom4(b)
}

// maskOf renders the prefix length as a dotted netmask.
func maskOf(p netip.Prefix) string {
	return net.IP(net.CIDRMask(p.Bits(), 32)).String()
}

// runDeps installs the lab's Debian packages with hack/deps.sh (idempotent).
func runDeps(ctx context.Context, c *Config) error {
	cmd := exec.CommandContext(ctx, filepath.Join(c.RepoDir, "hack", "deps.sh"),
		"qemu-system-x86", "ipxe-qemu", "qemu-utils", "openipmi", "ipmitool", "kmod", "cpio")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("hack/deps.sh: %w: %s", err, out)
	}
	return nil
}

// openTail opens path positioned at most n bytes before its end.
func openTail(path string, n int64) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	if fi, err := f.Stat(); err == nil && fi.Size() > n {
		_, _ = f.Seek(-n, io.SeekEnd)
	}
	return f, nil
}
