package lldp

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Conn is an AF_PACKET socket for LLDP on one interface.
type Conn struct {
	fd      int
	ifindex int
	mac     net.HardwareAddr
}

// Open opens an LLDP socket on ifname inside the network namespace at nsPath ("" is the caller's).
func Open(nsPath, ifname string) (*Conn, error) {
	var c *Conn
	err := inNetns(nsPath, func() error {
		ifc, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(EtherType)))
		if err != nil {
			return fmt.Errorf("socket: %w", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(EtherType), Ifindex: ifc.Index}); err != nil {
			unix.Close(fd)
			return fmt.Errorf("bind: %w", err)
		}
		mreq := unix.PacketMreq{Ifindex: int32(ifc.Index), Type: unix.PACKET_MR_MULTICAST, Alen: 6}
		dst := multicastMAC()
		copy(mreq.Address[:], dst[:])
		if err := unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mreq); err != nil {
			unix.Close(fd)
			return fmt.Errorf("join lldp multicast: %w", err)
		}
		c = &Conn{fd: fd, ifindex: ifc.Index, mac: ifc.HardwareAddr}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("lldp open %s in %q: %w", ifname, nsPath, err)
	}
	return c, nil
}

// MAC is the interface's address.
func (c *Conn) MAC() net.HardwareAddr { return c.mac }

// Send sends one frame announcing n.
func (c *Conn) Send(n Neighbor) error {
	b, err := Marshal(c.mac, n)
	if err != nil {
		return err
	}
	sa := &unix.SockaddrLinklayer{Protocol: htons(EtherType), Ifindex: c.ifindex, Halen: 6}
	dst := multicastMAC()
	copy(sa.Addr[:], dst[:])
	if err := unix.Sendto(c.fd, b, 0, sa); err != nil {
		return fmt.Errorf("lldp send: %w", err)
	}
	return nil
}

// ErrTimeout is a Receive that saw no LLDP frame in time.
var ErrTimeout = errors.New("lldp: no frame before the deadline")

// Receive returns the next incoming LLDP frame, or ErrTimeout at the deadline. Malformed frames
// are skipped.
func (c *Conn) Receive(deadline time.Time) (Neighbor, error) {
	buf := make([]byte, 9216)
	for {
		wait := time.Until(deadline)
		if wait <= 0 {
			return Neighbor{}, ErrTimeout
		}
		pfd := []unix.PollFd{{Fd: int32(c.fd), Events: unix.POLLIN}}
		n, err := unix.Poll(pfd, int(wait.Milliseconds())+1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return Neighbor{}, fmt.Errorf("lldp poll: %w", err)
		}
		if n == 0 {
			continue
		}
		n, from, err := unix.Recvfrom(c.fd, buf, unix.MSG_DONTWAIT)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return Neighbor{}, fmt.Errorf("lldp receive: %w", err)
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		if nb, err := ParseFrame(buf[:n]); err == nil {
			return nb, nil
		}
	}
}

// Close closes the socket.
func (c *Conn) Close() error { return unix.Close(c.fd) }

// htons converts a 16-bit value to network byte order for AF_PACKET protocol fields.
func htons(v uint16) uint16 { return v<<8 | v>>8 }

// inNetns runs fn on a thread in the namespace at path; "" runs it in place. The thread is
// returned to the runtime only if it could be switched back.
func inNetns(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	target, err := netns.GetFromPath(path)
	if err != nil {
		return err
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return // the locked thread is discarded
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			errc <- err
			return
		}
		err = fn()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}
