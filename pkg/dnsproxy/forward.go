package dnsproxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

func (p *Proxy) serveUDP(w dns.ResponseWriter, req *dns.Msg) { p.serve(w, req, false) }
func (p *Proxy) serveTCP(w dns.ResponseWriter, req *dns.Msg) { p.serve(w, req, true) }

// serve forwards req to upstream over the same transport, learns addresses
// from the answer and relays it.
func (p *Proxy) serve(w dns.ResponseWriter, req *dns.Msg, tcp bool) {
	p.queries.Add(1)
	raw, reply, err := p.exchange(req, tcp)
	if err != nil {
		p.failures.Add(1)
		// Log the transition at Warn, every failure at Debug: a dead
		// upstream must not flood the log at the tenant's query rate.
		if p.upstreamDown.CompareAndSwap(false, true) {
			p.log.Warn("upstream dns failing", "upstream", p.cfg.Upstream, "tcp", tcp, "question", question(req), "err", err)
		} else {
			p.log.Debug("forward dns query", "upstream", p.cfg.Upstream, "tcp", tcp, "question", question(req), "err", err)
		}
		fail := new(dns.Msg).SetRcode(req, dns.RcodeServerFailure)
		fail.RecursionAvailable = true
		p.write(w, fail)
		return
	}
	p.forwarded.Add(1)
	if p.upstreamDown.CompareAndSwap(true, false) {
		p.log.Info("upstream dns recovered", "upstream", p.cfg.Upstream)
	}
	if n := p.learn(time.Now(), reply); n > 0 {
		p.matched.Add(1)
		p.log.Debug("learned addresses", "question", question(req), "addresses", n)
	}
	if !tcp {
		if size := clientBuffer(req); len(raw) > size {
			// Too big for the client: drop records until it fits, set TC.
			p.truncated.Add(1)
			reply.Truncate(size)
			p.write(w, reply)
			return
		}
	}
	if _, err := w.Write(raw); err != nil {
		p.log.Debug("write dns answer", "err", err)
	}
}

func (p *Proxy) write(w dns.ResponseWriter, m *dns.Msg) {
	if err := w.WriteMsg(m); err != nil {
		p.log.Debug("write dns answer", "err", err)
	}
}

// question is req's first question for logs.
func question(req *dns.Msg) string {
	if len(req.Question) == 0 {
		return ""
	}
	q := req.Question[0]
	return q.Name + " " + dns.TypeToString[q.Qtype]
}

// clientBuffer is the largest UDP answer the client of req accepts.
func clientBuffer(req *dns.Msg) int {
	if opt := req.IsEdns0(); opt != nil && int(opt.UDPSize()) > dns.MinMsgSize {
		return int(opt.UDPSize())
	}
	return dns.MinMsgSize
}

