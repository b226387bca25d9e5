package lab_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/lab"
)

// rest talks JSON to the lab's metal-api with the admin token.
type rest struct {
	t testing.TB
	l *lab.Lab
}

func (r rest) do(ctx context.Context, method, path string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.l.URL()+path, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+r.l.Tokens().Admin)
	resp, err := r.l.HTTPClient().Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode >= 300 {
		return resp.StatusCode, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	if out != nil {
		return resp.StatusCode, json.Unmarshal(raw, out)
	}
	return resp.StatusCode, nil
}

func (r rest) must(ctx context.Context, method, path string, body, out any) {
	r.t.Helper()
	if _, err := r.do(ctx, method, path, body, out); err != nil {
		r.t.Fatal(err)
	}
}

func (r rest) machine(ctx context.Context, id string) *api.Machine {
	var m api.Machine
	if _, err := r.do(ctx, "GET", "/v1/machine/"+id, nil, &m); err != nil {
		return nil
	}
	return &m
}

func (r rest) events(ctx context.Context, id string) []api.ProvisioningEvent {
	var log api.MachineEventLog
	if _, err := r.do(ctx, "GET", "/v1/machine/"+id+"/events", nil, &log); err != nil {
		return nil
	}
	return log.Events
}

// phases records when provisioning events first happened after a point in time.
type phases struct {
	t      testing.TB
	r      rest
	id     string
	report []string
}

// waitEvent waits until the machine logs ev after since and returns its server-side time.
func (p *phases) waitEvent(ctx context.Context, since time.Time, ev string, limit time.Duration) api.ProvisioningEvent {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		for _, e := range p.r.events(ctx, p.id) {
			if e.Event == ev && e.Time.After(since) {
				return e
			}
			if e.Event == api.EventCrashed && e.Time.After(since) && ev != api.EventCrashed {
				p.t.Fatalf("machine crashed while waiting for %q: %s", ev, e.Message)
			}
		}
		select {
		case <-ctx.Done():
			p.t.Fatalf("no %q event within %v; events: %+v", ev, limit, p.r.events(context.Background(), p.id))
		case <-time.After(time.Second):
		}
	}
}

func (p *phases) add(name string, from, to time.Time) {
	d := to.Sub(from).Round(100 * time.Millisecond)
	p.report = append(p.report, fmt.Sprintf("%-34s %6.1f s", name, d.Seconds()))
}

