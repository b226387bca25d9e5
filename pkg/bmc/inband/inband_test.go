package inband

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"unsafe"

	"github.com/google/go-cmp/cmp"

	"github.com/metalforge/metalforge/pkg/api"
)

func TestIoctlNumbers(t *testing.T) {
	if runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64" {
		t.Skip("layout checked for 64-bit platforms")
	}
	// Sizes and numbers of the C headers on x86_64 (pahole / _IOR expansion).
	if s := unsafe.Sizeof(ipmiReq{}); s != 40 {
		t.Errorf("sizeof(struct ipmi_req) = %d, want 40", s)
	}
	if s := unsafe.Sizeof(ipmiRecv{}); s != 48 {
		t.Errorf("sizeof(struct ipmi_recv) = %d, want 48", s)
	}
	if s := unsafe.Sizeof(systemInterfaceAddr{}); s != 8 {
		t.Errorf("sizeof(struct ipmi_system_interface_addr) = %d, want 8", s)
	}
	if o := unsafe.Offsetof(ipmiReq{}.msg); o != 24 {
		t.Errorf("offsetof(ipmi_req.msg) = %d, want 24", o)
	}
	if o := unsafe.Offsetof(ipmiRecv{}.msg); o != 32 {
		t.Errorf("offsetof(ipmi_recv.msg) = %d, want 32", o)
	}
	if ioctlSendCommand != 0x8028690d {
		t.Errorf("IPMICTL_SEND_COMMAND = %#x, want 0x8028690d", ioctlSendCommand)
	}
	if ioctlReceiveMsgTrc != 0xc030690b {
		t.Errorf("IPMICTL_RECEIVE_MSG_TRUNC = %#x, want 0xc030690b", ioctlReceiveMsgTrc)
	}
}

func TestDecodeDeviceID(t *testing.T) {
	// What Debian's ipmi_sim answers for `mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02`.
	got, err := decodeDeviceID([]byte{0x00, 0x03, 0x09, 0x08, 0x02, 0x9f, 0x91, 0x12, 0x00, 0x02, 0x0f, 0, 0, 0, 0})
	if err != nil {
		t.Fatal(err)
	}
	want := DeviceID{DeviceID: 0, DeviceRevision: 3, Firmware: "9.08", IPMIVersion: "2.0", ManufacturerID: 4753, ProductID: 0x0f02}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	if _, err := decodeDeviceID([]byte{1, 2, 3}); err == nil {
		t.Error("short response accepted")
	}
}

func TestEncoding(t *testing.T) {
	name, err := EncodeSetUserName(3, "metal")
	if err != nil {
		t.Fatal(err)
	}
	if want := append([]byte{3, 'm', 'e', 't', 'a', 'l'}, make([]byte, 11)...); !bytes.Equal(name, want) {
		t.Errorf("set user name % x, want % x", name, want)
	}
	if _, err := EncodeSetUserName(3, "a-name-longer-than-16"); err == nil {
		t.Error("17 byte name accepted")
	}
	pw16, _ := EncodeSetUserPassword(3, passwordOpSet, "pw")
	if want := append([]byte{0x03, 0x02, 'p', 'w'}, make([]byte, 14)...); !bytes.Equal(pw16, want) {
		t.Errorf("16 byte password form % x, want % x", pw16, want)
	}
	pw20, _ := EncodeSetUserPassword(3, passwordOpSet, "0123456789abcdefXYZ")
	if len(pw20) != 22 || pw20[0] != 0x83 {
		t.Errorf("20 byte password form % x: want 22 bytes with bit 7 of the user id set", pw20)
	}
	if _, err := EncodeSetUserPassword(3, passwordOpSet, "012345678901234567890"); err == nil {
		t.Error("21 byte password accepted")
	}
	enable, _ := EncodeSetUserPassword(3, passwordOpEnable, "")
	if !bytes.Equal(enable, []byte{0x03, 0x01}) {
		t.Errorf("enable user % x", enable)
	}
	if got := EncodeSetUserAccess(1, 3, privAdmin); !bytes.Equal(got, []byte{0xb1, 0x03, 0x04}) {
		t.Errorf("set user access % x, want b1 03 04", got)
	}
	if _, err := checkResponse(6, 1, []byte{0xc1}); !errors.As(err, new(*CompletionError)) {
		t.Errorf("completion code 0xc1: %v", err)
	}
	if r, err := checkResponse(6, 1, []byte{0, 7}); err != nil || !bytes.Equal(r, []byte{7}) {
		t.Errorf("checkResponse ok = % x, %v", r, err)
	}
}

