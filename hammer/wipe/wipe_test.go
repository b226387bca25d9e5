package wipe

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/metalforge/metalforge/hammer/looptest"
	"github.com/metalforge/metalforge/pkg/api"
)

var marker = []byte("TENANT-SECRET-DATA")

// writeMarkers puts the marker at the start, the middle and the end of a device or file.
func writeMarkers(t *testing.T, path string, size int64) []int64 {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	offs := []int64{0, size / 2, size - int64(len(marker))}
	for _, off := range offs {
		if _, err := f.WriteAt(marker, off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	return offs
}

// assertNoMarkers reads the device back through a fresh descriptor.
func assertNoMarkers(t *testing.T, path string, offs []int64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, len(marker))
	for _, off := range offs {
		if _, err := f.ReadAt(buf, off); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf, make([]byte, len(marker))) {
			t.Errorf("%s at %d still holds %q", path, off, buf)
		}
	}
}

func TestDeviceLoop(t *testing.T) {
	const size = 64 << 20
	for _, tt := range []struct {
		name    string
		methods []string
		want    string
	}{
		// Loop devices over ext4 files do not offer secure discard; discard punches holes.
		{"default order", nil, MethodDiscard},
		{"zeroout", []string{MethodZeroOut}, MethodZeroOut},
		{"zero writes", []string{MethodZero}, MethodZero},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dev := looptest.New(t, size)
			offs := writeMarkers(t, dev, size)
			var progressed uint64
			rec, err := Device(context.Background(), dev, Options{
				Methods:  tt.methods,
				Samples:  16,
				Chunk:    16 << 20,
				Progress: func(_ string, done, total uint64) { progressed = done },
			})
			if err != nil {
				t.Fatal(err)
			}
			want := api.DiskWipe{Device: dev, Method: tt.want, Bytes: size, Verified: true, Samples: 16}
			if rec != want {
				t.Errorf("record = %+v, want %+v", rec, want)
			}
			if progressed != size {
				t.Errorf("last progress = %d, want %d", progressed, size)
			}
			assertNoMarkers(t, dev, offs)
		})
	}
}

func TestAllLoop(t *testing.T) {
	a, b := looptest.New(t, 8<<20), looptest.New(t, 16<<20)
	offs := writeMarkers(t, b, 16<<20)
	rec, err := All(context.Background(), []string{a, b}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Disks) != 2 || rec.Disks[1].Bytes != 16<<20 || !rec.Disks[0].Verified || rec.Time.IsZero() {
		t.Errorf("record = %+v", rec)
	}
	assertNoMarkers(t, b, offs)
}

// TestDeviceFile wipes a regular file: the block ioctls do not apply, so it falls to zero writes.
func TestDeviceFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "disk")
	const size = 3<<20 + 512
	if err := os.WriteFile(path, bytes.Repeat([]byte{0xa5}, size), 0o600); err != nil {
		t.Fatal(err)
	}
	rec, err := Device(context.Background(), path, Options{Samples: 8})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Method != MethodZero || !rec.Verified || rec.Bytes != size {
		t.Errorf("record = %+v", rec)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, make([]byte, size)) {
		t.Error("file is not all zeros")
	}
}

func TestVerifyFindsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "disk")
	b := make([]byte, 1<<20)
	b[len(b)-1] = 1 // in the last block, which is always sampled
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := verify(path, uint64(len(b)), 2); err == nil || !strings.Contains(err.Error(), "byte 1048575") {
		t.Errorf("verify = %v, want the non-zero byte reported", err)
	}
}

func TestDeviceErrors(t *testing.T) {
	if _, err := Device(context.Background(), "/nonexistent/disk", Options{}); err == nil {
		t.Error("missing device: want error")
	}
	if _, err := Device(context.Background(), "/dev/null", Options{}); err == nil {
		t.Error("character device: want error")
	}
	path := filepath.Join(t.TempDir(), "disk")
	if err := os.WriteFile(path, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Device(context.Background(), path, Options{Methods: []string{"shred"}}); err == nil || !strings.Contains(err.Error(), "unknown method") {
		t.Errorf("unknown method: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Device(ctx, path, Options{}); err == nil {
		t.Error("cancelled context: want error")
	}
}
