// Package wipe scrubs disks before a machine is handed to the next tenant: discard (secure discard
// first) where the device supports it, the kernel's zero-out otherwise, plain zero writes as the
// last resort, then a verification that sampled blocks read back as zero.
package wipe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/metalforge/metalforge/pkg/api"
)

// Methods, in the order they are tried.
const (
	MethodSecureDiscard = "secure-discard"
	MethodDiscard       = "discard"
	MethodZeroOut       = "zeroout"
	MethodZero          = "zero"
)

// Options tune a wipe; the zero value is usable.
type Options struct {
	// Methods restricts and orders the methods to try; nil tries all.
	Methods []string
	// Samples is how many blocks verification reads (first, last and random ones); default 64.
	Samples int
	// Chunk bounds one discard, zero-out or write call, so progress is reported and ctx is
	// checked between chunks; default 1 GiB for discards and 64 MiB for writes.
	Chunk uint64
	// Progress is called after every chunk with the bytes done and the device size.
	Progress func(device string, done, total uint64)
	Log      *slog.Logger
}

// Progress is a logging progress callback, at most one line every interval per call site.
func Progress(log *slog.Logger, every time.Duration) func(string, uint64, uint64) {
	var last time.Time
	return func(dev string, done, total uint64) {
		if time.Since(last) < every && done != total {
			return
		}
		last = time.Now()
		log.Info("wipe progress", "device", dev, "done", done, "total", total)
	}
}

// All wipes every device in turn and returns the record to report; it stops at the first error.
func All(ctx context.Context, devices []string, opts Options) (api.WipeRecord, error) {
	rec := api.WipeRecord{Time: time.Now().UTC()}
	for _, dev := range devices {
		w, err := Device(ctx, dev, opts)
		if err != nil {
			return rec, err
		}
		rec.Disks = append(rec.Disks, w)
	}
	return rec, nil
}

// Device wipes one block device (or, for tests, a regular file) and verifies it. A method that
// the device does not support, or whose result does not verify as zero, falls through to the
// next one; the record names the method that verified.
func Device(ctx context.Context, path string, opts Options) (api.DiskWipe, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Samples <= 0 {
		opts.Samples = 64
	}
	methods := opts.Methods
	if methods == nil {
		methods = []string{MethodSecureDiscard, MethodDiscard, MethodZeroOut, MethodZero}
	}
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_EXCL|unix.O_CLOEXEC, 0)
	if err != nil {
		return api.DiskWipe{}, fmt.Errorf("wipe %s: %w", path, err)
	}
	defer f.Close()
	size, err := deviceSize(f)
	if err != nil {
		return api.DiskWipe{}, fmt.Errorf("wipe %s: %w", path, err)
	}
	rec := api.DiskWipe{Device: path, Bytes: size, Samples: opts.Samples}
	var errs []error
	for _, m := range methods {
		start := time.Now()
		err := run(ctx, f, m, size, opts)
		if err == nil {
			err = f.Sync()
		}
		if err == nil {
			err = verify(path, size, opts.Samples)
		}
		if ctx.Err() != nil {
			return rec, fmt.Errorf("wipe %s: %w", path, ctx.Err())
		}
		if err != nil {
			opts.Log.Info("wipe method failed", "device", path, "method", m, "err", err)
			errs = append(errs, fmt.Errorf("%s: %w", m, err))
			continue
		}
		opts.Log.Info("wiped", "device", path, "method", m, "bytes", size, "seconds", time.Since(start).Seconds())
		rec.Method, rec.Verified = m, true
		return rec, nil
	}
	return rec, fmt.Errorf("wipe %s: no method worked: %w", path, errors.Join(errs...))
}

