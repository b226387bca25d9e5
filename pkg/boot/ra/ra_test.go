package ra

import (
	"bytes"
	"net"
	"testing"
)

func TestAdvertisement(t *testing.T) {
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	got := Advertisement(mac)
	// type 134, code 0, checksum (kernel), hop limit 0, no M/O flags, router lifetime 0,
	// reachable time 0, retrans timer 0, option 1 (source link-layer address) of 8 bytes.
	want := []byte{134, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 0, 0, 0, 0, 1}
	if !bytes.Equal(got, want) {
		t.Errorf("Advertisement = %v, want %v", got, want)
	}
	if got := Advertisement(nil); len(got) != 16 {
		t.Errorf("without a MAC: %d bytes, want 16 (no options)", len(got))
	}
}