func TestRandomPassword(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		p, err := RandomPassword(16)
		if err != nil || len(p) != 16 {
			t.Fatalf("RandomPassword = %q, %v", p, err)
		}
		for _, c := range p {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
				t.Fatalf("password %q has %q", p, c)
			}
		}
		if seen[p] {
			t.Fatalf("password %q repeated", p)
		}
		seen[p] = true
	}
	if _, err := RandomPassword(21); err == nil {
		t.Error("21 character password accepted")
	}
}

// fakeBMC answers the commands Provision uses, like a BMC with 10 users, a LAN on channel 1.
type fakeBMC struct {
	users    [11]string
	password [11]string
	access   [11][]byte
	enabled  [11]bool
	sent     []string
}

func (f *fakeBMC) Send(_ context.Context, netfn, cmd uint8, data []byte) ([]byte, error) {
	f.sent = append(f.sent, fmt.Sprintf("%02x/%02x", netfn, cmd))
	ce := func(code uint8) error { return &CompletionError{NetFn: netfn, Cmd: cmd, Code: code} }
	switch {
	case netfn == NetFnApp && cmd == CmdGetDeviceID:
		return []byte{0x20, 0x81, 0x02, 0x10, 0x02, 0xbf, 0x7c, 0x2a, 0x00, 0x01, 0x09}, nil // Supermicro
	case netfn == NetFnApp && cmd == CmdGetChannelInfo:
		switch data[0] {
		case 1:
			return []byte{1, mediumLAN, 0x01, 0x80, 0xf2, 0x1b, 0x00, 0, 0}, nil
		case 2, 3:
			return []byte{data[0], 0x05, 0x01, 0x80, 0, 0, 0, 0, 0}, nil // serial
		}
		return nil, ce(0xcc)
	case netfn == NetFnTransport && cmd == CmdGetLANConfig:
		switch data[1] {
		case LANParamIP:
			return []byte{0x11, 10, 1, 2, 3}, nil
		case LANParamMAC:
			return []byte{0x11, 0x3c, 0xec, 0xef, 0x01, 0x02, 0x03}, nil
		}
		return nil, ce(0x80)
	case netfn == NetFnApp && cmd == CmdGetUserAccess:
		return []byte{10, 0x42, 0x01, 0x34}, nil
	case netfn == NetFnApp && cmd == CmdGetUserName:
		name := make([]byte, 16)
		copy(name, f.users[data[0]])
		return name, nil
	case netfn == NetFnApp && cmd == CmdSetUserName:
		f.users[data[0]] = string(bytes.TrimRight(data[1:], "\x00"))
		return nil, nil
	case netfn == NetFnApp && cmd == CmdSetUserPassword:
		id := data[0] & 0x3f
		switch data[1] {
		case passwordOpSet:
			f.password[id] = string(bytes.TrimRight(data[2:], "\x00"))
		case passwordOpEnable:
			f.enabled[id] = true
		}
		return nil, nil
	case netfn == NetFnApp && cmd == CmdSetUserAccess:
		f.access[data[1]] = data
		return nil, nil
	}
	return nil, ce(0xc1)
}

func TestProvision(t *testing.T) {
	f := &fakeBMC{}
	f.users[2] = "ADMIN"
	c := New(f)
	ctx := context.Background()
	got, err := c.Provision(ctx, ProvisionConfig{Password: "Passw0rdPassw0rd"})
	if err != nil {
		t.Fatal(err)
	}
	want := api.MachineBMC{Address: "10.1.2.3", MAC: "3c:ec:ef:01:02:03", User: "metal", Password: "Passw0rdPassw0rd", Vendor: "Supermicro"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	if f.users[3] != "metal" || f.password[3] != "Passw0rdPassw0rd" || !f.enabled[3] || !bytes.Equal(f.access[3], []byte{0xb1, 3, 4}) {
		t.Errorf("user 3 = %q/%q enabled %v access % x", f.users[3], f.password[3], f.enabled[3], f.access[3])
	}
	if f.users[2] != "ADMIN" {
		t.Errorf("the vendor's user 2 was overwritten: %q", f.users[2])
	}
	// A second run (the hammer boots again) reuses the slot and only changes the password.
	got2, err := c.Provision(ctx, ProvisionConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if f.users[4] != "" || f.password[3] != got2.Password || got2.Password == got.Password {
		t.Errorf("second provision: users %q, password %q (first %q)", f.users, got2.Password, got.Password)
	}
	// All slots taken.
	full := &fakeBMC{}
	for i := 2; i <= 10; i++ {
		full.users[i] = fmt.Sprintf("u%d", i)
	}
	if _, err := New(full).Provision(ctx, ProvisionConfig{}); err == nil {
		t.Error("provision with no free user id succeeded")
	}
}
