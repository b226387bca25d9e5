package lldp

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/metalforge/metalforge/switch-agent/nsvrf"
)

// TestConn sends LLDP frames between two namespaces over a veth pair, one end in a bridge (as a
// switch's PXE port is), both ways.
func root() bool { return os.Geteuid() == 0 }

func TestConn(t *testing.T) {
	if !root() {
		t.Skip("needs root: creates network namespaces")
	}
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	for _, p := range []string{a, b} {
		if err := nsvrf.CreateNetns(p); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = nsvrf.DeleteNetns(p) })
	}
	ha, _ := netns.GetFromPath(a)
	defer ha.Close()
	hb, _ := netns.GetFromPath(b)
	defer hb.Close()
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "swp1", Namespace: netlink.NsFd(int(ha))},
		PeerName: "eth0", PeerNamespace: netlink.NsFd(int(hb))}); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []netns.NsHandle{ha, hb} {
		nl, err := netlink.NewHandleAt(ns)
		if err != nil {
			t.Fatal(err)
		}
		links, _ := nl.LinkList()
		for _, l := range links {
			if err := nl.LinkSetUp(l); err != nil {
				t.Fatal(err)
			}
		}
		if ns == ha {
			br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "pxe"}}
			if err := nl.LinkAdd(br); err != nil {
				t.Fatal(err)
			}
			port, _ := nl.LinkByName("swp1")
			if err := nl.LinkSetMaster(port, br); err != nil {
				t.Fatal(err)
			}
			if err := nl.LinkSetUp(br); err != nil {
				t.Fatal(err)
			}
		}
		nl.Close()
	}
	sw, err := Open(a, "swp1")
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Close()
	host, err := Open(b, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	want := Neighbor{ChassisID: sw.MAC().String(), PortID: "swp1", SystemName: "leaf1", TTL: 40}
	if err := sw.Send(want); err != nil {
		t.Fatal(err)
	}
	got, err := host.Receive(time.Now().Add(5 * time.Second))
	if err != nil || got != want {
		t.Fatalf("host received %+v, %v; want %+v", got, err, want)
	}
	back := Neighbor{ChassisID: host.MAC().String(), PortID: host.MAC().String(), SystemName: "m-1", TTL: 120}
	if err := host.Send(back); err != nil {
		t.Fatal(err)
	}
	if got, err := sw.Receive(time.Now().Add(5 * time.Second)); err != nil || got != back {
		t.Fatalf("switch received %+v, %v; want %+v", got, err, back)
	}
	if _, err := sw.Receive(time.Now().Add(200 * time.Millisecond)); err != ErrTimeout {
		t.Errorf("receive without a frame: %v, want ErrTimeout (own frames must not come back)", err)
	}
}
