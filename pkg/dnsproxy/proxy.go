// Package dnsproxy is the DNS proxy of a tenant cluster's firewall. It
// answers the tenant's DNS queries on UDP and TCP by forwarding every query
// unchanged to an upstream resolver and relaying the answer, and it learns
// the addresses of the names that the cluster's egress policy allows
// (ClusterwideNetworkPolicy egress[].toFQDNs): for every answer whose name
// matches a Selector it records the A/AAAA addresses with their TTL (clamped
// to [MinTTL, MaxTTL]). The firewall controller reads them per nftables set
// with Sets or Entries whenever Changed fires, and addresses drop out when
// their TTL runs out (driven by a timer on an expiry heap, not by polling).
//
// Which addresses count: an answer is used only when its rcode is NOERROR and
// its question equals the query's. The CNAME records of the answer section
// form chains; a selector that matches the query name, a CNAME target or any
// owner name in the answer selects that name and everything its CNAME chain
// leads to, and the A/AAAA records owned by selected names feed the
// selector's set. For an ordinary answer this means: if the query name
// matches, every address of the answer counts; if only a CNAME target
// matches, the addresses behind that target count. Records that belong to no
// selected chain (stray additions by a broken or hostile upstream) are
// ignored.
//
// Transport: a UDP query is forwarded over UDP, a TCP query over TCP. A UDP
// answer larger than the client's buffer (512 bytes, or its EDNS0 size) is
// truncated and carries the TC bit, so the client retries over TCP. An
// upstream that fails or does not answer within Timeout yields SERVFAIL.
package dnsproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Defaults for zero Config fields.
const (
	DefaultTimeout = 2 * time.Second
	DefaultMinTTL  = 60 * time.Second
	DefaultMaxTTL  = 24 * time.Hour
)

// Config configures a Proxy.
type Config struct {
	// Listen is host:port, served on UDP and TCP, e.g. "10.0.0.1:53". With
	// port 0 both get the same free port.
	Listen string
	// Upstream is host:port of the resolver queries are forwarded to.
	Upstream string
	// Timeout bounds one upstream exchange; default 2s.
	Timeout time.Duration
	// MinTTL: addresses are kept at least this long, since clients cache
	// answers too; default 60s.
	MinTTL time.Duration
	// MaxTTL: and at most this long; default 24h.
	MaxTTL time.Duration
}

// withDefaults returns cfg with zero fields defaulted, or an error.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MinTTL == 0 {
		cfg.MinTTL = DefaultMinTTL
	}
	if cfg.MaxTTL == 0 {
		cfg.MaxTTL = DefaultMaxTTL
	}
	switch {
	case cfg.Timeout < 0:
		return cfg, fmt.Errorf("invalid timeout %s", cfg.Timeout)
	case cfg.MinTTL < 0 || cfg.MaxTTL < 0 || cfg.MinTTL > cfg.MaxTTL:
		return cfg, fmt.Errorf("invalid ttl bounds [%s, %s]", cfg.MinTTL, cfg.MaxTTL)
	}
	if _, _, err := net.SplitHostPort(cfg.Listen); err != nil {
		return cfg, fmt.Errorf("parse listen address: %w", err)
	}
	host, port, err := net.SplitHostPort(cfg.Upstream)
	if err != nil {
		return cfg, fmt.Errorf("parse upstream address: %w", err)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 || host == "" {
		return cfg, fmt.Errorf("invalid upstream address %q", cfg.Upstream)
	}
	return cfg, nil
}

// Stats counts what the proxy did since New.
type Stats struct {
	Queries   uint64 // queries received (UDP and TCP)
	Forwarded uint64 // queries answered by upstream and relayed
	Failures  uint64 // queries answered with SERVFAIL because upstream failed
	Matched   uint64 // answers in which at least one selector matched an address
	Truncated uint64 // UDP answers truncated to the client's buffer (TC set)
}

// Proxy is a forwarding DNS proxy that learns allowed addresses. Create it
// with New; all methods are safe for concurrent use.
type Proxy struct {
	cfg   Config
	log   *slog.Logger
	store *store
	match atomic.Pointer[[]matcher]
	// udpUpstream is cfg.Upstream parsed once when it is an IP literal
	// (nil otherwise: dialled by name per query).
	udpUpstream *net.UDPAddr

	bufs sync.Pool // *[]byte of dns.MaxMsgSize for UDP answers

	running      atomic.Bool
	upstreamDown atomic.Bool // last exchange failed (for logging transitions)
	ready        chan struct{}
	mu           sync.Mutex
	udpAddr      net.Addr
	tcpAddr      net.Addr

	queries, forwarded, failures, matched, truncated atomic.Uint64
}

