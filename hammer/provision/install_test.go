package provision

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"github.com/metalforge/metalforge/hammer/disk"
	"github.com/metalforge/metalforge/hammer/install"
	"github.com/metalforge/metalforge/hammer/looptest"
	"github.com/metalforge/metalforge/hammer/wipe"
	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/phonehome"
)

// osImage is a tiny "OS": a kernel, an initrd and some files, as tar.zst.
func osImage(t *testing.T) []byte {
	t.Helper()
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	for _, f := range []struct {
		name string
		dir  bool
		body string
	}{
		{"./", true, ""}, {"./boot/", true, ""}, {"./etc/", true, ""},
		{"./boot/vmlinuz-6.1.0-28-amd64", false, strings.Repeat("K", 3<<20)},
		{"./boot/initrd.img-6.1.0-28-amd64", false, strings.Repeat("I", 1<<20)},
		{"./etc/os-release", false, "ID=debian\n"},
	} {
		h := &tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body)), Typeflag: tar.TypeReg, ModTime: time.Now()}
		if f.dir {
			h.Mode, h.Typeflag = 0o755, tar.TypeDir
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(f.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	var zb bytes.Buffer
	zw, err := zstd.NewWriter(&zb)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(tb.Bytes()) //nolint:errcheck // bytes.Buffer does not fail
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return zb.Bytes()
}

// loopInstall is a harness whose layout lives on a loop device, with loop slices standing in
// for the partitions (the host kernel may parse no GPT).
func loopInstall(t *testing.T) (*harness, string, *sync.Map, api.InstallSpec, []byte) {
	t.Helper()
	dev := looptest.New(t, 128<<20)
	if _, err := exec.LookPath("mke2fs"); err != nil {
		t.Skip("mke2fs not installed")
	}
	h := newHarness(t)
	nodes := &sync.Map{}
	h.cfg.Partitions = func(_ context.Context, d string, tab disk.Table) (map[string]string, error) {
		out := map[string]string{}
		for _, p := range tab.Partitions {
			name := disk.PartitionDevice(d, p.Number)
			out[name] = looptest.Slice(t, d, int64(p.First*tab.SectorSize), int64((p.End-p.First+1)*tab.SectorSize))
			nodes.Store(name, out[name])
		}
		return out, nil
	}
	img := osImage(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "os.tar.zst", time.Now(), bytes.NewReader(img))
	}))
	t.Cleanup(srv.Close)
	sum := sha256.Sum256(img)
	spec := api.InstallSpec{
		Machine: api.Machine{Allocation: &api.MachineAllocation{ProjectID: "p", Hostname: "worker-7", ImageID: "debian-12",
			SSHPubKeys: []string{"ssh-ed25519 AAAA test"}}},
		Image: api.Image{Meta: api.Meta{ID: "debian-12"}, URL: srv.URL + "/debian-12.tar.zst", SHA256: hex.EncodeToString(sum[:])},
		Layout: &api.FilesystemLayout{Meta: api.Meta{ID: "l1"},
			Disks: []api.Disk{{Device: dev, Partitions: []api.DiskPartition{{Number: 1, Size: 16, Label: "swap", GPTType: "swap"}, {Number: 2, Label: "root"}}}},
			Filesystems: []api.Filesystem{
				{Device: disk.PartitionDevice(dev, 1), Format: "swap"},
				{Device: disk.PartitionDevice(dev, 2), Format: "ext4", Path: "/", Label: "root"},
			}},
		DNSServers:     []string{"10.0.2.3"},
		PhoneHomeToken: "phone-home-secret",
	}
	return h, dev, nodes, spec, img
}

