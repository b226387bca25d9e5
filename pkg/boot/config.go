package boot

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/metalforge/metalforge/pkg/boot/dhcp"
)

// Defaults of Config.
const (
	DefaultMode       = dhcp.ModeFull
	DefaultHTTPListen = ":80"
	DefaultTFTPListen = ":69"
	DefaultTFTPDir    = "/usr/lib/ipxe" // Debian's ipxe package: undionly.kpxe, ipxe.efi
	DefaultCacheDir   = "/var/cache/boot-server/images"
	DefaultLeaseTime  = time.Hour
	DefaultAPITimeout = 5 * time.Second
	DefaultRetryDelay = 10 * time.Second
	DefaultBIOSFile   = "undionly.kpxe"
	DefaultEFIFile    = "ipxe.efi"
)

// Config is everything the boot service needs. Zero values take the defaults in Defaults.
type Config struct {
	// Interface is the PXE network interface DHCP and router advertisements are bound to. Empty
	// disables both (HTTP and TFTP only).
	Interface string
	// Mode is dhcp.ModeFull or dhcp.ModeProxy.
	Mode dhcp.Mode
	// ServerIP is this server's IPv4 address on Interface (server identifier, next-server and
	// the host of the URLs machines get); default: the interface's first IPv4 address.
	ServerIP netip.Addr
	// Subnet is the interface's network for full mode; a zero Prefix is taken from the
	// interface address.
	Subnet dhcp.Subnet
	// Relayed are networks behind DHCP relay agents.
	Relayed   []dhcp.Subnet
	LeaseTime time.Duration
	// DisableRA turns the IPv6 Router Advertisement responder off.
	DisableRA bool

	// HTTPListen is the HTTP listen address; HTTPAddr the host:port machines use to reach it
	// (default ServerIP with HTTPListen's port).
	HTTPListen string
	HTTPAddr   string
	// AssetsDir holds boot assets (kernel, initrd) served under /assets/; empty: none.
	AssetsDir string
	// ImageUpstream is the base URL OS images are proxied from under /images/; empty: none.
	ImageUpstream string
	CacheDir      string

	// TFTPListen and TFTPDir configure the read-only TFTP server; DisableTFTP turns it off.
	TFTPListen  string
	TFTPDir     string
	DisableTFTP bool
	// BIOSFile and EFIFile are the TFTP boot loaders for BIOS and UEFI x64 PXE ROMs.
	BIOSFile, EFIFile string

	// API is metal-api's gRPC target, Token the bearer token of this boot-server.
	API, Token string
	// PartitionID is the partition this boot-server serves.
	PartitionID string
	// HammerAPI is metal-api's gRPC address as hammers reach it (default API); HammerToken the
	// partition boot secret hammers authenticate with.
	HammerAPI, HammerToken string
	// APITimeout bounds every metal-api call.
	APITimeout time.Duration
	// RetryDelay is how long a machine waits before asking again after an error.
	RetryDelay time.Duration

	// Ready, if set, is called with the bound addresses once every listener is open.
	Ready func(Addrs)
}

// Addrs are the addresses a running boot service listens on.
type Addrs struct {
	HTTP net.Addr
	// TFTP is nil when TFTP is disabled.
	TFTP net.Addr
}

// Defaults fills zero fields.
func (c *Config) Defaults() {
	if c.Mode == "" {
		c.Mode = DefaultMode
	}
	if c.HTTPListen == "" {
		c.HTTPListen = DefaultHTTPListen
	}
	if c.TFTPListen == "" {
		c.TFTPListen = DefaultTFTPListen
	}
	if c.TFTPDir == "" {
		c.TFTPDir = DefaultTFTPDir
	}
	if c.CacheDir == "" {
		c.CacheDir = DefaultCacheDir
	}
	if c.LeaseTime <= 0 {
		c.LeaseTime = DefaultLeaseTime
	}
	if c.APITimeout <= 0 {
		c.APITimeout = DefaultAPITimeout
	}
	if c.RetryDelay <= 0 {
		c.RetryDelay = DefaultRetryDelay
	}
	if c.BIOSFile == "" {
		c.BIOSFile = DefaultBIOSFile
	}
	if c.EFIFile == "" {
		c.EFIFile = DefaultEFIFile
	}
	if c.HammerAPI == "" {
		c.HammerAPI = c.API
	}
}

// Validate checks a defaulted config for what can be checked without the network.
func (c *Config) Validate() error {
	var errs []error
	if c.API == "" || c.Token == "" {
		errs = append(errs, errors.New("metal-api target and token are required"))
	}
	if c.PartitionID == "" {
		errs = append(errs, errors.New("partition id is required"))
	}
	if c.Mode != dhcp.ModeFull && c.Mode != dhcp.ModeProxy {
		errs = append(errs, fmt.Errorf("mode %q is neither full nor proxy", c.Mode))
	}
	if c.ServerIP.IsValid() && !c.ServerIP.Is4() {
		errs = append(errs, fmt.Errorf("server ip %s is not IPv4", c.ServerIP))
	}
	if c.Interface == "" && !c.ServerIP.IsValid() && c.HTTPAddr == "" {
		errs = append(errs, errors.New("without an interface, server ip or http address is required"))
	}
	if c.Interface != "" && c.Mode == dhcp.ModeFull && (!c.Subnet.First.IsValid() || !c.Subnet.Last.IsValid()) {
		errs = append(errs, errors.New("full mode needs a range (first and last address)"))
	}
	return errors.Join(errs...)
}

// ParseSubnet parses a relayed subnet "CIDR,FIRST-LAST[,ROUTER[,DNS...]]", e.g.
// "10.1.0.0/24,10.1.0.100-10.1.0.200,10.1.0.1".
func ParseSubnet(s string) (dhcp.Subnet, error) {
	parts := strings.Split(s, ",")
	if len(parts) < 2 {
		return dhcp.Subnet{}, fmt.Errorf("subnet %q: want CIDR,FIRST-LAST[,ROUTER[,DNS...]]", s)
	}
	var sub dhcp.Subnet
	var err error
	if sub.Prefix, err = netip.ParsePrefix(strings.TrimSpace(parts[0])); err != nil {
		return dhcp.Subnet{}, fmt.Errorf("subnet %q: %w", s, err)
	}
	sub.Prefix = sub.Prefix.Masked()
	first, last, ok := strings.Cut(parts[1], "-")
	if !ok {
		return dhcp.Subnet{}, fmt.Errorf("subnet %q: range %q is not FIRST-LAST", s, parts[1])
	}
	if sub.First, err = netip.ParseAddr(strings.TrimSpace(first)); err != nil {
		return dhcp.Subnet{}, fmt.Errorf("subnet %q: %w", s, err)
	}
	if sub.Last, err = netip.ParseAddr(strings.TrimSpace(last)); err != nil {
		return dhcp.Subnet{}, fmt.Errorf("subnet %q: %w", s, err)
	}
	for i, p := range parts[2:] {
		a, err := netip.ParseAddr(strings.TrimSpace(p))
		if err != nil {
			return dhcp.Subnet{}, fmt.Errorf("subnet %q: %w", s, err)
		}
		if i == 0 {
			sub.Router = a
		} else {
			sub.DNS = append(sub.DNS, a)
		}
	}
	return sub, sub.Validate()
}
