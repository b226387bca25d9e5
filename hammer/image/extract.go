package image

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// extractor writes tar entries below a root directory. Every path is resolved with openat2 and
// RESOLVE_IN_ROOT, so symlinks already in the tree can't lead a write outside the root; the last
// component is always created relative to its parent's descriptor without following links.
type extractor struct {
	root  int
	files int
	// chown is false when not running as root: tests and dev runs keep their own uid.
	chown   bool
	buf     []byte
	written func(int)
	// dirs are directory mtimes, applied at the end (creating entries changes them).
	dirs []dirTime
	// parent caches the descriptor of the last parent directory (tar groups entries by directory).
	parentName string
	parentFD   int
}

type dirTime struct {
	name  string
	mtime time.Time
}

func newExtractor(target string) (*extractor, error) {
	fd, err := unix.Open(target, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open target %s: %w", target, err)
	}
	return &extractor{root: fd, parentFD: -1, buf: make([]byte, 1<<20), written: func(int) {}, chown: os.Geteuid() == 0}, nil
}

func (x *extractor) close() {
	x.dropParent()
	unix.Close(x.root)
}

func (x *extractor) dropParent() {
	if x.parentFD >= 0 {
		unix.Close(x.parentFD)
	}
	x.parentFD, x.parentName = -1, ""
}

func (x *extractor) extract(ctx context.Context, r io.Reader) error {
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read archive: %w", err)
		}
		if err := x.entry(hdr, tr); err != nil {
			return fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
	}
	for _, d := range x.dirs {
		fd, err := x.open(d.name, unix.O_RDONLY|unix.O_DIRECTORY)
		if err != nil {
			return fmt.Errorf("directory %q: %w", d.name, err)
		}
		err = futimens(fd, d.mtime)
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("directory %q times: %w", d.name, err)
		}
	}
	return nil
}

// cleanName checks an archive path: relative, no ".." component. "./a//b/" becomes "a/b"; the
// root itself is ".".
func cleanName(name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("empty name: %w", ErrRefused)
	}
	if strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("absolute path: %w", ErrRefused)
	}
	for _, c := range strings.Split(name, "/") {
		if c == ".." {
			return "", fmt.Errorf("path with a .. component: %w", ErrRefused)
		}
	}
	if strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("path with a NUL byte: %w", ErrRefused)
	}
	return path.Clean(name), nil
}

// escapes reports whether a relative symlink target, followed lexically from the directory dir
// inside the root, climbs above the root.
func escapes(dir, target string) bool {
	depth := 0
	if dir != "." {
		depth = strings.Count(dir, "/") + 1
	}
	for _, c := range strings.Split(target, "/") {
		switch c {
		case "", ".":
		case "..":
			depth--
			if depth < 0 {
				return true
			}
		default:
			depth++
		}
	}
	return false
}