// TestEndToEnd walks one QEMU machine through its whole life: power on through its BMC → PXE →
// Registering → Waiting → allocate → Installing → Booting New Kernel → Phoned Home (the installed
// OS) → free → the hammer wipes the disk and waits again (a marker the first tenant wrote is gone
// from the raw disk) → allocate for a second tenant → Phoned Home; then an image with a bad checksum
// ends in a clear Crashed event and the machine is reusable.
func TestEndToEnd(t *testing.T) {
	requireLab(t)
	cfg := testConfig(t, 1)
	cfg.Images = []string{"small"}
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	start := time.Now()
	l := up(t, ctx, cfg)
	r := rest{t: t, l: l}
	id := l.UUIDs()[0]
	p := &phases{t: t, r: r, id: id}
	defer func() {
		if t.Failed() {
			t.Logf("console of the machine:\n%s", tail(console(l, 0), 120))
		}
		t.Logf("phase timings (TCG, one VM):\n  %s", strings.Join(p.report, "\n  "))
	}()
	p.add("lab up (build, seed, power on)", start, time.Now())

	// Discover: the lab powered the machine on through its BMC. metal-api does not know the MAC yet,
	// so the first PXE boot leaves no event; the reboot after free below shows the PXE phase.
	poweredOn := time.Now()
	reg := p.waitEvent(ctx, start, api.EventRegistering, 4*time.Minute)
	wait := p.waitEvent(ctx, start, api.EventWaiting, 4*time.Minute)
	p.add("power on → registered (PXE, hammer)", poweredOn, reg.Time)
	p.add("registered → waiting (incl. wipe)", reg.Time, wait.Time)
	m := r.machine(ctx, id)
	if m == nil || m.SizeID != "v1-small-x86" || m.BMC.Address == "" || m.LastWipe == nil {
		t.Fatalf("registered machine %+v: want size v1-small-x86, a BMC address and a wipe record", m)
	}

	// Allocate for tenant A, whose user data writes a marker file.
	marker := randomMarker()
	allocated := allocate(t, ctx, r, "demo", "small", "#!/bin/sh\nprintf 'mf-marker-%s\\n' "+marker+
		" > /root/secret.txt\nsync\necho MARKER-WRITTEN\n")
	installing := p.waitEvent(ctx, allocated, api.EventInstalling, 2*time.Minute)
	kexec := p.waitEvent(ctx, allocated, api.EventBootingNewKernel, 5*time.Minute)
	home := p.waitEvent(ctx, allocated, api.EventPhonedHome, 3*time.Minute)
	p.add("allocate → installing", allocated, installing.Time)
	p.add("installing → booting new kernel", installing.Time, kexec.Time)
	p.add("kexec → phoned home", kexec.Time, home.Time)
	for _, e := range r.events(ctx, id) {
		if e.Event == api.EventInstalling && strings.Contains(e.Message, "MB/s") {
			p.report = append(p.report, "image write: "+e.Message)
		}
	}
	if m := r.machine(ctx, id); m == nil || m.Allocation == nil || !m.Allocation.Succeeded || m.Allocation.BootInfo == nil {
		t.Fatalf("installed machine %+v: want a succeeded allocation with boot info", m)
	}
	waitConsole(t, ctx, l, "userdata: MARKER-WRITTEN", 2*time.Minute)
	fullMarker := []byte("mf-marker-" + marker)
	if !diskContains(t, ctx, l, fullMarker) {
		t.Fatal("positive control: the marker tenant A wrote is not on the disk, so the wipe check could not fail")
	}

	// Free: the BMC agent PXE boots the machine, the hammer wipes it and waits again.
	freed := time.Now()
	r.must(ctx, "POST", "/v1/machine/"+id+"/free", nil, nil)
	repxe := p.waitEvent(ctx, freed, api.EventPXEBooting, 6*time.Minute)
	rereg := p.waitEvent(ctx, freed, api.EventRegistering, 6*time.Minute)
	rewait := p.waitEvent(ctx, freed, api.EventWaiting, 6*time.Minute)
	p.add("free → PXE (BMC agent cycles it)", freed, repxe.Time)
	p.add("PXE → registered (hammer up)", repxe.Time, rereg.Time)
	p.add("registered → waiting (wipe)", rereg.Time, rewait.Time)
	m = r.machine(ctx, id)
	if m.LastWipe == nil || m.LastWipe.Time.Before(freed) || len(m.LastWipe.Disks) == 0 || !m.LastWipe.Disks[0].Verified {
		t.Fatalf("wipe record after free: %+v", m.LastWipe)
	}
	t.Logf("wipe record: %+v", m.LastWipe.Disks)
	if diskContains(t, ctx, l, fullMarker) {
		t.Fatal("tenant A's marker is still readable on the disk after free")
	}

	// Re-allocate for tenant B: the marker stays gone.
	r.must(ctx, "POST", "/v1/project", api.Project{Meta: api.Meta{ID: "tenant-b", Name: "tenant-b"}}, nil)
	again := allocate(t, ctx, r, "tenant-b", "small", "")
	p.waitEvent(ctx, again, api.EventPhonedHome, 8*time.Minute)
	p.add("re-allocate → phoned home", again, time.Now())
	if diskContains(t, ctx, l, fullMarker) {
		t.Fatal("tenant A's marker is readable on the disk of tenant B")
	}

	// A bad checksum: the install fails with a clear error, nothing is booted, the machine is
	// reusable after free.
	var good api.Image
	r.must(ctx, "GET", "/v1/image/small", nil, &good)
	bad := good
	bad.Meta = api.Meta{ID: "small-bad-checksum", Name: "small with a wrong checksum"}
	bad.SHA256 = strings.Repeat("0", 64)
	r.must(ctx, "POST", "/v1/image", bad, nil)
	freed = time.Now()
	r.must(ctx, "POST", "/v1/machine/"+id+"/free", nil, nil)
	p.waitEvent(ctx, freed, api.EventWaiting, 6*time.Minute)
	badAt := allocate(t, ctx, r, "tenant-b", bad.ID, "")
	crash := p.waitEvent(ctx, badAt, api.EventCrashed, 6*time.Minute)
	if !strings.Contains(strings.ToLower(crash.Message), "sha256") && !strings.Contains(strings.ToLower(crash.Message), "checksum") {
		t.Fatalf("crash after a bad checksum says %q; want it to name the checksum", crash.Message)
	}
	t.Logf("bad checksum refused: %s", crash.Message)
	for _, e := range r.events(ctx, id) {
		if e.Event == api.EventBootingNewKernel && e.Time.After(badAt) {
			t.Fatal("the machine booted an image whose checksum did not match")
		}
	}
	freed = time.Now()
	r.must(ctx, "POST", "/v1/machine/"+id+"/free", nil, nil)
	back := p.waitEvent(ctx, freed, api.EventWaiting, 6*time.Minute)
	p.add("bad image: free → waiting again", freed, back.Time)
	if m := r.machine(ctx, id); m == nil || m.Allocation != nil || !m.Waiting {
		t.Fatalf("after the failed install and free: %+v, want a waiting, unallocated machine", m)
	}
}

