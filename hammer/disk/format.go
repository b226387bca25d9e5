package disk

import (
	"context"
	"crypto/rand"
	"fmt"
	"os/exec"
	"strings"

	"github.com/metalforge/metalforge/pkg/api"
)

// mkfs makes the file system and returns its UUID, which the hammer chooses so that it need not
// read it back: ext2/3/4 and swap get a random UUID, vfat a random volume ID ("ABCD-1234").
func mkfs(ctx context.Context, fs api.Filesystem) (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	uuid := fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
	var args []string
	switch fs.Format {
	case FormatExt4, FormatExt3, FormatExt2:
		args = []string{"mke2fs", "-F", "-q", "-t", fs.Format, "-U", uuid}
		if fs.Label != "" {
			args = append(args, "-L", fs.Label)
		}
	case FormatVFAT:
		id := fmt.Sprintf("%X", b[0:4])
		uuid = id[:4] + "-" + id[4:]
		args = []string{"mkfs.vfat", "-i", id}
		if fs.Label != "" {
			args = append(args, "-n", strings.ToUpper(fs.Label))
		}
	case FormatSwap:
		args = []string{"mkswap", "-f", "-U", uuid}
		if fs.Label != "" {
			args = append(args, "-L", fs.Label)
		}
	case FormatTmpfs, FormatNone:
		return "", nil
	default:
		return "", fmt.Errorf("mkfs %s: format %q: %w", fs.Device, fs.Format, ErrUnsupported)
	}
	args = append(append(args, fs.CreateOptions...), fs.Device)
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("mkfs %s: %s: %w: %s", fs.Device, args[0], err, strings.TrimSpace(string(out)))
	}
	return uuid, nil
}

// Fstab renders /etc/fstab for the installed OS: file systems by UUID, swap, tmpfs.
func (r *Result) Fstab() string {
	var b strings.Builder
	b.WriteString("# written by the metalforge hammer\n# <file system> <mount point> <type> <options> <dump> <pass>\n")
	for _, m := range r.Filesystems {
		opts := strings.Join(m.MountOptions, ",")
		if opts == "" {
			opts = "defaults"
		}
		spec := "UUID=" + m.UUID
		if m.Kept { // not made by this run: by device, and the boot must not hang on it
			spec = m.Device
			if opts == "defaults" {
				opts = "defaults,nofail"
			}
		}
		switch {
		case m.Format == FormatSwap:
			fmt.Fprintf(&b, "%s none swap sw 0 0\n", spec)
		case m.Format == FormatTmpfs:
			fmt.Fprintf(&b, "tmpfs %s tmpfs %s 0 0\n", m.Path, opts)
		case m.Path == "" || m.Format == FormatNone:
		case m.Path == "/":
			if opts == "defaults" && strings.HasPrefix(m.Format, "ext") {
				opts = "defaults,errors=remount-ro"
			}
			fmt.Fprintf(&b, "%s / %s %s 0 1\n", spec, m.Format, opts)
		default:
			fmt.Fprintf(&b, "%s %s %s %s 0 2\n", spec, m.Path, m.Format, opts)
		}
	}
	return b.String()
}
