package dhcp

import (
	"bytes"
	"log/slog"
	"net"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// DHCP options the server reads or writes beyond the library's named ones.
const (
	optionVendorSpecific   = dhcpv4.GenericOptionCode(43)
	optionClientUUID       = dhcpv4.GenericOptionCode(97)
	optionIPXEEncapsulated = dhcpv4.GenericOptionCode(175)
	ipxeNoPXEDHCP          = 176 // sub-option of 175: do not wait for ProxyDHCP
	pxeDiscoveryControl    = 6   // sub-option of 43
	// pxeBootFileOnly (bit 3) tells a PXE ROM to download the boot file named in this packet
	// without boot server discovery or a menu.
	pxeBootFileOnly = 0x08
)

// Vendor classes (option 60) of network boot clients.
const (
	vendorPXE  = "PXEClient"
	vendorHTTP = "HTTPClient"
)

// client is what a request says about its sender's boot firmware.
type client struct {
	ipxe    bool // user class (option 77) iPXE
	pxe     bool // vendor class PXEClient
	http    bool // vendor class HTTPClient (UEFI HTTP boot)
	arch    iana.Arch
	hasArch bool
}

func classify(req *dhcpv4.DHCPv4) client {
	vc := req.ClassIdentifier()
	c := client{
		// iPXE sends the bare string; RFC 3004 encoding prefixes it with its length. Both contain it.
		ipxe: bytes.Contains(req.Options.Get(dhcpv4.OptionUserClassInformation), []byte("iPXE")),
		pxe:  strings.HasPrefix(vc, vendorPXE),
		http: strings.HasPrefix(vc, vendorHTTP),
	}
	if archs := req.ClientArch(); len(archs) > 0 {
		c.arch, c.hasArch = archs[0], true
	}
	return c
}

// netboot reports whether the client boots from the network at all.
func (c client) netboot() bool { return c.ipxe || c.pxe || c.http }

func (c client) String() string {
	switch {
	case c.ipxe:
		return "ipxe"
	case c.http:
		return "uefi-http"
	case c.pxe && (!c.hasArch || c.arch == iana.INTEL_X86PC):
		return "bios-pxe"
	case c.pxe:
		return "uefi-pxe"
	}
	return "other"
}

// bootFile is what the client should load: the file name or URL, whether it comes over TFTP from
// next-server, and the vendor class the reply must carry ("" for none).
func (s *Server) bootFile(c client) (file string, tftp bool, vendor string) {
	b := s.cfg.Boot
	switch {
	case c.ipxe:
		return b.ScriptURL, false, ""
	case c.http || (c.hasArch && c.arch == iana.EFI_X86_64_HTTP):
		return b.EFIHTTPURL, false, vendorHTTP
	case !c.pxe:
		return "", false, ""
	case !c.hasArch || c.arch == iana.INTEL_X86PC:
		return b.BIOSFile, true, ""
	case c.arch == iana.EFI_X86_64 || c.arch == iana.EFI_BC:
		return b.EFIFile, true, ""
	}
	return "", false, ""
}

// setBoot adds the boot file for c to resp. iPXE clients of a full server also get option 175
// with no-pxedhcp, so they do not wait for a ProxyDHCP offer that never comes.
func (s *Server) setBoot(resp *dhcpv4.DHCPv4, c client, proxy bool) {
	file, tftp, vendor := s.bootFile(c)
	if file == "" {
		return
	}
	if tftp {
		resp.ServerIPAddr = s.cfg.Boot.TFTPServer.AsSlice()
	}
	if len(file) < 128 {
		resp.BootFileName = file
	} else {
		resp.UpdateOption(dhcpv4.OptBootFileName(file)) // too long for the fixed field
	}
	if vendor != "" {
		resp.UpdateOption(dhcpv4.OptClassIdentifier(vendor))
	}
	if c.ipxe && !proxy {
		resp.UpdateOption(dhcpv4.OptGeneric(optionIPXEEncapsulated, []byte{ipxeNoPXEDHCP, 1, 1}))
	}
}

// proxyReply answers as a ProxyDHCP server: a PXE client's DISCOVER on port 67 gets an OFFER
// without an address, its REQUEST on port 4011 an ACK; both carry only the boot file.
func (s *Server) proxyReply(req *dhcpv4.DHCPv4, port int, src *net.UDPAddr, log *slog.Logger) (*dhcpv4.DHCPv4, *net.UDPAddr) {
	c := classify(req)
	if !c.netboot() {
		return nil, nil
	}
	var mt dhcpv4.MessageType
	switch t := req.MessageType(); {
	case port == ServerPort && t == dhcpv4.MessageTypeDiscover:
		mt = dhcpv4.MessageTypeOffer
	case port == PXEPort && (t == dhcpv4.MessageTypeRequest || t == dhcpv4.MessageTypeInform):
		mt = dhcpv4.MessageTypeAck
	default:
		return nil, nil
	}
	if file, _, _ := s.bootFile(c); file == "" {
		log.Info("no boot file for client", "client", c.String(), "arch", uint16(c.arch))
		return nil, nil
	}
	vendor := vendorPXE
	if c.http {
		vendor = vendorHTTP
	}
	resp, err := dhcpv4.NewReplyFromRequest(req,
		dhcpv4.WithMessageType(mt),
		dhcpv4.WithYourIP(net.IPv4zero),
		dhcpv4.WithClientIP(req.ClientIPAddr),
		dhcpv4.WithServerIP(net.IPv4zero),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(s.cfg.ServerIP.AsSlice())),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier(vendor)),
		dhcpv4.WithOptionCopied(req, optionClientUUID),
	)
	if err != nil {
		log.Warn("dhcp request not answered", "error", err)
		return nil, nil
	}
	if vendor == vendorPXE {
		resp.UpdateOption(dhcpv4.OptGeneric(optionVendorSpecific, []byte{pxeDiscoveryControl, 1, pxeBootFileOnly, 0xff}))
	}
	s.setBoot(resp, c, true)
	switch {
	case port == PXEPort && src != nil:
		return resp, src
	case !isZero(req.GatewayIPAddr):
		return resp, &net.UDPAddr{IP: req.GatewayIPAddr, Port: ServerPort}
	}
	return resp, &net.UDPAddr{IP: net.IPv4bcast, Port: ClientPort}
}
