package osinit

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// ext2/3/4 superblock: 1024 bytes into the device; magic at 0x38, UUID at 0x68.
const (
	superblockOffset = 1024
	extMagicOffset   = 0x38
	extUUIDOffset    = 0x68
	extMagic         = 0xEF53
)

// ErrNotExt means the device holds no ext2/3/4 file system.
var ErrNotExt = errors.New("no ext file system")

// ExtUUID reads the file system UUID of an ext2/3/4 superblock from r, formatted the way blkid
// prints it (lower-case 8-4-4-4-12).
func ExtUUID(r io.ReaderAt) (string, error) {
	var sb [0x78]byte
	if _, err := r.ReadAt(sb[:], superblockOffset); err != nil {
		return "", fmt.Errorf("read superblock: %w", err)
	}
	if binary.LittleEndian.Uint16(sb[extMagicOffset:]) != extMagic {
		return "", ErrNotExt
	}
	return FormatUUID(sb[extUUIDOffset : extUUIDOffset+16]), nil
}

// FormatUUID formats 16 bytes as 8-4-4-4-12 lower-case hex.
func FormatUUID(b []byte) string {
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// FindByUUID returns the /dev path of the block device whose ext file system has uuid. It lists
// sysBlock (/sys/class/block) and opens devDir/<name> (devtmpfs creates the nodes).
func FindByUUID(sysBlock, devDir, uuid string) (string, error) {
	want := strings.ToLower(strings.TrimSpace(uuid))
	entries, err := os.ReadDir(sysBlock)
	if err != nil {
		return "", fmt.Errorf("list block devices: %w", err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	// Partitions (vda2) after whole disks (vda) sorts fine; the UUID decides anyway.
	sort.Strings(names)
	for _, name := range names {
		if strings.HasPrefix(name, "loop") || strings.HasPrefix(name, "ram") {
			continue
		}
		path := filepath.Join(devDir, name)
		got, err := uuidOf(path)
		if err != nil {
			continue
		}
		if got == want {
			return path, nil
		}
	}
	return "", fmt.Errorf("no block device with file system UUID %s among %d", want, len(names))
}

func uuidOf(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	return ExtUUID(f)
}

// WaitRoot resolves root (UUID=<uuid> or /dev/<name>) to a device path, polling until it appears
// (drivers probe asynchronously) or ctx ends.
func WaitRoot(ctx context.Context, sysBlock, devDir, root string) (string, error) {
	for {
		var path string
		var err error
		if uuid, ok := strings.CutPrefix(root, "UUID="); ok {
			path, err = FindByUUID(sysBlock, devDir, uuid)
		} else if _, err = os.Stat(root); err == nil {
			path = root
		}
		if err == nil {
			return path, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("wait for root %s: %w (last: %w)", root, ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