// allocate allocates the lab's machine for a project and returns when the request was made.
func allocate(t testing.TB, ctx context.Context, r rest, project, image, userdata string) time.Time {
	t.Helper()
	at := time.Now()
	var m api.Machine
	r.must(ctx, "POST", "/v1/machine/allocate", api.MachineAllocateRequest{ProjectID: project, PartitionID: "lab",
		SizeID: "v1-small-x86", ImageID: image, FilesystemLayoutID: "default", Hostname: project + "-node",
		AutoNetwork: true, UserData: userdata, SSHPubKeys: []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE2e2e e2e@test"}}, &m)
	return at
}

func randomMarker() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func waitConsole(t testing.TB, ctx context.Context, l *lab.Lab, want string, limit time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for !strings.Contains(console(l, 0), want) {
		select {
		case <-ctx.Done():
			t.Fatalf("console never showed %q", want)
		case <-time.After(time.Second):
		}
	}
}

// diskContains reads the machine's disk as the guest sees it (qemu-img convert of the running
// qcow2, sharing the lock) and reports whether needle is anywhere on it. Holes are skipped.
func diskContains(t *testing.T, ctx context.Context, l *lab.Lab, needle []byte) bool {
	t.Helper()
	raw := filepath.Join(t.TempDir(), "disk.raw")
	disk := filepath.Join(l.Machines()[0].Dir, "disk.qcow2")
	cmd := exec.CommandContext(ctx, "qemu-img", "convert", "-U", "-f", "qcow2", "-O", "raw", disk, raw)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("read the machine's disk: %v\n%s", err, out)
	}
	defer os.Remove(raw)
	found, err := scanData(raw, needle)
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// scanData searches the data regions of a sparse file.
func scanData(path string, needle []byte) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return false, err
	}
	buf := make([]byte, 4<<20)
	var off int64
	for off < fi.Size() {
		data, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		hole, err := unix.Seek(int(f.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			return false, err
		}
		for pos := data; pos < hole; {
			// Overlap reads by len(needle) so a match across a boundary is not missed.
			n, err := f.ReadAt(buf[:min(int64(len(buf)), hole-pos)], pos)
			if n > 0 && bytes.Contains(buf[:n], needle) {
				return true, nil
			}
			if err != nil && !errors.Is(err, io.EOF) {
				return false, err
			}
			if n <= len(needle) {
				break
			}
			pos += int64(n - len(needle))
		}
		off = hole
	}
	return false, nil
}

func tail(s string, lines int) string {
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}
