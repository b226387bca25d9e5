package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"golang.org/x/sys/unix"
)

var mtime = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// entry is one tar member to build.
type entry struct {
	name, link string
	typ        byte
	mode       int64
	uid, gid   int
	body       string
	pax        map[string]string
}

func buildTar(t testing.TB, entries []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: e.mode, Uid: e.uid, Gid: e.gid,
			ModTime: mtime, Size: int64(len(e.body)), PAXRecords: e.pax, Format: tar.FormatPAX}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func compress(t testing.TB, format string, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w io.WriteCloser
	switch format {
	case "zst":
		zw, err := zstd.NewWriter(&buf, zstd.WithEncoderLevel(zstd.SpeedFastest))
		if err != nil {
			t.Fatal(err)
		}
		w = zw
	case "lz4":
		w = lz4.NewWriter(&buf)
	case "gz":
		w = gzip.NewWriter(&buf)
	case "tar":
		return b
	}
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// serve serves body at /image.<suffix> until the test ends.
func serve(t testing.TB, body []byte) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/image") {
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, "image", mtime, bytes.NewReader(body))
	}))
	t.Cleanup(srv.Close)
	return srv
}

var goodTree = []entry{
	{name: "./", typ: tar.TypeDir, mode: 0o755},
	{name: "./usr/", typ: tar.TypeDir, mode: 0o755},
	{name: "./usr/bin/", typ: tar.TypeDir, mode: 0o755},
	{name: "./usr/bin/sudo", typ: tar.TypeReg, mode: 0o4755, body: "#!/bin/sh\necho sudo\n"},
	{name: "./usr/bin/ping", typ: tar.TypeReg, mode: 0o755, body: "ping", pax: map[string]string{"SCHILY.xattr.user.metalforge": "cap"}},
	{name: "./usr/bin/sudoedit", typ: tar.TypeLink, link: "./usr/bin/sudo"},
	{name: "./bin", typ: tar.TypeSymlink, link: "usr/bin"},
	{name: "./etc/localtime", typ: tar.TypeSymlink, link: "/usr/share/zoneinfo/Etc/UTC"},
	{name: "./etc/alternatives/editor", typ: tar.TypeSymlink, link: "../../usr/bin/sudo"},
	{name: "./home/user/", typ: tar.TypeDir, mode: 0o700, uid: 1000, gid: 1000},
	{name: "./home/user/.profile", typ: tar.TypeReg, mode: 0o644, uid: 1000, gid: 1000, body: "export A=1\n"},
	{name: "./tmp/", typ: tar.TypeDir, mode: 0o1777},
	{name: "./empty", typ: tar.TypeReg, mode: 0o600},
	{name: "./usr/bin/ping", typ: tar.TypeReg, mode: 0o755, body: "ping v2"}, // a later entry replaces an earlier one
}

func TestStreamFormats(t *testing.T) {
	tarball := buildTar(t, goodTree)
	for _, format := range []string{"zst", "lz4", "gz", "tar"} {
		t.Run(format, func(t *testing.T) {
			body := compress(t, format, tarball)
			srv := serve(t, body)
			target := t.TempDir()
			var last Progress
			calls := 0
			suffix := ".tar." + format
			if format == "tar" {
				suffix = ".tar"
			}
			p, err := Stream(context.Background(), Config{URL: srv.URL + "/image" + suffix, SHA256: digest(body), Target: target,
				Progress: func(p Progress) { last, calls = p, calls+1 }})
			if err != nil {
				t.Fatal(err)
			}
			if !last.Done || last.Read != uint64(len(body)) || last.Total != uint64(len(body)) || p.Files != 5 || p.Written != uint64(len("#!/bin/sh\necho sudo\n")+4+11+7) {
				t.Errorf("progress = %+v (final %+v, %d calls)", last, p, calls)
			}
			checkTree(t, target)
		})
	}
}