// TestRunInstallLoop installs an image onto a loop device end to end against the fake boot
// service, with the real wipe, and checks the installed tree.
func TestRunInstallLoop(t *testing.T) {
	h, dev, nodes, spec, _ := loopInstall(t)
	h.cfg.Wipe = func(ctx context.Context, devices []string) (api.WipeRecord, error) {
		return wipe.All(ctx, []string{dev}, wipe.Options{}) // the inventory's /dev/vda stands for the loop device
	}
	id := machineID(t)
	done := h.run(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.fake.AwaitWaiters(ctx, id, 1); err != nil {
		t.Fatal(err)
	}
	if err := h.fake.Allocate(id, spec); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	reports := h.fake.Reports(id)
	if len(reports) != 1 || !reports[0].Success || reports[0].BootInfo == nil {
		t.Fatalf("reports = %+v", reports)
	}
	bi := reports[0].BootInfo
	if bi.Kernel != "/boot/vmlinuz-6.1.0-28-amd64" || bi.Initrd != "/boot/initrd.img-6.1.0-28-amd64" || bi.PrimaryDisk != dev ||
		bi.OSPartition != disk.PartitionDevice(dev, 2) || bi.ImageID != "debian-12" {
		t.Errorf("boot info = %+v", bi)
	}
	if !strings.HasPrefix(bi.Cmdline, "root=UUID=") || !strings.HasSuffix(bi.Cmdline, " rw console=ttyS0 mf.api="+h.cfg.API) {
		t.Errorf("cmdline = %q", bi.Cmdline)
	}
	names := eventNames(h.fake.Events(id))
	if names[len(names)-1] != api.EventBootingNewKernel || !strings.Contains(strings.Join(names, ","), "Waiting,Installing") {
		t.Errorf("events = %v", names)
	}

	// Mount the installed root and look inside.
	node, _ := nodes.Load(disk.PartitionDevice(dev, 2))
	mnt := t.TempDir()
	if err := unix.Mount(node.(string), mnt, "ext4", unix.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(mnt, 0) //nolint:errcheck // test cleanup
	if b, _ := os.ReadFile(filepath.Join(mnt, "etc/hostname")); string(b) != "worker-7\n" {
		t.Errorf("hostname = %q", b)
	}
	var ph phonehome.File
	b, _ := os.ReadFile(filepath.Join(mnt, install.PhoneHomePath))
	if err := json.Unmarshal(b, &ph); err != nil || ph.Token != "phone-home-secret" || ph.MachineID != id || ph.API != h.cfg.API {
		t.Errorf("phonehome = %s (%v)", b, err)
	}
	if fi, err := os.Stat(filepath.Join(mnt, "boot/vmlinuz-6.1.0-28-amd64")); err != nil || fi.Size() != 3<<20 {
		t.Errorf("kernel: %v %v", fi, err)
	}
	fstab, _ := os.ReadFile(filepath.Join(mnt, "etc/fstab"))
	if !strings.Contains(string(fstab), strings.Fields(bi.Cmdline)[0][len("root="):]+" / ext4") {
		t.Errorf("fstab does not mount the root by the reported uuid:\n%s", fstab)
	}
}

// TestRunInstallBadChecksum: the image does not match its sha256, so the written file system is
// wiped and the failure reported.
func TestRunInstallBadChecksum(t *testing.T) {
	h, dev, nodes, spec, _ := loopInstall(t)
	var wipes [][]string
	h.cfg.Wipe = func(ctx context.Context, devices []string) (api.WipeRecord, error) {
		wipes = append(wipes, devices)
		if devices[0] != dev {
			devices = []string{dev}
		}
		return wipe.All(ctx, devices, wipe.Options{})
	}
	spec.Image.SHA256 = strings.Repeat("0", 64)
	id := machineID(t)
	done := h.run(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.fake.AwaitWaiters(ctx, id, 1); err != nil {
		t.Fatal(err)
	}
	if err := h.fake.Allocate(id, spec); err != nil {
		t.Fatal(err)
	}
	err := <-done
	if err == nil || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Fatalf("Run = %v, want a checksum mismatch", err)
	}
	if len(wipes) != 2 || wipes[1][0] != dev {
		t.Errorf("wipes = %v, want the free-machine wipe and one of %s", wipes, dev)
	}
	if r := h.fake.Reports(id); len(r) != 1 || r[0].Success {
		t.Errorf("reports = %+v", r)
	}
	node, _ := nodes.Load(disk.PartitionDevice(dev, 2))
	out, err := exec.Command("blkid", node.(string)).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("the root partition still holds a file system after the wipe: %s (%v)", out, err)
	}
}
