package inband

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The ioctl interface of the Linux IPMI device driver (include/uapi/linux/ipmi.h), for 64-bit
// platforms. The structs mirror the C layout; pointer fields stay Go pointers so the buffers they
// point to are kept alive and on the heap.
type ipmiMsg struct {
	netfn   uint8
	cmd     uint8
	dataLen uint16
	data    *byte
}

type ipmiReq struct {
	addr    *byte
	addrLen uint32
	msgid   int64
	msg     ipmiMsg
}

type ipmiRecv struct {
	recvType int32
	addr     *byte
	addrLen  uint32
	msgid    int64
	msg      ipmiMsg
}

// systemInterfaceAddr is struct ipmi_system_interface_addr: addr_type, channel, lun.
type systemInterfaceAddr struct {
	addrType int32
	channel  int16
	lun      uint8
	_        uint8
}

const (
	ipmiIOCMagic           = 'i'
	systemInterfaceAddrTyp = 0x0c
	bmcChannel             = 0x0f
	responseRecvType       = 1
	iocWrite               = 1
	iocRead                = 2
)

// IPMICTL_SEND_COMMAND is _IOR('i', 13, struct ipmi_req), IPMICTL_RECEIVE_MSG_TRUNC is
// _IOWR('i', 11, struct ipmi_recv): dir<<30 | size<<16 | type<<8 | nr.
const (
	ioctlSendCommand   = iocRead<<30 | unsafe.Sizeof(ipmiReq{})<<16 | ipmiIOCMagic<<8 | 13
	ioctlReceiveMsgTrc = (iocRead|iocWrite)<<30 | unsafe.Sizeof(ipmiRecv{})<<16 | ipmiIOCMagic<<8 | 11
)

// Device is the IPMI system interface /dev/ipmiN.
type Device struct {
	f       *os.File
	mu      sync.Mutex
	msgid   int64
	Timeout time.Duration // per request, default 5s
}

// DevicePaths are where the ipmi_devintf driver's first device shows up, depending on udev.
func DevicePaths() []string { return []string{"/dev/ipmi0", "/dev/ipmi/0", "/dev/ipmidev/0"} }

// OpenDevice opens the first IPMI device that exists. The kernel needs ipmi_msghandler,
// ipmi_devintf and ipmi_si loaded.
func OpenDevice() (*Device, error) {
	var errs []error
	for _, p := range DevicePaths() {
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err == nil {
			return &Device{f: f, Timeout: 5 * time.Second}, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("open ipmi device: %w", errors.Join(errs...))
}

// Close closes the device.
func (d *Device) Close() error { return d.f.Close() }

func (d *Device) ioctl(req uintptr, arg unsafe.Pointer) error {
	raw, err := d.f.SyscallConn()
	if err != nil {
		return err
	}
	var errno unix.Errno
	if err := raw.Control(func(fd uintptr) {
		_, _, errno = unix.Syscall(unix.SYS_IOCTL, fd, req, uintptr(arg))
	}); err != nil {
		return err
	}
	if errno != 0 {
		return errno
	}
	return nil
}

// Send sends a request to the BMC (system interface address, LUN 0) and waits for its response.
func (d *Device) Send(ctx context.Context, netfn, cmd uint8, data []byte) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.msgid++
	id := d.msgid
	addr := &systemInterfaceAddr{addrType: systemInterfaceAddrTyp, channel: bmcChannel}
	req := &ipmiReq{addr: (*byte)(unsafe.Pointer(addr)), addrLen: uint32(unsafe.Sizeof(*addr)), msgid: id,
		msg: ipmiMsg{netfn: netfn, cmd: cmd, dataLen: uint16(len(data))}}
	if len(data) > 0 {
		buf := append([]byte(nil), data...)
		req.msg.data = &buf[0]
	}
	if err := d.ioctl(ioctlSendCommand, unsafe.Pointer(req)); err != nil {
		return nil, fmt.Errorf("send netfn 0x%02x cmd 0x%02x: %w", netfn, cmd, err)
	}
	timeout := d.Timeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	deadline := time.Now().Add(timeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	for {
		wait := time.Until(deadline)
		if wait <= 0 {
			return nil, fmt.Errorf("netfn 0x%02x cmd 0x%02x: no response within %v", netfn, cmd, timeout)
		}
		fds := []unix.PollFd{{Fd: int32(d.f.Fd()), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(min(wait, 200*time.Millisecond)/time.Millisecond)+1)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return nil, fmt.Errorf("poll ipmi device: %w", err)
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("netfn 0x%02x cmd 0x%02x: %w", netfn, cmd, ctx.Err())
		}
		if n <= 0 {
			continue
		}
		raddr := &systemInterfaceAddr{}
		rbuf := make([]byte, 1024)
		recv := &ipmiRecv{addr: (*byte)(unsafe.Pointer(raddr)), addrLen: uint32(unsafe.Sizeof(*raddr)),
			msg: ipmiMsg{data: &rbuf[0], dataLen: uint16(len(rbuf))}}
		if err := d.ioctl(ioctlReceiveMsgTrc, unsafe.Pointer(recv)); err != nil {
			if errors.Is(err, unix.EAGAIN) {
				continue
			}
			return nil, fmt.Errorf("receive netfn 0x%02x cmd 0x%02x: %w", netfn, cmd, err)
		}
		if recv.recvType != responseRecvType || recv.msgid != id {
			continue // an event or the late answer of an earlier, timed-out request
		}
		return checkResponse(netfn, cmd, rbuf[:recv.msg.dataLen])
	}
}

// checkResponse splits off the completion code.
func checkResponse(netfn, cmd uint8, r []byte) ([]byte, error) {
	if len(r) == 0 {
		return nil, fmt.Errorf("netfn 0x%02x cmd 0x%02x: empty response", netfn, cmd)
	}
	if r[0] != 0 {
		return nil, &CompletionError{NetFn: netfn, Cmd: cmd, Code: r[0]}
	}
	return append([]byte(nil), r[1:]...), nil
}
