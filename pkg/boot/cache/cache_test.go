package cache

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

func TestValidName(t *testing.T) {
	for name, ok := range map[string]bool{
		"debian-12.tar.zst": true, "debian/12/rootfs.tar.zst": true, "a+b_c-1.0": true,
		"": false, "../x": false, "a/../b": false, ".hidden": false, "a/.part-x": false, "/abs": false,
		"a//b": false, "a b": false, "a\\b": false, "a/": false,
	} {
		if got := ValidName(name); got != ok {
			t.Errorf("ValidName(%q) = %v, want %v", name, got, ok)
		}
	}
}

// serve runs a cache with upstream h on a test server.
func serve(t *testing.T, h http.HandlerFunc) (string, string) {
	up := httptest.NewServer(h)
	t.Cleanup(up.Close)
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c, err := New(ctx, Config{Dir: dir, Upstream: up.URL})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /images/{name...}", c)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL + "/images/", dir
}

func fetch(t *testing.T, url string) (int, []byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// TestUpstreamFailures: an upstream error is passed on and nothing is cached, so the next
// request tries again; a good image is fetched once.
func TestUpstreamFailures(t *testing.T) {
	var calls atomic.Int32
	data := []byte("0123456789")
	base, dir := serve(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		switch r.URL.Path {
		case "/broken.img":
			http.Error(w, "boom", http.StatusInternalServerError)
		case "/short.img":
			w.Header().Set("Content-Length", "100")
			_, _ = w.Write(data) // then the handler returns: the body is short
		case "/good.img":
			_, _ = w.Write(data) // no Content-Length: chunked
		default:
			http.NotFound(w, r)
		}
	})
	if code, _, _ := fetch(t, base+"broken.img"); code != http.StatusBadGateway {
		t.Errorf("broken upstream: %d, want 502", code)
	}
	if code, _, _ := fetch(t, base+"nope.img"); code != http.StatusNotFound {
		t.Errorf("missing upstream: %d, want 404", code)
	}
	// Depending on whether the short download already failed when the request arrives, the client
	// sees a cut connection or a 502; never a complete 200.
	if code, body, err := fetch(t, base+"short.img"); err == nil && code == http.StatusOK {
		t.Errorf("short upstream body: got %d bytes with 200 and no error", len(body))
	}
	if _, err := os.Stat(filepath.Join(dir, "short.img")); !os.IsNotExist(err) {
		t.Errorf("short download was cached: %v", err)
	}
	if code, body, err := fetch(t, base+"good.img"); err != nil || code != 200 || string(body) != string(data) {
		t.Errorf("good: %d %q %v", code, body, err)
	}
	before := calls.Load()
	if code, body, _ := fetch(t, base+"good.img"); code != 200 || string(body) != string(data) || calls.Load() != before {
		t.Errorf("cached good: %d %q, upstream calls %d -> %d", code, body, before, calls.Load())
	}
	if code, _, _ := fetch(t, base+"broken.img"); code != http.StatusBadGateway || calls.Load() != before+1 {
		t.Errorf("broken again: %d, upstream calls %d -> %d: want 502 after a new attempt", code, before, calls.Load())
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".part-*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// TestClientGoneDownloadGoesOn: the first client hangs up mid-stream; the download still
// completes for the image's later readers.
func TestClientGoneDownloadGoesOn(t *testing.T) {
	data := make([]byte, 1<<20)
	_, _ = rand.Read(data)
	release := make(chan struct{})
	var calls atomic.Int32
	base, dir := serve(t, func(w http.ResponseWriter, _ *http.Request) {
		calls.Add(1)
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		_, _ = w.Write(data[:1000])
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-time.After(10 * time.Second):
		}
		_, _ = w.Write(data[1000:])
	})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"img", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	cancel()
	resp.Body.Close()
	close(release)
	ok := false
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(dir, "img")); err == nil {
			ok = true
			break
		}
	}
	if !ok {
		t.Fatal("download did not complete after the client left")
	}
	if code, body, err := fetch(t, base+"img"); err != nil || code != 200 || string(body) != string(data) || calls.Load() != 1 {
		t.Errorf("after the download: %d, %d bytes, %v, upstream calls %d", code, len(body), err, calls.Load())
	}
}