// New validates cfg and returns a Proxy with no selectors; Run serves it.
func New(cfg Config, log *slog.Logger) (*Proxy, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("configure dns proxy: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Proxy{cfg: cfg, log: log, store: newStore(), ready: make(chan struct{})}
	if ap, err := netip.ParseAddrPort(cfg.Upstream); err == nil {
		p.udpUpstream = net.UDPAddrFromAddrPort(ap)
	}
	p.bufs.New = func() any {
		b := make([]byte, dns.MaxMsgSize)
		return &b
	}
	p.match.Store(&[]matcher{})
	return p, nil
}

// SetSelectors replaces the selectors; it may be called at any time. If any
// selector is invalid it returns an error and keeps the old ones. Addresses
// learned through selectors that are no longer present are dropped at once;
// those of selectors that stay are kept. Setting the selectors in force
// again does nothing (no Changed signal, no recompile), so callers may set
// them on every reconcile.
func (p *Proxy) SetSelectors(sel []Selector) error {
	if p.store.same(sel) {
		return nil
	}
	ms := make([]matcher, 0, len(sel))
	var errs []error
	for _, s := range sel {
		m, err := compile(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ms = append(ms, m)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("set selectors: %w", err)
	}
	p.store.setSelectors(sel)
	p.match.Store(&ms)
	return nil
}

// Selectors returns the current selectors.
func (p *Proxy) Selectors() []Selector { return p.store.selectors() }

// Sets returns the current unexpired addresses per set, each sorted and
// deduplicated. Every selector's set is present, empty if nothing was learned.
func (p *Proxy) Sets() map[string][]netip.Addr {
	es := p.store.entriesAt(time.Now())
	out := make(map[string][]netip.Addr, len(es))
	for set, list := range es {
		addrs := make([]netip.Addr, len(list))
		for i, e := range list {
			addrs[i] = e.Addr
		}
		out[set] = addrs
	}
	return out
}

// Entries is Sets with each address's expiry, for nftables sets with
// per-element timeouts.
func (p *Proxy) Entries() map[string][]Entry { return p.store.entriesAt(time.Now()) }

// Changed receives (non-blocking, coalesced: one pending signal at most)
// whenever Sets may have changed: an address was learned, one expired, or
// the selectors were replaced. Read Sets after receiving.
func (p *Proxy) Changed() <-chan struct{} { return p.store.changed }

// Ready is closed once Run listens; Addr is valid from then on.
func (p *Proxy) Ready() <-chan struct{} { return p.ready }

// Addr returns the actual UDP and TCP listen addresses, or nils before Run
// listens.
func (p *Proxy) Addr() (udp, tcp net.Addr) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.udpAddr, p.tcpAddr
}

// Stats returns the counters.
func (p *Proxy) Stats() Stats {
	return Stats{
		Queries:   p.queries.Load(),
		Forwarded: p.forwarded.Load(),
		Failures:  p.failures.Load(),
		Matched:   p.matched.Load(),
		Truncated: p.truncated.Load(),
	}
}

// Run listens on cfg.Listen (UDP and TCP), serves until ctx is done and
// then closes the listeners, waiting for in-flight queries (each bounded by
// Timeout). It returns listen and serve errors, nil after ctx is done. A
// Proxy runs at most once.
func (p *Proxy) Run(ctx context.Context) error {
	if !p.running.CompareAndSwap(false, true) {
		return errors.New("run dns proxy: already running")
	}
	pc, ln, err := listen(p.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen dns: %w", err)
	}
	defer pc.Close()
	defer ln.Close()
	p.mu.Lock()
	p.udpAddr, p.tcpAddr = pc.LocalAddr(), ln.Addr()
	p.mu.Unlock()

	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { p.store.run(done) })
	defer wg.Wait()
	defer close(done)

	servers := []*dns.Server{
		{PacketConn: pc, Handler: dns.HandlerFunc(p.serveUDP), UDPSize: dns.MaxMsgSize},
		{Listener: ln, Handler: dns.HandlerFunc(p.serveTCP)},
	}
	errc := make(chan error, len(servers))
	started := make(chan struct{}, len(servers))
	for _, srv := range servers {
		srv.NotifyStartedFunc = func() { started <- struct{}{} }
		wg.Go(func() { errc <- srv.ActivateAndServe() })
	}
	up := 0
	for up < len(servers) {
		select {
		case <-started:
			up++
		case err := <-errc:
			// Close the listeners so the other server returns too.
			pc.Close()
			ln.Close()
			return fmt.Errorf("serve dns: %w", err)
		}
	}
	close(p.ready)
	udpAddr, tcpAddr := p.Addr()
	p.log.Info("dns proxy listening", "udp", udpAddr.String(), "tcp", tcpAddr.String(), "upstream", p.cfg.Upstream)

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
		serveErr = fmt.Errorf("serve dns: %w", serveErr)
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.Timeout+time.Second)
	defer cancel()
	for _, srv := range servers {
		if err := srv.ShutdownContext(sctx); err != nil && serveErr == nil && ctx.Err() == nil {
			serveErr = fmt.Errorf("shut down dns server: %w", err)
		}
	}
	p.log.Info("dns proxy stopped")
	return serveErr
}

// listen binds UDP and TCP on addr. When addr's port is 0 it looks for a
// port free on both, so clients can retry truncated answers over TCP on the
// same address.
func listen(addr string) (net.PacketConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, err
	}
	var lastErr error
	for range 20 {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, err
		}
		tcpAddr := addr
		if port == "0" {
			tcpAddr = net.JoinHostPort(host, strconv.Itoa(pc.LocalAddr().(*net.UDPAddr).Port))
		}
		ln, err := net.Listen("tcp", tcpAddr)
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		lastErr = err
		if port != "0" {
			break
		}
	}
	return nil, nil, lastErr
}
