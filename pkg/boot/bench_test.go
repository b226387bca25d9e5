package boot_test

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/boot"
	"github.com/metalforge/metalforge/pkg/boot/dhcp"
	"github.com/metalforge/metalforge/pkg/boot/internal/netnstest"
)

var (
	benchClients     = flag.Int("boot.clients", 1000, "simulated DHCP+iPXE clients per benchmark iteration")
	benchConcurrency = flag.Int("boot.concurrency", 32, "clients booting at the same time")
)

const benchSrv = "10.92.0.1"

// clientRun is what one batch of simulated clients measured.
type clientRun struct {
	clients, failed int
	elapsed         time.Duration
	dora, script    []time.Duration
}

func (r clientRun) rate() float64 { return float64(r.clients-r.failed) / r.elapsed.Seconds() }

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// doraClient runs the DHCP exchanges of many simulated clients over one raw socket (nclient4's
// broadcast conn), dispatching replies by transaction ID. One socket for all clients keeps the
// harness cheap: an nclient4.Client per MAC costs a socket, a goroutine and ~15 ms to close.
type doraClient struct {
	conn net.PacketConn
	mu   sync.Mutex
	wait map[dhcpv4.TransactionID]chan *dhcpv4.DHCPv4
}

func newDoraClient(b *testing.B, cli *netnstest.NS) *doraClient {
	d := &doraClient{wait: map[dhcpv4.TransactionID]chan *dhcpv4.DHCPv4{}}
	if err := cli.Do(func() (err error) { d.conn, err = nclient4.NewRawUDPConn("eth0", nclient4.ClientPort); return err }); err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, _, err := d.conn.ReadFrom(buf)
			if err != nil {
				return
			}
			m, err := dhcpv4.FromBytes(buf[:n])
			if err != nil || m.OpCode != dhcpv4.OpcodeBootReply {
				continue
			}
			d.mu.Lock()
			ch := d.wait[m.TransactionID]
			d.mu.Unlock()
			if ch != nil {
				select {
				case ch <- m:
				default:
				}
			}
		}
	}()
	b.Cleanup(func() { d.conn.Close(); <-done })
	return d
}

