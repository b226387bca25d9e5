package lldp

import (
	"net"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRoundTrip(t *testing.T) {
	src, _ := net.ParseMAC("52:54:00:12:34:56")
	for _, f := range []Frame{
		{ChassisID: "aa:bb:cc:dd:ee:ff", PortID: "swp1", SystemName: "leaf1", TTL: 30},
		{ChassisID: "machine-1", PortID: "52:54:00:12:34:56", TTL: 120},
	} {
		b, err := f.Marshal(src)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(f, got); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
	}
}

func TestParseRejects(t *testing.T) {
	src, _ := net.ParseMAC("52:54:00:12:34:56")
	good, _ := Frame{ChassisID: "c", PortID: "p"}.Marshal(src)
	for name, b := range map[string][]byte{
		"short":      good[:10],
		"ethertype":  append(append([]byte{}, good[:12]...), 0x08, 0x00),
		"truncated":  good[:len(good)-6],
		"no tlvs":    good[:14],
		"no port id": append(append([]byte{}, good[:14]...), 0x02, 0x02, 0x07, 'c', 0x00, 0x00),
	} {
		if _, err := Parse(b); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
	if _, err := (Frame{ChassisID: "c"}).Marshal(src); err == nil {
		t.Error("marshalled a frame without port id")
	}
}

func root() bool { return os.Geteuid() == 0 }
