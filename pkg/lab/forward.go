package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/metalforge/metalforge/pkg/lab/netns"
)

// Forward accepts TCP connections on listen (in the caller's namespace, e.g. 127.0.0.1:8080 on
// the host) and connects each to target inside the namespace ns, until ctx ends. The outgoing
// socket is opened on a thread inside ns, so no route or veth into the namespace is needed.
func Forward(ctx context.Context, listen, ns, target string, log *slog.Logger) error {
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("forward: %w", err)
	}
	return serveForward(ctx, l, netns.Dialer(ns), target, log)
}

func serveForward(ctx context.Context, l net.Listener, dial func(context.Context, string, string) (net.Conn, error), target string, log *slog.Logger) error {
	log.Info("forwarding", "listen", l.Addr().String(), "target", target)
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	sem := make(chan struct{}, 256)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("forward accept: %w", err)
		}
		select {
		case sem <- struct{}{}:
		default:
			log.Warn("forward connection refused: too many connections", "remote", c.RemoteAddr().String())
			c.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			pipe(ctx, c, dial, target, log)
		}()
	}
}

// pipe connects one accepted connection to target and copies both ways until both sides are
// done or ctx ends.
func pipe(ctx context.Context, c net.Conn, dial func(context.Context, string, string) (net.Conn, error), target string, log *slog.Logger) {
	defer c.Close()
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	up, err := dial(dctx, "tcp", target)
	cancel()
	if err != nil {
		log.Warn("forward dial failed", "target", target, "err", err)
		return
	}
	defer up.Close()
	stop := context.AfterFunc(ctx, func() { c.Close(); up.Close() })
	defer stop()
	var wg sync.WaitGroup
	wg.Add(2)
	half := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		} else {
			dst.Close()
		}
	}
	go half(up, c)
	go half(c, up)
	wg.Wait()
}
