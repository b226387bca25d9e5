// Package boot is the partition boot service (boot-server) as a library: DHCPv4 (full or proxy,
// relay-aware) with addresses leased from metal-api, an IPv6 Router Advertisement responder that
// speeds up iPXE, iPXE scripts per MAC from metal-api's boot decision, boot assets and an OS image
// cache over HTTP, and the iPXE loaders over TFTP for legacy PXE ROMs. It keeps no state of its
// own: leases live in metal-api, so several boot-servers can serve one network.
//
// New opens every socket before it returns and Serve only uses them, so tests (and the lab) can
// call New on a thread inside a network namespace and Serve from anywhere. cmd/boot-server maps
// flags onto Config and calls Run.
package boot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/metalforge/metalforge/pkg/boot/cache"
	"github.com/metalforge/metalforge/pkg/boot/dhcp"
	"github.com/metalforge/metalforge/pkg/boot/ipxe"
	"github.com/metalforge/metalforge/pkg/boot/ra"
	"github.com/metalforge/metalforge/pkg/boot/tftp"
)

// Server is a boot service with its sockets open. Serve it, or Close it.
type Server struct {
	cfg     Config
	log     *slog.Logger
	httpL   net.Listener
	httpSrv *http.Server
	dhcp    *dhcp.Server  // nil without an interface
	ra      *ra.Responder // nil without an interface or when disabled
	tftp    *tftp.Server  // nil when disabled
	api     io.Closer     // the metal-api connection
	roots   []*os.Root    // assets and boot loader directories served over HTTP
	// downloads is the lifetime of image downloads, which outlive the request that starts them;
	// stopDownloads ends it.
	downloads     context.Context
	stopDownloads context.CancelFunc
}

// Run starts the boot service and serves until ctx ends.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	s, err := New(cfg, log)
	if err != nil {
		return err
	}
	return s.Serve(ctx)
}

// New validates cfg and opens every listener.
func New(cfg Config, log *slog.Logger) (_ *Server, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("boot config: %w", err)
	}
	s := &Server{cfg: cfg, log: log}
	s.downloads, s.stopDownloads = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if cfg.Interface != "" {
		if err := s.resolveInterface(); err != nil {
			return nil, err
		}
	}
	if s.httpL, err = net.Listen("tcp", cfg.HTTPListen); err != nil {
		return nil, fmt.Errorf("listen http: %w", err)
	}
	if s.cfg.HTTPAddr == "" {
		s.cfg.HTTPAddr = s.cfg.ServerIP.String()
		if port := s.httpL.Addr().(*net.TCPAddr).Port; port != 80 {
			s.cfg.HTTPAddr = net.JoinHostPort(s.cfg.HTTPAddr, strconv.Itoa(port))
		}
	}
	base := "http://" + s.cfg.HTTPAddr

	svc, conn, err := dial(context.Background(), cfg.API, cfg.Token)
	if err != nil {
		return nil, err
	}
	s.api = conn
	backend := metalAPI{svc: svc, partition: cfg.PartitionID, timeout: cfg.APITimeout}

	mux, err := s.routes(base, backend)
	if err != nil {
		return nil, err
	}
	s.httpSrv = &http.Server{Handler: accessLog(mux, log), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}

	if !cfg.DisableTFTP {
		if s.tftp, err = tftp.Listen(cfg.TFTPListen, cfg.TFTPDir, log); err != nil {
			return nil, fmt.Errorf("%w (install the ipxe package, or disable tftp)", err)
		}
	}
	if cfg.Interface == "" {
		log.Warn("no interface: dhcp and router advertisements are off")
		return s, nil
	}
	boot := dhcp.Boot{ScriptURL: base + "/boot.ipxe"}
	if !cfg.DisableTFTP {
		boot.BIOSFile, boot.EFIFile = cfg.BIOSFile, cfg.EFIFile
		boot.EFIHTTPURL = base + "/ipxe/" + cfg.EFIFile
	}
	s.dhcp, err = dhcp.Listen(cfg.Interface, dhcp.Config{
		Mode: cfg.Mode, ServerIP: s.cfg.ServerIP, Subnet: s.cfg.Subnet, Relayed: cfg.Relayed,
		LeaseTime: cfg.LeaseTime, Boot: boot, Backend: backend, Timeout: cfg.APITimeout, Log: log,
	})
	if err != nil {
		return nil, err
	}
	if !cfg.DisableRA {
		if s.ra, err = ra.Listen(cfg.Interface, log); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// resolveInterface takes the server IP and the subnet prefix from the interface when not set.
func (s *Server) resolveInterface() error {
	ifi, err := net.InterfaceByName(s.cfg.Interface)
	if err != nil {
		return fmt.Errorf("interface %s: %w", s.cfg.Interface, err)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return fmt.Errorf("interface %s: %w", s.cfg.Interface, err)
	}
	var prefixes []netip.Prefix
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if p, err := netip.ParsePrefix(n.String()); err == nil && p.Addr().Is4() {
				prefixes = append(prefixes, p)
			}
		}
	}
	if !s.cfg.ServerIP.IsValid() {
		if len(prefixes) == 0 {
			return fmt.Errorf("interface %s has no IPv4 address; set the server ip", s.cfg.Interface)
		}
		s.cfg.ServerIP = prefixes[0].Addr()
	}
	if !s.cfg.Subnet.Prefix.IsValid() {
		for _, p := range prefixes {
			if p.Contains(s.cfg.ServerIP) {
				s.cfg.Subnet.Prefix = p.Masked()
			}
		}
		if !s.cfg.Subnet.Prefix.IsValid() && s.cfg.Mode == dhcp.ModeFull {
			return fmt.Errorf("interface %s has no address in the network of %s; set the netmask", s.cfg.Interface, s.cfg.ServerIP)
		}
	}
	return nil
}

