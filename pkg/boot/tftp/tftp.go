// Package tftp serves the iPXE boot loaders (undionly.kpxe, ipxe.efi) read-only over TFTP to the
// PXE ROMs that cannot speak HTTP. Files come from one directory; names that would leave it are
// refused, and write requests are not supported.
package tftp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/pin/tftp/v3"
)

// Server is a read-only TFTP server. Create it with Listen, run it with Serve.
type Server struct {
	root *os.Root
	conn net.PacketConn
	srv  *tftp.Server
	log  *slog.Logger
}

// Listen opens the UDP socket on addr (e.g. ":69") and the directory. All transfers use that one
// socket (single-port mode), which keeps the server inside the network namespace it was opened in
// and firewall-friendly.
func Listen(addr, dir string, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("tftp: %w", err)
	}
	conn, err := net.ListenPacket("udp4", addr)
	if err != nil {
		root.Close()
		return nil, fmt.Errorf("tftp: listen %s: %w", addr, err)
	}
	s := &Server{root: root, conn: conn, log: log}
	s.srv = tftp.NewServer(s.read, nil)
	s.srv.EnableSinglePort()
	s.srv.SetTimeout(2 * time.Second)
	s.srv.SetRetries(5)
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.conn.LocalAddr() }

// Close releases the socket and directory of a server that is not served.
func (s *Server) Close() error {
	return errors.Join(s.conn.Close(), s.root.Close())
}

// Serve answers read requests until ctx ends; transfers in progress are then cut off.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.conn) }()
	s.log.Info("tftp server started", "addr", s.conn.LocalAddr().String())
	select {
	case <-ctx.Done():
	case err := <-errc:
		s.Close()
		return fmt.Errorf("tftp: serve: %w", err)
	}
	// In single-port mode Shutdown neither closes the socket nor waits; closing it ends Serve.
	s.srv.Shutdown()
	s.Close()
	select {
	case <-errc:
	case <-time.After(5 * time.Second):
	}
	return nil
}

// read sends one file. PXE ROMs usually ask for the size first (tsize) and then fetch again.
func (s *Server) read(filename string, rf io.ReaderFrom) error {
	log := s.log.With("file", filename)
	if ot, ok := rf.(tftp.OutgoingTransfer); ok {
		addr := ot.RemoteAddr()
		log = log.With("client", addr.String())
	}
	name := strings.TrimLeft(strings.ReplaceAll(filename, "\\", "/"), "/")
	f, err := s.root.Open(name)
	if err != nil {
		log.Info("tftp file refused", "error", err)
		return fmt.Errorf("file %s not found", filename) // the client learns no more than that
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat %s: %w", filename, err)
	}
	if !st.Mode().IsRegular() {
		log.Info("tftp file refused", "error", "not a regular file")
		return fmt.Errorf("%s is not a file", filename)
	}
	if ot, ok := rf.(tftp.OutgoingTransfer); ok {
		ot.SetSize(st.Size())
	}
	n, err := rf.ReadFrom(f)
	if err != nil {
		log.Info("tftp transfer failed", "bytes", n, "error", err)
		return err
	}
	log.Info("tftp file sent", "bytes", n)
	return nil
}
