package boot_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pin/tftp/v3"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/boot"
)

// loopConfig is a boot server without DHCP on loopback; scripts name 10.90.0.1 as the server.
func loopConfig(apiAddr string) boot.Config {
	return boot.Config{HTTPListen: "127.0.0.1:0", HTTPAddr: "10.90.0.1", TFTPListen: "127.0.0.1:0",
		API: apiAddr, Token: bootToken, PartitionID: partition, HammerToken: "hammer-secret",
		HammerAPI: "metal-api.example:50051", RetryDelay: 7 * time.Second}
}

func get(t *testing.T, url string, header ...string) (*http.Response, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// TestScripts: the iPXE scripts for every boot decision and for errors, against the fake boot
// service.
func TestScripts(t *testing.T) {
	machines, apiAddr := fakeAPI(t)
	machines.Hammer = api.BootDecision{Action: api.BootActionHammer, Kernel: "vmlinuz",
		Initrd: "https://images.example/hammer.img", Cmdline: "console=ttyS0,115200 ip=dhcp"}
	machines.Put(api.Machine{Meta: api.Meta{ID: "m-installed"}, PartitionID: partition,
		Hardware:   api.MachineHardware{NICs: []api.MachineNIC{{Name: "eth0", MAC: "52:54:00:00:05:02"}}},
		Allocation: &api.MachineAllocation{ProjectID: "p", BootInfo: &api.BootInfo{Kernel: "/boot/vmlinuz"}}})
	machines.Put(api.Machine{Meta: api.Meta{ID: "m-free"}, PartitionID: partition,
		Hardware: api.MachineHardware{NICs: []api.MachineNIC{{Name: "eth0", MAC: "52:54:00:00:05:03"}}}})
	base := "http://" + start(t, nil, func() boot.Config {
		c := loopConfig(apiAddr)
		c.TFTPDir = tftpDir(t)
		return c
	}()).HTTP.String()

	for _, tc := range []struct {
		name, path string
		fail       error
		status     int
	}{
		{"boot", "/boot.ipxe", nil, 200},
		{"default", "/default.ipxe", nil, 200},
		{"hammer-unknown", "/host/52-54-00-00-05-01.ipxe", nil, 200},
		{"hammer-known", "/host/52-54-00-00-05-03.ipxe", nil, 200},
		{"disk", "/host/52-54-00-00-05-02.ipxe", nil, 200},
		{"error", "/host/52-54-00-00-05-01.ipxe", errors.New("database down"), 200},
		{"bad-mac", "/host/not-a-mac.ipxe", nil, 404},
		{"no-suffix", "/host/52-54-00-00-05-01", nil, 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			machines.Fail("BootDecision", tc.fail)
			defer machines.Fail("BootDecision", nil)
			resp, body := get(t, base+tc.path)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if tc.status == 200 {
				golden(t, "script-"+tc.name+".ipxe", string(body))
			}
		})
	}
}

// TestScriptRealAPI: the hammer script built from the boot config of a partition in a real
// metal-api.
func TestScriptRealAPI(t *testing.T) {
	apiAddr := realAPI(t, api.Partition{Meta: api.Meta{ID: partition}, Boot: api.BootConfig{
		KernelURL: "http://images.example/metal/vmlinuz", InitrdURL: "http://images.example/metal/hammer.img",
		Cmdline: "console=ttyS0 quiet"}})
	cfg := loopConfig(apiAddr)
	cfg.Token, cfg.DisableTFTP = adminTok, true
	base := "http://" + start(t, nil, cfg).HTTP.String()
	resp, body := get(t, base+"/host/52-54-00-00-06-01.ipxe")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	golden(t, "script-real-api.ipxe", string(body))
}

