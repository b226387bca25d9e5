package firewall

import (
	"context"
	"fmt"
	"log/slog"

	"sigs.k8s.io/controller-runtime/pkg/event"

	fwv1 "github.com/metalforge/metalforge/pkg/apis/firewall/v1"
	"github.com/metalforge/metalforge/pkg/dnsproxy"
)

// fqdn connects the DNS proxy to the ruleset: the plan's toFQDNs selectors go to the proxy, and
// the proxy's learned addresses come back as the FQDN sets on every Changed signal.
type fqdn struct {
	proxy *dnsproxy.Proxy
}

func newFQDN(cfg Config, log *slog.Logger) (*fqdn, error) {
	p, err := dnsproxy.New(dnsproxy.Config{
		Listen:   cfg.Firewall.DNSListen,
		Upstream: cfg.Firewall.DNSUpstream,
		Timeout:  cfg.DNS.Timeout,
		MinTTL:   cfg.DNS.MinTTL,
		MaxTTL:   cfg.DNS.MaxTTL,
	}, log.With("component", "dnsproxy"))
	if err != nil {
		return nil, fmt.Errorf("create dns proxy: %w", err)
	}
	return &fqdn{proxy: p}, nil
}

// Proxy returns the controller's DNS proxy (nil when the firewall runs none).
func (c *Controller) Proxy() *dnsproxy.Proxy {
	if c.fqdn == nil {
		return nil
	}
	return c.fqdn.proxy
}

// setSelectors hands the selectors to the proxy (a no-op there when they are unchanged).
func (f *fqdn) setSelectors(sels []dnsproxy.Selector) error {
	if err := f.proxy.SetSelectors(sels); err != nil {
		return fmt.Errorf("set dns selectors: %w", err)
	}
	return nil
}

// forward turns the proxy's change signals into controller events until ctx is done.
func (f *fqdn) forward(ctx context.Context, ch chan<- event.GenericEvent) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.proxy.Changed():
			select {
			case ch <- event.GenericEvent{Object: &fwv1.ClusterwideNetworkPolicy{}}:
			case <-ctx.Done():
				return
			}
		}
	}
}