// Addrs returns the bound addresses.
func (s *Server) Addrs() Addrs {
	a := Addrs{HTTP: s.httpL.Addr()}
	if s.tftp != nil {
		a.TFTP = s.tftp.Addr()
	}
	return a
}

// Close releases everything New opened; Serve does it when it returns.
func (s *Server) Close() error {
	s.stopDownloads()
	var cs []io.Closer
	if s.httpL != nil {
		cs = append(cs, s.httpL)
	}
	if s.dhcp != nil {
		cs = append(cs, s.dhcp)
	}
	if s.ra != nil {
		cs = append(cs, s.ra)
	}
	if s.tftp != nil {
		cs = append(cs, s.tftp)
	}
	if s.api != nil {
		cs = append(cs, s.api)
	}
	for _, r := range s.roots {
		cs = append(cs, r)
	}
	var errs []error
	for _, c := range cs {
		if err := c.Close(); err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, os.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Serve runs every component until ctx ends or one fails, then closes everything.
func (s *Server) Serve(ctx context.Context) error {
	defer s.Close()
	if s.cfg.Ready != nil {
		s.cfg.Ready(s.Addrs())
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := s.httpSrv.Serve(s.httpL); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve http: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.stopDownloads()
		if err := s.httpSrv.Shutdown(sctx); err != nil {
			s.httpSrv.Close()
		}
		return nil
	})
	if s.dhcp != nil {
		g.Go(func() error { return s.dhcp.Serve(gctx) })
	}
	if s.ra != nil {
		g.Go(func() error { return s.ra.Serve(gctx) })
	}
	if s.tftp != nil {
		g.Go(func() error { return s.tftp.Serve(gctx) })
	}
	s.log.Info("boot server started", "http", s.httpL.Addr().String(), "httpAddr", s.cfg.HTTPAddr,
		"interface", s.cfg.Interface, "mode", string(s.cfg.Mode), "partition", s.cfg.PartitionID)
	err := g.Wait()
	if ctx.Err() != nil && err == nil {
		s.log.Info("boot server stopped")
	}
	return err
}

// routes builds the HTTP handler.
func (s *Server) routes(base string, backend metalAPI) (*http.ServeMux, error) {
	mux := http.NewServeMux()
	h, err := ipxe.New(ipxe.Config{BaseURL: base, RetryDelay: s.cfg.RetryDelay, Backend: backend,
		Timeout: s.cfg.APITimeout, Log: s.log,
		Hammer: ipxe.Hammer{API: s.cfg.HammerAPI, PartitionID: s.cfg.PartitionID, Token: s.cfg.HammerToken}})
	if err != nil {
		return nil, err
	}
	h.Register(mux)
	if s.cfg.HammerToken == "" {
		s.log.Warn("no hammer token: hammers boot without mf.token")
	}
	if s.cfg.AssetsDir != "" {
		root, err := os.OpenRoot(s.cfg.AssetsDir)
		if err != nil {
			return nil, fmt.Errorf("assets: %w", err)
		}
		s.roots = append(s.roots, root)
		mux.Handle("GET /assets/{path...}", files(root, "path"))
	}
	if !s.cfg.DisableTFTP {
		root, err := os.OpenRoot(s.cfg.TFTPDir)
		if err != nil {
			return nil, fmt.Errorf("boot loaders: %w (install the ipxe package, or disable tftp)", err)
		}
		s.roots = append(s.roots, root)
		mux.Handle("GET /ipxe/{file}", files(root, "file"))
	}
	if s.cfg.ImageUpstream != "" {
		c, err := cache.New(s.downloads, cache.Config{Dir: s.cfg.CacheDir, Upstream: s.cfg.ImageUpstream, Log: s.log})
		if err != nil {
			return nil, err
		}
		mux.Handle("GET /images/{name...}", c)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	return mux, nil
}