func checkTree(t *testing.T, target string) {
	t.Helper()
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(target, name))
		if err != nil {
			t.Error(err)
		}
		return string(b)
	}
	if got := read("usr/bin/ping"); got != "ping v2" {
		t.Errorf("ping = %q, want the later entry", got)
	}
	if got := read("bin/sudo"); got != "#!/bin/sh\necho sudo\n" {
		t.Errorf("bin/sudo through the symlink = %q", got)
	}
	st := func(name string) *syscall.Stat_t {
		fi, err := os.Lstat(filepath.Join(target, name))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t)
	}
	if s := st("usr/bin/sudo"); s.Mode&0o7777 != 0o4755 || s.Nlink != 2 {
		t.Errorf("sudo mode %o nlink %d, want 4755 and 2 links", s.Mode&0o7777, s.Nlink)
	}
	if s := st("tmp"); s.Mode&0o7777 != 0o1777 {
		t.Errorf("tmp mode %o", s.Mode&0o7777)
	}
	if os.Geteuid() == 0 {
		if s := st("home/user/.profile"); s.Uid != 1000 || s.Gid != 1000 {
			t.Errorf(".profile owner %d:%d", s.Uid, s.Gid)
		}
	}
	if s := st("usr/bin/sudo"); time.Unix(s.Mtim.Unix()).UTC() != mtime {
		t.Errorf("sudo mtime %v", time.Unix(s.Mtim.Unix()))
	}
	if s := st("usr"); time.Unix(s.Mtim.Unix()).UTC() != mtime {
		t.Errorf("usr mtime %v, want the archive's", time.Unix(s.Mtim.Unix()))
	}
	if l, _ := os.Readlink(filepath.Join(target, "etc/localtime")); l != "/usr/share/zoneinfo/Etc/UTC" {
		t.Errorf("localtime -> %q", l)
	}
	buf := make([]byte, 16)
	if n, err := unix.Getxattr(filepath.Join(target, "usr/bin/ping"), "user.metalforge", buf); err == nil && string(buf[:n]) != "cap" {
		t.Errorf("xattr = %q", buf[:n])
	}
}

// TestStreamHostile: every hostile archive is refused and nothing appears outside the target.
func TestStreamHostile(t *testing.T) {
	tests := []struct {
		name    string
		entries func(outside string) []entry
		refused bool // the error wraps ErrRefused; otherwise any error or success is fine if nothing leaks
		// inside is where a write through an in-root symlink must land, relative to the target.
		inside func(outside string) string
	}{
		{"dotdot", func(string) []entry { return []entry{{name: "../evil", typ: tar.TypeReg, body: "x"}} }, true, nil},
		{"dotdot inside", func(string) []entry { return []entry{{name: "a/../../evil", typ: tar.TypeReg, body: "x"}} }, true, nil},
		{"absolute", func(o string) []entry { return []entry{{name: o + "/evil", typ: tar.TypeReg, body: "x"}} }, true, nil},
		{"symlink escaping", func(string) []entry {
			return []entry{{name: "a/link", typ: tar.TypeSymlink, link: "../../outside"}}
		}, true, nil},
		{"hardlink escaping", func(string) []entry { return []entry{{name: "hl", typ: tar.TypeLink, link: "../outside/victim"}} }, true, nil},
		{"hardlink absolute", func(o string) []entry { return []entry{{name: "hl", typ: tar.TypeLink, link: o + "/victim"}} }, true, nil},
		{"char device", func(string) []entry { return []entry{{name: "dev/mem", typ: tar.TypeChar}} }, true, nil},
		{"block device", func(string) []entry { return []entry{{name: "dev/sda", typ: tar.TypeBlock}} }, true, nil},
		{"fifo", func(string) []entry { return []entry{{name: "run/fifo", typ: tar.TypeFifo}} }, true, nil},
		{"write through absolute symlink", func(o string) []entry {
			return []entry{{name: "abs", typ: tar.TypeSymlink, link: o}, {name: "abs/pwned", typ: tar.TypeReg, body: "x"}}
		}, false, nil}, // the link dangles inside the target: an error

		{"write through root symlink", func(o string) []entry {
			return []entry{{name: "up", typ: tar.TypeSymlink, link: "/"}, {name: "up" + o + "/pwned", typ: tar.TypeReg, body: "x"}}
		}, false, func(o string) string { return o + "/pwned" }},
		{"replace symlink with file", func(o string) []entry {
			return []entry{{name: "f", typ: tar.TypeSymlink, link: o + "/victim"}, {name: "f", typ: tar.TypeReg, body: "overwritten"}}
		}, false, func(string) string { return "f" }},
		{"hardlink through symlink dir", func(o string) []entry {
			return []entry{{name: "d", typ: tar.TypeSymlink, link: o}, {name: "hl", typ: tar.TypeLink, link: "d/victim"}}
		}, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			target, outside := filepath.Join(base, "target"), filepath.Join(base, "outside")
			for _, d := range []string{target, outside} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(filepath.Join(outside, "victim"), []byte("safe"), 0o644); err != nil {
				t.Fatal(err)
			}
			body := compress(t, "zst", buildTar(t, tt.entries(outside)))
			srv := serve(t, body)
			_, err := Stream(context.Background(), Config{URL: srv.URL + "/image.tar.zst", SHA256: digest(body), Target: target})
			if tt.refused && !errors.Is(err, ErrRefused) {
				t.Errorf("err = %v, want ErrRefused", err)
			}
			if err != nil && !strings.Contains(err.Error(), "entry") {
				t.Errorf("error %q does not name the entry", err)
			}
			ents, _ := os.ReadDir(outside)
			if len(ents) != 1 {
				t.Errorf("outside holds %d entries, want only the victim", len(ents))
			}
			if b, _ := os.ReadFile(filepath.Join(outside, "victim")); string(b) != "safe" {
				t.Errorf("victim = %q", b)
			}
			if ents, _ := os.ReadDir(base); len(ents) != 2 {
				t.Errorf("base holds %d entries, want target and outside", len(ents))
			}
			if tt.inside != nil {
				if _, err := os.Stat(filepath.Join(target, tt.inside(outside))); err != nil {
					t.Errorf("the write should have landed inside the target: %v", err)
				}
			}
		})
	}
}

