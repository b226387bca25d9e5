// Package cache is the boot service's read-through disk cache for OS images. The first request
// for an image streams it from the upstream while writing it to a temporary file, concurrent
// requests for the same image follow that one download, and once it is complete the file is
// renamed into place and later requests are served from disk with range support.
package cache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// partPrefix marks temporary files of downloads in progress; leftovers are removed by New.
const partPrefix = ".part-"

// Config configures a Cache. Dir and Upstream are required.
type Config struct {
	// Dir holds the cached images.
	Dir string
	// Upstream is the base URL images are fetched from: <Upstream>/<name>.
	Upstream string
	// Client fetches from the upstream (default: a client with connect and header timeouts).
	Client *http.Client
	Log    *slog.Logger
}

// Cache serves images from disk and fills itself from the upstream.
type Cache struct {
	cfg      Config
	upstream *url.URL
	ctx      context.Context // downloads outlive the request that started them, not the cache

	mu    sync.Mutex
	fills map[string]*fill
}

// New returns a cache whose downloads stop when ctx ends.
func New(ctx context.Context, cfg Config) (*Cache, error) {
	if cfg.Dir == "" || cfg.Upstream == "" {
		return nil, errors.New("cache: dir and upstream are required")
	}
	u, err := url.Parse(strings.TrimSuffix(cfg.Upstream, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("cache: upstream %q is not an http(s) URL", cfg.Upstream)
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			ResponseHeaderTimeout: 30 * time.Second,
			IdleConnTimeout:       90 * time.Second,
		}}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	err = filepath.WalkDir(cfg.Dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasPrefix(d.Name(), partPrefix) {
			return os.Remove(path)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("cache: remove stale downloads: %w", err)
	}
	return &Cache{cfg: cfg, upstream: u, ctx: ctx, fills: map[string]*fill{}}, nil
}

// ValidName reports whether name is an image name the cache accepts: slash-separated segments of
// letters, digits and ._+- that do not start with a dot.
func ValidName(name string) bool {
	if name == "" || len(name) > 512 {
		return false
	}
	for s := range strings.SplitSeq(name, "/") {
		if s == "" || s[0] == '.' {
			return false
		}
		for _, r := range s {
			ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._+-", r)
			if !ok {
				return false
			}
		}
	}
	return true
}

// ServeHTTP serves the image named by the request's {name} path value.
func (c *Cache) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !ValidName(name) {
		http.NotFound(w, r)
		return
	}
	path := filepath.Join(c.cfg.Dir, filepath.FromSlash(name))
	f, cached, err := c.attach(name, path)
	if err != nil {
		c.cfg.Log.Error("image cache failed", "image", name, "error", err)
		http.Error(w, "image cache failed", http.StatusInternalServerError)
		return
	}
	if cached != nil {
		defer cached.Close()
		serveFile(w, r, cached)
		return
	}
	defer f.reader.Close()
	c.follow(w, r, f, path)
}

func serveFile(w http.ResponseWriter, r *http.Request, f *os.File) {
	st, err := f.Stat()
	if err != nil {
		http.Error(w, "stat image", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, "", st.ModTime(), f)
}

// attachment is one request following a download, with its own descriptor of the temporary file.
type attachment struct {
	*fill
	reader *os.File
}

// attach returns the cached file, or joins (or starts) the download of name.
func (c *Cache) attach(name, path string) (*attachment, *os.File, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f, err := os.Open(path); err == nil {
		return nil, f, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, nil, err
	}
	fl, ok := c.fills[name]
	if !ok {
		var err error
		if fl, err = c.start(name, path); err != nil {
			return nil, nil, err
		}
		c.fills[name] = fl
	}
	// The download renames the file under c.mu, so the temporary path still exists here.
	rd, err := os.Open(fl.tmp)
	if err != nil {
		return nil, nil, err
	}
	return &attachment{fill: fl, reader: rd}, nil, nil
}

// start creates the temporary file and starts the download; c.mu is held.
func (c *Cache) start(name, path string) (*fill, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(filepath.Dir(path), partPrefix+filepath.Base(path)+"-"+hex.EncodeToString(rnd[:]))
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	fl := newFill(tmp)
	go c.download(name, path, out, fl)
	return fl, nil
}

// download copies the upstream image into out and publishes it at path.
func (c *Cache) download(name, path string, out *os.File, fl *fill) {
	log := c.cfg.Log.With("image", name)
	start := time.Now()
	n, err := c.copyUpstream(name, out, fl)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	c.mu.Lock()
	if err == nil {
		err = os.Rename(fl.tmp, path)
	}
	if err != nil {
		os.Remove(fl.tmp)
	}
	delete(c.fills, name)
	c.mu.Unlock()
	if err != nil {
		log.Warn("image download failed", "bytes", n, "error", err)
	} else {
		log.Info("image cached", "bytes", n, "duration", time.Since(start))
	}
	fl.finish(err)
}

// upstreamError is a non-200 answer of the upstream.
type upstreamError struct{ status int }

func (e upstreamError) Error() string { return fmt.Sprintf("upstream answered %d", e.status) }

func (c *Cache) copyUpstream(name string, out *os.File, fl *fill) (int64, error) {
	u := *c.upstream
	u.Path += "/" + name
	req, err := http.NewRequestWithContext(c.ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.cfg.Client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("fetch %s: %w", u.Redacted(), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, upstreamError{resp.StatusCode}
	}
	fl.started(resp.ContentLength)
	buf := make([]byte, 256<<10)
	var n int64
	for {
		k, rerr := resp.Body.Read(buf)
		if k > 0 {
			if _, err := out.Write(buf[:k]); err != nil {
				return n, fmt.Errorf("write cache file: %w", err)
			}
			n += int64(k)
			fl.advance(n)
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return n, fmt.Errorf("read %s: %w", u.Redacted(), rerr)
		}
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return n, fmt.Errorf("read %s: got %d of %d bytes", u.Redacted(), n, resp.ContentLength)
	}
	if err := out.Sync(); err != nil {
		return n, fmt.Errorf("sync cache file: %w", err)
	}
	return n, nil
}