// exchange sends req to upstream and returns the answer as received (with
// the client's ID) and parsed. Towards upstream the query carries an ID of
// the proxy's choosing, not the client's, and each exchange uses a new
// socket (so a fresh random source port): a tenant cannot predict both and
// so cannot spoof answers that would open the firewall. An exchange is
// bounded by cfg.Timeout.
func (p *Proxy) exchange(req *dns.Msg, tcp bool) ([]byte, *dns.Msg, error) {
	query, err := req.Pack()
	if err != nil {
		return nil, nil, fmt.Errorf("pack query: %w", err)
	}
	id := uint16(rand.Uint32())
	binary.BigEndian.PutUint16(query, id)
	network := "udp"
	if tcp {
		network = "tcp"
	}
	deadline := time.Now().Add(p.cfg.Timeout)
	var conn net.Conn
	if p.udpUpstream != nil && !tcp {
		// Fast path: no address parsing or resolution per query.
		conn, err = net.DialUDP("udp", nil, p.udpUpstream)
	} else {
		d := net.Dialer{Deadline: deadline}
		conn, err = d.Dial(network, p.cfg.Upstream)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("dial upstream: %w", err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(deadline); err != nil {
		return nil, nil, fmt.Errorf("set deadline: %w", err)
	}
	co := &dns.Conn{Conn: conn}
	if _, err := co.Write(query); err != nil {
		return nil, nil, fmt.Errorf("send query: %w", err)
	}
	var buf *[]byte
	if !tcp {
		buf = p.bufs.Get().(*[]byte)
		defer p.bufs.Put(buf)
	}
	for {
		var raw []byte
		if tcp {
			raw, err = co.ReadMsgHeader(nil)
		} else {
			var n int
			n, err = conn.Read(*buf)
			raw = (*buf)[:n]
		}
		if err != nil {
			return nil, nil, fmt.Errorf("read answer: %w", err)
		}
		reply := new(dns.Msg)
		err = reply.Unpack(raw)
		switch {
		case err == nil && reply.Id == id && reply.Response && sameQuestion(req, reply):
			if !tcp {
				raw = bytes.Clone(raw)
			}
			binary.BigEndian.PutUint16(raw, req.Id)
			reply.Id = req.Id
			return raw, reply, nil
		case tcp && err != nil:
			return nil, nil, fmt.Errorf("parse answer: %w", err)
		case tcp:
			return nil, nil, errors.New("answer does not match query")
		}
		// UDP: ignore garbage and answers to other queries (late or
		// spoofed) until the deadline.
	}
}

// sameQuestion reports whether reply answers req's question. An answer
// without a question section (e.g. FORMERR) is accepted as is.
func sameQuestion(req, reply *dns.Msg) bool {
	if len(reply.Question) == 0 {
		return reply.Rcode != dns.RcodeSuccess || len(req.Question) == 0
	}
	if len(req.Question) != len(reply.Question) {
		return false
	}
	for i, q := range req.Question {
		r := reply.Question[i]
		if q.Qtype != r.Qtype || q.Qclass != r.Qclass || !strings.EqualFold(q.Name, r.Name) {
			return false
		}
	}
	return true
}

// learn records the addresses of reply that selectors match and returns how
// many (selector, address) pairs it recorded or refreshed.
func (p *Proxy) learn(now time.Time, reply *dns.Msg) int {
	ms := *p.match.Load()
	if len(ms) == 0 || reply.Rcode != dns.RcodeSuccess || len(reply.Question) == 0 || len(reply.Answer) == 0 {
		return 0
	}
	// Index the answer: CNAME edges, addresses per owner, all names.
	cnames := map[string][]string{}
	type addrTTL struct {
		addr netip.Addr
		ttl  uint32
	}
	addrs := map[string][]addrTTL{}
	names := []string{canonical(reply.Question[0].Name)}
	for _, rr := range reply.Answer {
		owner := canonical(rr.Header().Name)
		switch rr := rr.(type) {
		case *dns.CNAME:
			target := canonical(rr.Target)
			cnames[owner] = append(cnames[owner], target)
			names = append(names, owner, target)
		case *dns.A:
			if a, ok := netip.AddrFromSlice(rr.A); ok {
				addrs[owner] = append(addrs[owner], addrTTL{a.Unmap(), rr.Hdr.Ttl})
				names = append(names, owner)
			}
		case *dns.AAAA:
			if a, ok := netip.AddrFromSlice(rr.AAAA); ok {
				addrs[owner] = append(addrs[owner], addrTTL{a, rr.Hdr.Ttl})
				names = append(names, owner)
			}
		}
	}
	if len(addrs) == 0 {
		return 0
	}
	n := 0
	for i := range ms {
		m := &ms[i]
		// Names the selector matches, then everything their chains reach.
		selected := map[string]bool{}
		var queue []string
		for _, name := range names {
			if !selected[name] && m.match(name) {
				selected[name] = true
				queue = append(queue, name)
			}
		}
		for len(queue) > 0 {
			name := queue[0]
			queue = queue[1:]
			for _, t := range cnames[name] {
				if !selected[t] {
					selected[t] = true
					queue = append(queue, t)
				}
			}
		}
		for name := range selected {
			for _, a := range addrs[name] {
				p.store.record(now, m.sel, a.addr, p.ttl(a.ttl))
				n++
			}
		}
	}
	return n
}

// ttl clamps a record's TTL to [MinTTL, MaxTTL].
func (p *Proxy) ttl(seconds uint32) time.Duration {
	return min(max(time.Duration(seconds)*time.Second, p.cfg.MinTTL), p.cfg.MaxTTL)
}