// exchange broadcasts req and returns the first reply of type want, retrying three times.
func (d *doraClient) exchange(ctx context.Context, req *dhcpv4.DHCPv4, want dhcpv4.MessageType) (*dhcpv4.DHCPv4, error) {
	ch := make(chan *dhcpv4.DHCPv4, 4)
	d.mu.Lock()
	d.wait[req.TransactionID] = ch
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.wait, req.TransactionID)
		d.mu.Unlock()
	}()
	for range 3 {
		if _, err := d.conn.WriteTo(req.ToBytes(), nclient4.DefaultServers); err != nil {
			return nil, err
		}
		timeout := time.After(2 * time.Second)
	read:
		for {
			select {
			case m := <-ch:
				if m.MessageType() == want {
					return m, nil
				}
			case <-timeout:
				break read
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
	return nil, fmt.Errorf("no %s for %s", want, req.ClientHWAddr)
}

// simulate boots n clients, conc at a time, from the client namespace: DISCOVER/OFFER/REQUEST/ACK
// as iPXE (user class iPXE, broadcast flag) with a fresh MAC, then GET /host/<mac>.ipxe.
func simulate(ctx context.Context, d *doraClient, hc *http.Client, n, conc int, prefix [3]byte) clientRun {
	var mu sync.Mutex
	r := clientRun{clients: n}
	var next atomic.Int64
	mods := append(slices.Clone(ipxeClient), dhcpv4.WithBroadcast(true))
	begin := time.Now()
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(n) || ctx.Err() != nil {
					return
				}
				mac := net.HardwareAddr{0x02, prefix[0], prefix[1], prefix[2], byte(i >> 8), byte(i)}
				dora, script, err := bootOne(ctx, d, hc, mac, mods)
				mu.Lock()
				if err != nil {
					r.failed++
				} else {
					r.dora, r.script = append(r.dora, dora), append(r.script, script)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	r.elapsed = time.Since(begin)
	return r
}

func bootOne(ctx context.Context, d *doraClient, hc *http.Client, mac net.HardwareAddr, mods []dhcpv4.Modifier) (time.Duration, time.Duration, error) {
	t0 := time.Now()
	disc, err := dhcpv4.NewDiscovery(mac, mods...)
	if err != nil {
		return 0, 0, err
	}
	offer, err := d.exchange(ctx, disc, dhcpv4.MessageTypeOffer)
	if err != nil {
		return 0, 0, err
	}
	req, err := dhcpv4.NewRequestFromOffer(offer, mods...)
	if err != nil {
		return 0, 0, err
	}
	ack, err := d.exchange(ctx, req, dhcpv4.MessageTypeAck)
	if err != nil {
		return 0, 0, err
	}
	t1 := time.Now()
	url := strings.Replace(ack.BootFileName, "/boot.ipxe", "/host/"+strings.ReplaceAll(mac.String(), ":", "-")+".ipxe", 1)
	hreq, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := hc.Do(hreq)
	if err != nil {
		return 0, 0, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || !strings.Contains(string(body), "kernel ") {
		return 0, 0, fmt.Errorf("script: %d %v", resp.StatusCode, err)
	}
	return t1.Sub(t0), time.Since(t1), nil
}

// BenchmarkBootClients boots simulated DHCP+iPXE clients against boot-server (leasing from a
// real in-process metal-api on SQLite) and against dnsmasq configured alike (same range, iPXE
// user class → HTTP script URL and option 175, no TFTP; its scripts come from a static HTTP
// server, as dnsmasq has none), in the same namespaces, and prints both side by side.
//
//	go test -run '^$' -bench BootClients -benchtime 1x ./pkg/boot
func BenchmarkBootClients(b *testing.B) {
	netnstest.Require(b)
	dnsmasq, err := exec.LookPath("dnsmasq")
	if err != nil {
		b.Skip("skipping: dnsmasq (Debian package dnsmasq-base) is not installed")
	}
	srv, cli := netnstest.New(b, "srv"), netnstest.New(b, "cli")
	netnstest.Veth(b, srv, "eth0", benchSrv+"/16", cli, "eth0", "10.92.0.2/16")
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: cli.DialContext,
		MaxIdleConnsPerHost: *benchConcurrency}}
	apiAddr := realAPI(b, api.Partition{Meta: api.Meta{ID: partition}, Boot: api.BootConfig{
		KernelURL: "http://" + benchSrv + "/assets/vmlinuz", InitrdURL: "http://" + benchSrv + "/assets/hammer.img"}})
	first, last := "10.92.1.0", "10.92.255.250"
	results := map[string]clientRun{}
	dc := newDoraClient(b, cli)
	var iteration byte

	b.Run("boot-server", func(b *testing.B) {
		cfg := boot.Config{Interface: "eth0", HTTPListen: ":80", DisableTFTP: true, API: apiAddr, Token: adminTok,
			PartitionID: partition, HammerToken: "hammer-secret",
			Subnet: dhcp.Subnet{First: netip.MustParseAddr(first), Last: netip.MustParseAddr(last)}}
		_, stop := run(b, srv, cfg, slog.New(slog.DiscardHandler))
		defer stop()
		for b.Loop() {
			iteration++
			results[b.Name()] = simulate(b.Context(), dc, hc, *benchClients, *benchConcurrency, [3]byte{0xb0, iteration, 0})
		}
		b.ReportMetric(results[b.Name()].rate(), "clients/s")
	})

	b.Run("dnsmasq", func(b *testing.B) {
		stop := startDnsmasq(b, srv, dnsmasq, first, last)
		defer stop()
		for b.Loop() {
			iteration++
			results[b.Name()] = simulate(b.Context(), dc, hc, *benchClients, *benchConcurrency, [3]byte{0xd0, iteration, 0})
		}
		b.ReportMetric(results[b.Name()].rate(), "clients/s")
	})

	var out strings.Builder
	fmt.Fprintf(&out, "%d clients, %d at a time, DHCP DORA (iPXE) + GET /host/<mac>.ipxe\n", *benchClients, *benchConcurrency)
	fmt.Fprintf(&out, "%-32s %8s %8s %12s %12s %12s %12s\n", "server", "failed", "total", "clients/s", "dora p50", "dora p99", "script p50")
	var names []string
	for n := range results {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		r := results[n]
		fmt.Fprintf(&out, "%-32s %8d %8s %12.0f %12s %12s %12s\n", n, r.failed, r.elapsed.Round(time.Millisecond), r.rate(),
			pct(r.dora, .5).Round(10*time.Microsecond), pct(r.dora, .99).Round(10*time.Microsecond), pct(r.script, .5).Round(10*time.Microsecond))
	}
	if bs, dm := results["BenchmarkBootClients/boot-server"], results["BenchmarkBootClients/dnsmasq"]; dm.rate() > 0 {
		fmt.Fprintf(&out, "boot-server/dnsmasq throughput ratio: %.2f\n", bs.rate()/dm.rate())
	}
	fmt.Print(out.String()) // b.Log of a parent benchmark is not shown
}

// startDnsmasq runs dnsmasq in ns with a DHCP range and the iPXE rules equivalent to
// boot-server's, and a static HTTP server for the per-host scripts; stop ends both.
func startDnsmasq(b *testing.B, ns *netnstest.NS, bin, first, last string) func() {
	dir := b.TempDir()
	script := "#!ipxe\nkernel http://" + benchSrv + "/assets/vmlinuz initrd=initrd.magic\ninitrd --name initrd.magic http://" +
		benchSrv + "/assets/hammer.img\nboot\n"
	var l net.Listener
	if err := ns.Do(func() (err error) { l, err = net.Listen("tcp", benchSrv+":80"); return err }); err != nil {
		b.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, script)
	}), ReadHeaderTimeout: 5 * time.Second}
	go hs.Serve(l)

	ctx, cancel := context.WithCancel(context.Background())
	cmd := ns.Command(ctx, bin, "--keep-in-foreground", "--conf-file=/dev/null", "--port=0",
		"--interface=eth0", "--bind-interfaces", "--user=root", "--group=root",
		"--pid-file="+filepath.Join(dir, "pid"), "--dhcp-leasefile="+filepath.Join(dir, "leases"),
		"--log-facility="+filepath.Join(dir, "log"), "--quiet-dhcp", "--no-ping", "--dhcp-authoritative",
		"--dhcp-lease-max=100000", "--dhcp-range="+first+","+last+",255.255.0.0,1h",
		"--dhcp-userclass=set:ipxe,iPXE", "--dhcp-boot=tag:ipxe,http://"+benchSrv+"/boot.ipxe",
		"--dhcp-option=tag:ipxe,encap:175,176,1b")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		b.Fatalf("start dnsmasq: %v", err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			_ = cmd.Wait()
			sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer scancel()
			_ = hs.Shutdown(sctx)
		})
	}
	b.Cleanup(stop)
	// dnsmasq is ready when it holds port 67.
	ok := await(10*time.Second, func() bool {
		out, _ := exec.Command("ip", "netns", "exec", ns.Name, "ss", "-lnu", "sport", "= :67").Output()
		return strings.Contains(string(out), ":67")
	})
	if !ok {
		log, _ := os.ReadFile(filepath.Join(dir, "log"))
		b.Fatalf("dnsmasq did not start: %s", log)
	}
	return stop
}
