package netns

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func setLinkUp(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("link %s: %w", name, err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

func addAddr(link string, prefix netip.Prefix) error {
	l, err := netlink.LinkByName(link)
	if err != nil {
		return fmt.Errorf("link %s: %w", link, err)
	}
	a, err := netlink.ParseAddr(prefix.String())
	if err != nil {
		return err
	}
	if err := netlink.AddrReplace(l, a); err != nil {
		return fmt.Errorf("add %s to %s: %w", prefix, link, err)
	}
	return nil
}

// AddBridge creates a bridge with an address in the named namespace and sets it up.
func AddBridge(ns, name string, addr netip.Prefix) error {
	return Do(ns, func() error {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
		if err := netlink.LinkAdd(br); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("add bridge %s: %w", name, err)
		}
		if err := addAddr(name, addr); err != nil {
			return err
		}
		return setLinkUp(name)
	})
}

// AddTap creates a persistent tap device in the named namespace, enslaves it to bridge and sets
// it up. QEMU attaches to it with -netdev tap,ifname=<name>,script=no.
func AddTap(ns, name, bridge string) error {
	return Do(ns, func() error {
		tap := &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: name}, Mode: netlink.TUNTAP_MODE_TAP,
			Flags: netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR}
		if err := netlink.LinkAdd(tap); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("add tap %s: %w", name, err)
		}
		l, err := netlink.LinkByName(name)
		if err != nil {
			return fmt.Errorf("link %s: %w", name, err)
		}
		br, err := netlink.LinkByName(bridge)
		if err != nil {
			return fmt.Errorf("link %s: %w", bridge, err)
		}
		if err := netlink.LinkSetMaster(l, br); err != nil {
			return fmt.Errorf("enslave %s to %s: %w", name, bridge, err)
		}
		return setLinkUp(name)
	})
}

// AddLoopback puts addresses on lo of the named namespace (the lab's BMC addresses).
func AddLoopback(ns string, addrs ...netip.Prefix) error {
	return Do(ns, func() error {
		for _, a := range addrs {
			if err := addAddr("lo", a); err != nil {
				return err
			}
		}
		return nil
	})
}

// DeleteLink removes a device from the named namespace; a missing device is not an error.
func DeleteLink(ns, name string) error {
	return Do(ns, func() error {
		l, err := netlink.LinkByName(name)
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("link %s: %w", name, err)
		}
		if err := netlink.LinkDel(l); err != nil {
			return fmt.Errorf("delete %s: %w", name, err)
		}
		return nil
	})
}

// Links lists the device names in the named namespace.
func Links(ns string) ([]string, error) {
	var names []string
	err := Do(ns, func() error {
		ls, err := netlink.LinkList()
		if err != nil {
			return err
		}
		for _, l := range ls {
			names = append(names, l.Attrs().Name)
		}
		return nil
	})
	return names, err
}