// deviceSize is BLKGETSIZE64 for block devices and the length of regular files.
func deviceSize(f *os.File) (uint64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if fi.Mode().IsRegular() {
		return uint64(fi.Size()), nil
	}
	if fi.Mode()&os.ModeDevice == 0 || fi.Mode()&os.ModeCharDevice != 0 {
		return 0, fmt.Errorf("not a block device: %s", fi.Mode())
	}
	var size uint64
	if err := ioctl(f, unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&size))); err != nil {
		return 0, fmt.Errorf("device size: %w", err)
	}
	return size, nil
}

func ioctl(f *os.File, req, arg uintptr) error {
	sc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var errno unix.Errno
	if err := sc.Control(func(fd uintptr) {
		_, _, errno = unix.Syscall(unix.SYS_IOCTL, fd, req, arg)
	}); err != nil {
		return err
	}
	if errno != 0 {
		return errno
	}
	return nil
}

// run applies one method over the whole device in chunks.
func run(ctx context.Context, f *os.File, method string, size uint64, opts Options) error {
	var req uintptr
	switch method {
	case MethodSecureDiscard:
		req = unix.BLKSECDISCARD
	case MethodDiscard:
		req = unix.BLKDISCARD
	case MethodZeroOut:
		req = unix.BLKZEROOUT
	case MethodZero:
		return writeZeros(ctx, f, size, opts)
	default:
		return fmt.Errorf("unknown method %q", method)
	}
	chunk := opts.Chunk
	if chunk == 0 {
		chunk = 1 << 30
	}
	chunk &^= 511 // ranges must be sector-aligned
	if chunk == 0 {
		chunk = 512
	}
	for off := uint64(0); off < size; off += chunk {
		if err := ctx.Err(); err != nil {
			return err
		}
		r := [2]uint64{off, min(chunk, size-off)}
		if err := ioctl(f, req, uintptr(unsafe.Pointer(&r))); err != nil {
			return err
		}
		if opts.Progress != nil {
			opts.Progress(f.Name(), off+r[1], size)
		}
	}
	return nil
}

func writeZeros(ctx context.Context, f *os.File, size uint64, opts Options) error {
	chunk := opts.Chunk
	if chunk == 0 || chunk > 64<<20 {
		chunk = 64 << 20
	}
	buf := make([]byte, min(chunk, 4<<20))
	for off := uint64(0); off < size; {
		if err := ctx.Err(); err != nil {
			return err
		}
		end := min(off+chunk, size)
		for off < end {
			n, err := f.WriteAt(buf[:min(uint64(len(buf)), end-off)], int64(off))
			if err != nil {
				return fmt.Errorf("write zeros at %d: %w", off, err)
			}
			off += uint64(n)
		}
		if opts.Progress != nil {
			opts.Progress(f.Name(), off, size)
		}
	}
	return nil
}

// verify reads samples blocks of 4 KiB (the first, the last, the rest at random 4 KiB-aligned
// offsets) with O_DIRECT where the device allows it, so the reads come from the device and not
// from the page cache, and fails on the first non-zero byte.
func verify(path string, size uint64, samples int) error {
	const block = 4096
	if size == 0 {
		return nil
	}
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		f, err = os.OpenFile(path, os.O_RDONLY|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	defer f.Close()
	raw := make([]byte, 2*block)
	buf := raw[block-int(uintptr(unsafe.Pointer(&raw[0]))%block):][:block] // aligned for O_DIRECT
	blocks := (size + block - 1) / block
	for i := range samples {
		var n uint64
		switch i {
		case 0:
		case 1:
			n = blocks - 1
		default:
			n = rand.Uint64N(blocks)
		}
		off := n * block
		want := int(min(block, size-off))
		got, err := f.ReadAt(buf[:block], int64(off))
		if got < want {
			return fmt.Errorf("verify: read %d bytes at %d: %w", got, off, err)
		}
		for j, b := range buf[:want] {
			if b != 0 {
				return fmt.Errorf("verify: byte %d is %#x, want 0", off+uint64(j), b)
			}
		}
	}
	return nil
}