// open resolves name inside the root.
func (x *extractor) open(name string, flags uint64) (int, error) {
	how := unix.OpenHow{Flags: flags | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
	for {
		fd, err := unix.Openat2(x.root, name, &how)
		if err == unix.EINTR || err == unix.EAGAIN {
			continue // RESOLVE_IN_ROOT asks for a retry on concurrent renames
		}
		return fd, err
	}
}

// parent returns a descriptor of the directory dir inside the root, creating missing components
// (mode 0755, owned by root) like tar does for archives without directory entries.
func (x *extractor) parent(dir string) (int, error) {
	if dir == x.parentName && x.parentFD >= 0 {
		return x.parentFD, nil
	}
	x.dropParent()
	fd, err := x.open(dir, unix.O_PATH|unix.O_DIRECTORY)
	if errors.Is(err, unix.ENOENT) {
		fd, err = x.mkdirAll(dir)
	}
	if err != nil {
		return -1, fmt.Errorf("parent directory %q: %w", dir, err)
	}
	x.parentName, x.parentFD = dir, fd
	return fd, nil
}

func (x *extractor) mkdirAll(dir string) (int, error) {
	fd, err := unix.Dup(x.root)
	if err != nil {
		return -1, err
	}
	prefix := ""
	for _, c := range strings.Split(dir, "/") {
		prefix = path.Join(prefix, c)
		// Symlinks on the way resolve inside the root; fd is the resolved parent of c.
		next, err := x.open(prefix, unix.O_PATH|unix.O_DIRECTORY)
		if errors.Is(err, unix.ENOENT) {
			if err := unix.Mkdirat(fd, c, 0o755); err != nil && err != unix.EEXIST {
				unix.Close(fd)
				return -1, fmt.Errorf("mkdir %s: %w", prefix, err)
			}
			next, err = x.open(prefix, unix.O_PATH|unix.O_DIRECTORY)
		}
		unix.Close(fd)
		if err != nil {
			return -1, fmt.Errorf("%s: %w", prefix, err)
		}
		fd = next
	}
	return fd, nil
}

// entry writes one archive entry.
func (x *extractor) entry(hdr *tar.Header, r io.Reader) error {
	name, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if name == "." {
		if hdr.Typeflag != tar.TypeDir {
			return fmt.Errorf("root entry of type %q: %w", hdr.Typeflag, ErrRefused)
		}
		x.dirs = append(x.dirs, dirTime{".", hdr.ModTime})
		return x.attrs(x.root, "", hdr, false)
	}
	dir, base := path.Split(name)
	dir = path.Clean(dir)
	switch hdr.Typeflag {
	case tar.TypeDir:
		pfd, err := x.parent(dir)
		if err != nil {
			return err
		}
		if err := unix.Mkdirat(pfd, base, 0o700); err != nil && err != unix.EEXIST {
			return fmt.Errorf("mkdir: %w", err)
		}
		fd, err := unix.Openat(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open directory (a symlink or file is in the way?): %w", err)
		}
		defer unix.Close(fd)
		x.dirs = append(x.dirs, dirTime{name, hdr.ModTime})
		return x.attrs(fd, "", hdr, false)
	case tar.TypeReg, '\x00':
		return x.file(dir, base, hdr, r)
	case tar.TypeSymlink:
		if hdr.Linkname == "" || strings.ContainsRune(hdr.Linkname, 0) {
			return fmt.Errorf("symlink with an empty or NUL target: %w", ErrRefused)
		}
		if !strings.HasPrefix(hdr.Linkname, "/") && escapes(dir, hdr.Linkname) {
			return fmt.Errorf("symlink to %q leaves the target root: %w", hdr.Linkname, ErrRefused)
		}
		pfd, err := x.replace(dir, base)
		if err != nil {
			return err
		}
		if err := unix.Symlinkat(hdr.Linkname, pfd, base); err != nil {
			return fmt.Errorf("symlink: %w", err)
		}
		return x.attrs(pfd, base, hdr, true)
	case tar.TypeLink:
		old, err := cleanName(hdr.Linkname)
		if err != nil || old == "." {
			return fmt.Errorf("hard link to %q: %w", hdr.Linkname, ErrRefused)
		}
		oldDir, oldBase := path.Split(old)
		ofd, err := x.open(path.Clean(oldDir), unix.O_PATH|unix.O_DIRECTORY)
		if err != nil {
			return fmt.Errorf("hard link to %q: %w", hdr.Linkname, err)
		}
		defer unix.Close(ofd)
		var st unix.Stat_t
		if err := unix.Fstatat(ofd, oldBase, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("hard link to %q: %w", hdr.Linkname, err)
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			return fmt.Errorf("hard link to directory %q: %w", hdr.Linkname, ErrRefused)
		}
		pfd, err := x.replace(dir, base)
		if err != nil {
			return err
		}
		if err := unix.Linkat(ofd, oldBase, pfd, base, 0); err != nil {
			return fmt.Errorf("hard link: %w", err)
		}
		return nil
	case tar.TypeChar, tar.TypeBlock:
		return fmt.Errorf("device node: %w", ErrRefused)
	case tar.TypeFifo:
		return fmt.Errorf("fifo: %w", ErrRefused)
	case tar.TypeXGlobalHeader:
		return nil
	}
	return fmt.Errorf("entry type %q: %w", hdr.Typeflag, ErrRefused)
}

// replace returns the parent's descriptor after removing whatever non-directory is at base, so
// a later entry replaces an earlier one like tar does (and never writes through an old symlink).
func (x *extractor) replace(dir, base string) (int, error) {
	pfd, err := x.parent(dir)
	if err != nil {
		return -1, err
	}
	switch err := unix.Unlinkat(pfd, base, 0); err {
	case nil, unix.ENOENT:
		return pfd, nil
	case unix.EISDIR:
		return -1, fmt.Errorf("a directory is in the way: %w", ErrRefused)
	default:
		return -1, fmt.Errorf("remove old entry: %w", err)
	}
}

func (x *extractor) file(dir, base string, hdr *tar.Header, r io.Reader) error {
	pfd, err := x.replace(dir, base)
	if err != nil {
		return err
	}
	fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	f := os.NewFile(uintptr(fd), base)
	defer f.Close()
	if _, err := io.CopyBuffer(writerFunc(func(b []byte) (int, error) {
		n, err := f.Write(b)
		x.written(n)
		return n, err
	}), r, x.buf); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	x.files++
	return x.attrs(fd, "", hdr, false)
}

type writerFunc func([]byte) (int, error)

func (w writerFunc) Write(b []byte) (int, error) { return w(b) }

// attrs sets owner, then mode (chown clears setuid/setgid bits, so the order matters), then
// extended attributes (file capabilities are cleared by chown too), then the mtime. With base ""
// fd is the entry itself; otherwise the entry is base in directory fd and is a symlink, which
// only gets owner and times.
func (x *extractor) attrs(fd int, base string, hdr *tar.Header, symlink bool) error {
	if symlink {
		if err := x.chownAt(fd, base, hdr); err != nil {
			return err
		}
		ts := []unix.Timespec{unix.NsecToTimespec(hdr.ModTime.UnixNano()), unix.NsecToTimespec(hdr.ModTime.UnixNano())}
		if err := unix.UtimesNanoAt(fd, base, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("symlink times: %w", err)
		}
		return nil
	}
	if err := x.chownAt(fd, "", hdr); err != nil {
		return err
	}
	if err := unix.Fchmod(fd, uint32(hdr.Mode)&0o7777); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	for k, v := range hdr.PAXRecords {
		if attr, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
			if err := unix.Fsetxattr(fd, attr, []byte(v), 0); err != nil {
				return fmt.Errorf("xattr %s: %w", attr, err)
			}
		}
	}
	if hdr.Typeflag == tar.TypeDir || base != "" {
		return nil // directory times are set at the end
	}
	if err := futimens(fd, hdr.ModTime); err != nil {
		return fmt.Errorf("times: %w", err)
	}
	return nil
}

func (x *extractor) chownAt(fd int, base string, hdr *tar.Header) error {
	if !x.chown {
		return nil
	}
	flags := unix.AT_SYMLINK_NOFOLLOW
	if base == "" {
		flags |= unix.AT_EMPTY_PATH
	}
	if err := unix.Fchownat(fd, base, hdr.Uid, hdr.Gid, flags); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	return nil
}

// futimens sets access and modification time of an open file (utimensat with a NULL path).
func futimens(fd int, t time.Time) error {
	ts := [2]unix.Timespec{unix.NsecToTimespec(t.UnixNano()), unix.NsecToTimespec(t.UnixNano())}
	_, _, errno := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}