// TestAssets: boot assets and boot loaders over HTTP with range requests; names that leave the
// directory are refused.
func TestAssets(t *testing.T) {
	_, apiAddr := fakeAPI(t)
	root := t.TempDir()
	assets := filepath.Join(root, "assets")
	kernel := make([]byte, 1<<20)
	_, _ = rand.Read(kernel)
	if err := os.MkdirAll(filepath.Join(assets, "debian"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"debian/vmlinuz": kernel, "../secret": []byte("secret")} {
		if err := os.WriteFile(filepath.Join(assets, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(root, "secret"), filepath.Join(assets, "escape")); err != nil {
		t.Fatal(err)
	}
	cfg := loopConfig(apiAddr)
	cfg.AssetsDir, cfg.TFTPDir = assets, tftpDir(t)
	base := "http://" + start(t, nil, cfg).HTTP.String()

	resp, body := get(t, base+"/assets/debian/vmlinuz", "Range", "bytes=1000-1999")
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, kernel[1000:2000]) {
		t.Errorf("range: status %d, %d bytes, equal %v", resp.StatusCode, len(body), bytes.Equal(body, kernel[1000:2000]))
	}
	if got, want := resp.Header.Get("Content-Range"), fmt.Sprintf("bytes 1000-1999/%d", len(kernel)); got != want {
		t.Errorf("Content-Range %q, want %q", got, want)
	}
	if resp, body = get(t, base+"/assets/debian/vmlinuz"); resp.StatusCode != 200 || !bytes.Equal(body, kernel) {
		t.Errorf("whole file: status %d, %d bytes", resp.StatusCode, len(body))
	}
	if resp, body = get(t, base+"/ipxe/undionly.kpxe"); resp.StatusCode != 200 || string(body) != "fake undionly.kpxe" {
		t.Errorf("boot loader over http: status %d, %q", resp.StatusCode, body)
	}
	for _, p := range []string{"/assets/..%2fsecret", "/assets/debian/..%2f..%2fsecret", "/assets/escape", "/assets/debian", "/ipxe/..%2fsecret"} {
		if resp, body := get(t, base+p); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404: %q", p, resp.StatusCode, body)
		}
	}
}

// TestImageCache: two concurrent first requests for an image share one upstream download and
// both get every byte while it streams; a later request (and a range request) is served from the
// cache; the upstream saw one request.
func TestImageCache(t *testing.T) {
	_, apiAddr := fakeAPI(t)
	image := make([]byte, 3<<20)
	_, _ = rand.Read(image)
	var fetches atomic.Int32
	release := make(chan struct{})
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/debian/12.tar.zst" {
			http.NotFound(w, r)
			return
		}
		fetches.Add(1)
		w.Header().Set("Content-Length", fmt.Sprint(len(image)))
		half := len(image) / 2
		_, _ = w.Write(image[:half])
		w.(http.Flusher).Flush()
		select { // hold the rest back until both clients are attached
		case <-release:
		case <-time.After(15 * time.Second):
		}
		_, _ = w.Write(image[half:])
	}))
	defer upstream.Close()
	cacheDir := t.TempDir()
	cfg := loopConfig(apiAddr)
	cfg.DisableTFTP, cfg.ImageUpstream, cfg.CacheDir = true, upstream.URL, cacheDir
	base := "http://" + start(t, nil, cfg).HTTP.String()
	url := base + "/images/debian/12.tar.zst"

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	halfway := make(chan struct{}, 2)
	bodies := make([][]byte, 2)
	errs := make([]error, 2)
	for i := range 2 {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				errs[i] = err
				halfway <- struct{}{}
				return
			}
			defer resp.Body.Close()
			first := make([]byte, len(image)/2)
			_, err = io.ReadFull(resp.Body, first)
			halfway <- struct{}{}
			if err != nil {
				errs[i] = err
				return
			}
			rest, err := io.ReadAll(resp.Body)
			bodies[i], errs[i] = append(first, rest...), err
		})
	}
	for range 2 {
		select {
		case <-halfway:
		case <-ctx.Done():
			t.Fatal("clients did not get the first half")
		}
	}
	close(release)
	wg.Wait()
	for i := range 2 {
		if errs[i] != nil || !bytes.Equal(bodies[i], image) {
			t.Errorf("client %d: %v, %d bytes, equal %v", i, errs[i], len(bodies[i]), bytes.Equal(bodies[i], image))
		}
	}

	resp, body := get(t, url)
	if resp.StatusCode != 200 || !bytes.Equal(body, image) {
		t.Errorf("cached: status %d, %d bytes", resp.StatusCode, len(body))
	}
	resp, body = get(t, url, "Range", "bytes=100-199")
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, image[100:200]) {
		t.Errorf("cached range: status %d, %d bytes", resp.StatusCode, len(body))
	}
	if n := fetches.Load(); n != 1 {
		t.Errorf("upstream fetched %d times, want 1", n)
	}
	if cached, err := os.ReadFile(filepath.Join(cacheDir, "debian", "12.tar.zst")); err != nil || !bytes.Equal(cached, image) {
		t.Errorf("cache file: %v, %d bytes", err, len(cached))
	}
	if left, _ := filepath.Glob(filepath.Join(cacheDir, "debian", ".part-*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
	for _, p := range []string{"/images/debian/missing.img", "/images/..%2fetc%2fpasswd", "/images/.hidden"} {
		if resp, _ := get(t, base+p); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", p, resp.StatusCode)
		}
	}
}

// TestTFTP: the real iPXE loaders from the Debian ipxe package (the default directory) over
// TFTP, with the size option PXE ROMs ask for; names outside the directory are refused.
func TestTFTP(t *testing.T) {
	want, err := os.ReadFile(filepath.Join(boot.DefaultTFTPDir, "undionly.kpxe"))
	if errors.Is(err, os.ErrNotExist) {
		if os.Geteuid() != 0 {
			t.Skip("skipping: the ipxe package is not installed and installing it needs root")
		}
		if out, err := exec.Command("../../hack/deps.sh", "ipxe").CombinedOutput(); err != nil {
			t.Fatalf("hack/deps.sh ipxe: %v: %s", err, out)
		}
		want, err = os.ReadFile(filepath.Join(boot.DefaultTFTPDir, "undionly.kpxe"))
	}
	if err != nil {
		t.Fatal(err)
	}
	_, apiAddr := fakeAPI(t)
	addr := start(t, nil, loopConfig(apiAddr)).TFTP.String()

	c, err := tftp.NewClient(addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetTimeout(time.Second)
	c.SetRetries(3)
	c.RequestTSize(true)
	for _, name := range []string{"undionly.kpxe", "/undionly.kpxe"} {
		wt, err := c.Receive(name, "octet")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if size, ok := wt.(tftp.IncomingTransfer).Size(); !ok || size != int64(len(want)) {
			t.Errorf("%s: tsize %d (%v), want %d", name, size, ok, len(want))
		}
		var got bytes.Buffer
		if _, err := wt.WriteTo(&got); err != nil || !bytes.Equal(got.Bytes(), want) {
			t.Errorf("%s: %v, %d bytes, want %d", name, err, got.Len(), len(want))
		}
	}
	for _, name := range []string{"../../etc/passwd", "/../../../etc/passwd", "..\\..\\etc\\passwd", "missing.efi", "qemu"} {
		if wt, err := c.Receive(name, "octet"); err == nil {
			var got bytes.Buffer
			_, err = wt.WriteTo(&got)
			t.Errorf("%s: got %d bytes (%v), want a refusal", name, got.Len(), err)
		}
	}
	if _, err := c.Send("upload.bin", "octet"); err == nil {
		t.Errorf("write request accepted")
	}
}
