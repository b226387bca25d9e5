package lldp

import (
	"context"
	"errors"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// capturedFrame is laid out like a frame from a leaf switch running FRR/lldpd: MAC chassis ID,
// interface-name port ID, TTL 120, port description, system name, a system description and an
// organisationally specific TLV (both skipped), End.
var capturedFrame = []byte{
	0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e, // destination
	0x44, 0x38, 0x39, 0x00, 0x00, 0x01, // source
	0x88, 0xcc, // LLDP
	0x02, 0x07, 0x04, 0x44, 0x38, 0x39, 0x00, 0x00, 0x01, // chassis: MAC
	0x04, 0x06, 0x05, 's', 'w', 'p', '1', '7', // port: ifName "swp17"
	0x06, 0x02, 0x00, 0x78, // TTL 120
	0x08, 0x05, 's', 'w', 'p', '1', '7', // port description
	0x0a, 0x09, 'l', 'e', 'a', 'f', '0', '1', 0x00, ' ', ' ', // system name with padding
	0x0c, 0x05, 'L', 'i', 'n', 'u', 'x', // system description
	0xfe, 0x06, 0x00, 0x80, 0xc2, 0x01, 0x00, 0x01, // 802.1 port VLAN ID
	0x00, 0x00, // End
}

func TestParseFrame(t *testing.T) {
	tagged := append(append(append([]byte{}, capturedFrame[:12]...), 0x81, 0x00, 0x00, 0x64), capturedFrame[12:]...)
	ipv4Chassis := append(append([]byte{}, capturedFrame[:14]...),
		0x02, 0x06, 0x05, 0x01, 10, 0, 0, 1, // chassis: network address IPv4
		0x04, 0x04, 0x07, 'e', 't', '1', // port: local "et1"
		0x06, 0x02, 0x00, 0x10)
	tests := []struct {
		name  string
		frame []byte
		want  Neighbor
		err   bool
	}{
		{"captured", capturedFrame, Neighbor{ChassisID: "44:38:39:00:00:01", PortID: "swp17", PortDescription: "swp17", SystemName: "leaf01", TTL: 120}, false},
		{"vlan tagged", tagged, Neighbor{ChassisID: "44:38:39:00:00:01", PortID: "swp17", PortDescription: "swp17", SystemName: "leaf01", TTL: 120}, false},
		{"ipv4 chassis, no end tlv", ipv4Chassis, Neighbor{ChassisID: "10.0.0.1", PortID: "et1", TTL: 16}, false},
		{"not lldp", append(append([]byte{}, capturedFrame[:12]...), 0x08, 0x00, 0x45), Neighbor{}, true},
		{"short", capturedFrame[:10], Neighbor{}, true},
		{"truncated tlv", capturedFrame[:20], Neighbor{}, true},
		{"port id first", append(append([]byte{}, capturedFrame[:14]...), capturedFrame[23:]...), Neighbor{}, true},
		{"empty", capturedFrame[:14], Neighbor{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseFrame(tt.frame)
			if tt.err {
				if err == nil {
					t.Fatalf("ParseFrame = %+v, want error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("neighbour (-want +got):\n%s", d)
			}
		})
	}
	if _, err := ParseFrame(tests[3].frame); !errors.Is(err, ErrNotLLDP) {
		t.Errorf("non-lldp frame: %v, want ErrNotLLDP", err)
	}
}

func TestFrameRoundTrip(t *testing.T) {
	src, _ := net.ParseMAC("02:00:00:00:00:01")
	for _, n := range []Neighbor{
		{ChassisID: "aa:bb:cc:dd:ee:ff", PortID: "Ethernet12", SystemName: "leaf02", PortDescription: "to m1", TTL: 120},
		{ChassisID: "leaf-chassis", PortID: "02:00:00:00:00:09", TTL: 1},
		{ChassisID: "machine-1", PortID: "swp1", TTL: 120},
	} {
		b, err := Marshal(src, n)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseFrame(b)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(n, got); d != "" {
			t.Errorf("round trip (-want +got):\n%s", d)
		}
	}
}

func TestMarshalRejects(t *testing.T) {
	src, _ := net.ParseMAC("52:54:00:12:34:56")
	for name, n := range map[string]Neighbor{
		"no port id":       {ChassisID: "c"},
		"no chassis id":    {PortID: "p"},
		"long system name": {ChassisID: "c", PortID: "p", SystemName: string(make([]byte, 600))},
	} {
		if b, err := Marshal(src, n); err == nil {
			t.Errorf("%s: marshalled %d bytes", name, len(b))
		}
	}
	if _, err := Marshal(net.HardwareAddr{1, 2}, Neighbor{ChassisID: "c", PortID: "p"}); err == nil {
		t.Error("marshalled from a short source address")
	}
}

// inNetnsHandle runs f on a locked OS thread inside ns.
func inNetnsHandle(ns netns.NsHandle, f func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		return err
	}
	defer netns.Set(orig) //nolint:errcheck // best effort: the thread is discarded by Go if it stays locked
	return f()
}

// TestListen sends frames over a veth pair in a network namespace the test creates and removes.
func TestListen(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace and AF_PACKET")
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	ns, err := netns.New() // switches this thread into ns
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	err = func() error {
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "lldp0"}, PeerName: "lldp1"}
		if err := netlink.LinkAdd(veth); err != nil {
			return err
		}
		for _, name := range []string{"lldp0", "lldp1"} {
			l, err := netlink.LinkByName(name)
			if err != nil {
				return err
			}
			if err := netlink.LinkSetUp(l); err != nil {
				return err
			}
		}
		return nil
	}()
	if serr := netns.Set(orig); serr != nil {
		t.Fatalf("back to the original netns: %v", serr)
	}
	runtime.UnlockOSThread()
	t.Cleanup(func() { ns.Close(); orig.Close() })
	if err != nil {
		t.Fatalf("veth pair: %v", err)
	}

	want := Neighbor{ChassisID: "44:38:39:00:00:01", PortID: "swp3", SystemName: "leaf01", TTL: 120}
	stop := make(chan struct{})
	sent := make(chan error, 1)
	go func() {
		sent <- inNetnsHandle(ns, func() error {
			for i := 0; ; i++ {
				if err := Send("lldp1", want); err != nil {
					return err
				}
				select {
				case <-stop:
					return nil
				case <-time.After(100 * time.Millisecond):
				}
			}
		})
	}()
	var got []Neighbor
	err = inNetnsHandle(ns, func() error {
		var err error
		got, err = Listen(context.Background(), "lldp0", 700*time.Millisecond)
		return err
	})
	close(stop)
	if serr := <-sent; serr != nil {
		t.Fatalf("send: %v", serr)
	}
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]Neighbor{want}, got); d != "" {
		t.Errorf("neighbours (-want +got):\n%s", d)
	}
}