func TestStreamErrors(t *testing.T) {
	tarball := buildTar(t, goodTree)
	zst := compress(t, "zst", tarball)
	srv := serve(t, zst)
	truncated := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100000")
		w.Write(zst[:len(zst)/2]) //nolint:errcheck // the client sees a short body
	}))
	t.Cleanup(truncated.Close)
	tests := []struct {
		name, url, sha string
		want           string
	}{
		{"bad checksum", srv.URL + "/image.tar.zst", digest([]byte("other")), "checksum mismatch"},
		{"suffix disagrees", srv.URL + "/image.tar.gz", digest(zst), "named .gz but its content is zst"},
		{"not found", srv.URL + "/missing.tar.zst", digest(zst), "404"},
		{"no checksum", srv.URL + "/image.tar.zst", "", "not a hex sha256"},
		{"truncated", truncated.URL + "/image.tar.zst", digest(zst), "unexpected EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Stream(context.Background(), Config{URL: tt.url, SHA256: tt.sha, Target: t.TempDir()})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
	_, err := Stream(context.Background(), Config{URL: srv.URL + "/image.tar.zst", SHA256: digest([]byte("x")), Target: t.TempDir()})
	if !errors.Is(err, ErrChecksum) {
		t.Errorf("bad checksum: %v, want ErrChecksum", err)
	}
}

func TestEscapes(t *testing.T) {
	for _, tt := range []struct {
		dir, target string
		want        bool
	}{
		{".", "usr/bin", false}, {".", "../x", true}, {"a/b", "../../c", false}, {"a/b", "../../../c", true},
		{"a", "b/../../c", false}, {"a", "b/../../../c", true}, {"a", "./../.", false},
	} {
		if got := escapes(tt.dir, tt.target); got != tt.want {
			t.Errorf("escapes(%q, %q) = %v, want %v", tt.dir, tt.target, got, tt.want)
		}
	}
}

// BenchmarkStream measures MB/s of file content written for each format, over loopback HTTP
// into a temp dir: 64 MiB in 48 files of half-compressible data.
func BenchmarkStream(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	var entries []entry
	total := 0
	for i := range 48 {
		// Random words from a small vocabulary with random numbers: like logs and binaries,
		// compressible by LZ matching and entropy coding, but never repeating whole blocks.
		words := strings.Fields("usr lib bin etc systemd kernel module firmware x86_64 linux gnu share doc locale libc so")
		body := make([]byte, 0, (64<<20)/48+64)
		for len(body) < (64<<20)/48 {
			body = append(body, words[rng.IntN(len(words))]...)
			body = append(body, byte(rng.IntN(256)), ' ')
		}
		entries = append(entries, entry{name: "data/f" + string(rune('a'+i%26)) + string(rune('a'+i/26)), typ: tar.TypeReg, mode: 0o644, body: string(body)})
		total += len(body)
	}
	tarball := buildTar(b, entries)
	for _, format := range []string{"zst", "lz4", "gz", "tar"} {
		body := compress(b, format, tarball)
		srv := serve(b, body)
		b.Run(format, func(b *testing.B) {
			b.SetBytes(int64(total))
			var mbps float64
			for range b.N {
				target := b.TempDir()
				p, err := Stream(context.Background(), Config{URL: srv.URL + "/image", SHA256: digest(body), Target: target})
				if err != nil {
					b.Fatal(err)
				}
				mbps = p.MBps()
			}
			b.ReportMetric(float64(len(body))/float64(total), "ratio")
			b.ReportMetric(mbps, "MB/s-reported")
		})
	}
}
