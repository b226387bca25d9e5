package boot_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/boot/internal/netnstest"
)

// bootSector is a 512-byte MBR that writes "DISKBOOT-OK" to the first serial port and halts:
//
//	xor ax,ax; mov ds,ax; cld; mov si,msg; mov dx,0x3f8
//	l: lodsb; test al,al; jz d; out dx,al; jmp l
//	d: cli; hlt; jmp $
//	msg: db "DISKBOOT-OK",13,10,0
func bootSector() []byte {
	code := []byte{0x31, 0xc0, 0x8e, 0xd8, 0xfc, 0xbe, 0x17, 0x7c, 0xba, 0xf8, 0x03,
		0xac, 0x84, 0xc0, 0x74, 0x03, 0xee, 0xeb, 0xf8,
		0xfa, 0xf4, 0xeb, 0xfe}
	code = append(code, "DISKBOOT-OK\r\n\x00"...)
	mbr := make([]byte, 512)
	copy(mbr, code)
	mbr[510], mbr[511] = 0x55, 0xaa
	return mbr
}

// TestQEMUBoot: a QEMU machine (SeaBIOS with the iPXE ROM of Debian's ipxe-qemu, TCG) boots
// from the network against boot-server: DHCP, the chain script, the per-host script. The machine
// is installed, so the script boots its disk with sanboot, and the boot sector's marker appears
// on the serial port. Measured with this setup: sanboot reaches the disk in ~2.4 s, `exit` (iPXE
// gives up, SeaBIOS boots the next device) in ~4.4 s. Both need the disk in SeaBIOS's boot list:
// with only the NIC listed (strict), SeaBIOS maps no drive 0x80 and sanboot fails with an I/O
// error, which the script's `|| exit` then hands back to the firmware.
func TestQEMUBoot(t *testing.T) {
	netnstest.Require(t)
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("skipping: qemu-system-x86_64 is not installed (Debian qemu-system-x86, ipxe-qemu)")
	}
	if _, err := os.Stat("/usr/lib/ipxe/qemu/efi-virtio.rom"); err != nil {
		t.Skip("skipping: the iPXE ROMs of QEMU (Debian ipxe-qemu) are not installed")
	}
	const mac = "52:54:00:12:34:56"
	ns := netnstest.New(t, "vm")
	netnstest.Bridge(t, ns)
	ns.IP(t, "addr", "add", "10.93.0.1/24", "dev", "br0")
	ns.IP(t, "tuntap", "add", "dev", "tap0", "mode", "tap")
	ns.IP(t, "link", "set", "tap0", "master", "br0", "up")

	machines, apiAddr := fakeAPI(t)
	machines.Put(api.Machine{Meta: api.Meta{ID: "m-vm"}, PartitionID: partition,
		Hardware:   api.MachineHardware{NICs: []api.MachineNIC{{Name: "eth0", MAC: mac}}},
		Allocation: &api.MachineAllocation{ProjectID: "p", BootInfo: &api.BootInfo{Kernel: "/boot/vmlinuz"}}})
	cfg := nsConfig(apiAddr, tftpDir(t))
	cfg.Interface = "br0"
	cfg.Subnet.First, cfg.Subnet.Last = mustAddr("10.93.0.100"), mustAddr("10.93.0.110")
	cfg.Subnet.Router, cfg.Subnet.DNS = mustAddr("10.93.0.1"), nil
	start(t, ns, cfg)

	dir := t.TempDir()
	disk, serial := filepath.Join(dir, "disk.img"), filepath.Join(dir, "serial.log")
	img := append(bootSector(), make([]byte, 1<<20-512)...)
	if err := os.WriteFile(disk, img, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := ns.Command(ctx, qemu, "-accel", "tcg", "-machine", "pc", "-m", "128", "-nodefaults", "-display", "none",
		"-serial", "file:"+serial, "-device", "sga", "-no-reboot", "-boot", "strict=on",
		"-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no",
		"-device", "virtio-net-pci,netdev=n0,mac="+mac+",bootindex=1",
		"-drive", "file="+disk+",format=raw,if=none,id=d0", "-device", "virtio-blk-pci,drive=d0,bootindex=2")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.WaitDelay = 5 * time.Second
	began := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start qemu: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cancel() // kills QEMU by its PID
		<-exited
	}()

	for {
		if b, _ := os.ReadFile(serial); bytes.Contains(b, []byte("DISKBOOT-OK")) {
			t.Logf("disk booted through boot-server %v after power-on", time.Since(began).Round(100*time.Millisecond))
			// sgabios copies iPXE's console to the serial port: the disk must have been booted by
			// the script's sanboot, not by the firmware after iPXE gave up.
			if !bytes.Contains(b, []byte("Booting from SAN device 0x80")) || bytes.Contains(b, []byte("No more network devices")) {
				t.Errorf("the disk was not booted by sanboot; serial: %q", b)
			}
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("qemu exited: %v: %s", err, stderr.String())
		case <-ctx.Done():
			b, _ := os.ReadFile(serial)
			t.Fatalf("no disk boot within the time limit; serial: %q", b)
		case <-time.After(200 * time.Millisecond):
		}
	}
	if !slices.ContainsFunc(machines.Events("m-vm"), func(e api.EventRequest) bool { return e.Event == api.EventPXEBooting }) {
		t.Errorf("no PXE Booting event for the VM")
	}
}
