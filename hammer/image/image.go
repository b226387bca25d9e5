// Package image streams an OS image onto a mounted target in one pass: HTTP download, decompress
// (zstd, lz4, gzip or plain tar, by magic), sha256 over the downloaded bytes, and a tar extraction
// that refuses entries which would write outside the target. There is no temporary file.
package image

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// ErrChecksum is returned when the downloaded bytes do not match the expected sha256. The target
// then holds a complete but untrusted tree: the caller must wipe it.
var ErrChecksum = errors.New("image checksum mismatch")

// ErrRefused wraps every archive entry that was refused as hostile or unsupported.
var ErrRefused = errors.New("archive entry refused")

// Config is one image to stream.
type Config struct {
	URL string
	// SHA256 is the hex digest of the downloaded file (the compressed archive). Required.
	SHA256 string
	// Target is the directory to extract into, normally the mounted root filesystem.
	Target string
	// Client is the HTTP client; nil uses a client without a timeout (ctx bounds the transfer).
	Client *http.Client
	// Progress is called at most every ProgressInterval (default 1 s) and once at the end.
	Progress         func(Progress)
	ProgressInterval time.Duration
}

// Progress is the state of a transfer.
type Progress struct {
	// Read is compressed bytes downloaded, Total the download size (0 when the server sent none).
	Read, Total uint64
	// Written is file content bytes written to the target.
	Written uint64
	Files   int
	Elapsed time.Duration
	Done    bool
}

// MBps is the write rate in MB/s (10^6 bytes) of uncompressed content.
func (p Progress) MBps() float64 {
	if p.Elapsed <= 0 {
		return 0
	}
	return float64(p.Written) / 1e6 / p.Elapsed.Seconds()
}

// Percent is the share of the download done, -1 when the size is unknown.
func (p Progress) Percent() float64 {
	if p.Total == 0 {
		return -1
	}
	return 100 * float64(p.Read) / float64(p.Total)
}

// Stream downloads, verifies and extracts the image and returns the final progress. On
// ErrChecksum and on most other errors some files may already be in the target.
func Stream(ctx context.Context, cfg Config) (Progress, error) {
	want, err := hex.DecodeString(strings.ToLower(strings.TrimSpace(cfg.SHA256)))
	if err != nil || len(want) != sha256.Size {
		return Progress{}, fmt.Errorf("stream image: sha256 %q is not a hex sha256 digest", cfg.SHA256)
	}
	client := cfg.Client
	if client == nil {
		client = &http.Client{}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cfg.URL, nil)
	if err != nil {
		return Progress{}, fmt.Errorf("stream image: %w", err)
	}
	// The sha256 is over the bytes as stored: no transparent Content-Encoding decoding.
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := client.Do(req)
	if err != nil {
		return Progress{}, fmt.Errorf("stream image: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Progress{}, fmt.Errorf("stream image: get %s: %s", cfg.URL, resp.Status)
	}

	st := &state{cfg: cfg, start: time.Now(), hash: sha256.New()}
	if resp.ContentLength > 0 {
		st.p.Total = uint64(resp.ContentLength)
	}
	if st.cfg.ProgressInterval <= 0 {
		st.cfg.ProgressInterval = time.Second
	}
	raw := bufio.NewReaderSize(io.TeeReader(&counter{r: resp.Body, st: st}, st.hash), 1<<20)
	dec, err := decompressor(raw, cfg.URL)
	if err != nil {
		return st.p, fmt.Errorf("stream image: %w", err)
	}
	defer dec.Close()

	x, err := newExtractor(cfg.Target)
	if err != nil {
		return st.p, fmt.Errorf("stream image: %w", err)
	}
	defer x.close()
	x.written = func(n int) { st.p.Written += uint64(n); st.report(false) }
	if err := x.extract(ctx, dec); err != nil {
		return st.progress(), fmt.Errorf("stream image: %w", err)
	}
	// The hash covers the whole download: read what the decompressor left (trailers, padding).
	if _, err := io.Copy(io.Discard, raw); err != nil {
		return st.progress(), fmt.Errorf("stream image: drain download: %w", err)
	}
	if st.p.Total > 0 && st.p.Read != st.p.Total {
		return st.progress(), fmt.Errorf("stream image: got %d of %d bytes", st.p.Read, st.p.Total)
	}
	st.p.Files = x.files
	st.report(true)
	if got := st.hash.Sum(nil); !bytes.Equal(got, want) {
		return st.progress(), fmt.Errorf("stream image %s: sha256 is %x, want %x: %w", cfg.URL, got, want, ErrChecksum)
	}
	return st.progress(), nil
}

// state is the running transfer.
type state struct {
	cfg      Config
	start    time.Time
	last     time.Time
	p        Progress
	hash     hash.Hash
	finished bool
}

func (s *state) progress() Progress {
	p := s.p
	p.Elapsed = time.Since(s.start)
	return p
}

func (s *state) report(done bool) {
	if s.cfg.Progress == nil || s.finished {
		return
	}
	now := time.Now()
	if !done && now.Sub(s.last) < s.cfg.ProgressInterval {
		return
	}
	s.last = now
	s.finished = done
	p := s.progress()
	p.Done = done
	s.cfg.Progress(p)
}

// counter counts downloaded bytes.
type counter struct {
	r  io.Reader
	st *state
}

func (c *counter) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.st.p.Read += uint64(n)
	return n, err
}

// decompressor picks the decoder by the magic bytes at the start of the stream; the URL suffix
// only has to agree when it names a known format.
func decompressor(r *bufio.Reader, url string) (io.ReadCloser, error) {
	head, err := r.Peek(4)
	if err != nil && len(head) == 0 {
		return nil, fmt.Errorf("read image header: %w", err)
	}
	format := "tar"
	switch {
	case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		format = "zst"
	case bytes.HasPrefix(head, []byte{0x04, 0x22, 0x4d, 0x18}):
		format = "lz4"
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		format = "gz"
	}
	path, _, _ := strings.Cut(url, "?")
	for _, suffix := range []string{"zst", "lz4", "gz", "tar"} {
		if strings.HasSuffix(path, "."+suffix) && suffix != format {
			return nil, fmt.Errorf("image %s is named .%s but its content is %s", url, suffix, format)
		}
	}
	switch format {
	case "zst":
		d, err := zstd.NewReader(r, zstd.WithDecoderMaxWindow(1<<30))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		return d.IOReadCloser(), nil
	case "lz4":
		return io.NopCloser(lz4.NewReader(r)), nil
	case "gz":
		g, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return g, nil
	}
	return io.NopCloser(r), nil
}
