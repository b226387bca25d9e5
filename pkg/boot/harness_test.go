package boot_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/apiserver"
	"github.com/metalforge/metalforge/pkg/auth"
	"github.com/metalforge/metalforge/pkg/boot"
	"github.com/metalforge/metalforge/pkg/boot/internal/netnstest"
	"github.com/metalforge/metalforge/pkg/bootrpc"
	"github.com/metalforge/metalforge/pkg/bootrpc/bootrpctest"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

const (
	partition = "p1"
	bootToken = "boot-secret"
	adminTok  = "x"
)

// golden compares got with testdata/name, or rewrites the file with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run with -update to create it): %v", err)
	}
	if d := cmp.Diff(string(want), got); d != "" {
		t.Errorf("%s differs (-want +got; run with -update if intended):\n%s", path, d)
	}
}

func testLog(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// fakeAPI runs the fake boot service with a partition-scoped boot token.
func fakeAPI(t testing.TB) (*bootrpctest.Machines, string) {
	m := bootrpctest.NewMachines()
	addr := bootrpctest.Serve(t, bootrpc.Config{Machines: m, Auth: bootrpctest.Tokens{
		bootToken: auth.Principal{TokenID: "t1", Name: "boot-server", Role: auth.RoleBoot, PartitionID: partition},
	}})
	return m, addr
}

// realAPI starts an in-process metal-api (SQLite) with partition p1 and returns its gRPC address.
func realAPI(t testing.TB, p api.Partition) string {
	ctx, cancel := context.WithCancel(context.Background())
	type addrs struct{ rest, grpc string }
	ready := make(chan addrs, 1)
	done := make(chan error, 1)
	go func() {
		done <- apiserver.Start(ctx, apiserver.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", GRPCListen: "127.0.0.1:0",
			AdminToken: adminTok, Ready: func(r, g net.Addr) { ready <- addrs{r.String(), g.String()} }},
			slog.New(slog.DiscardHandler))
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("metal-api: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("metal-api did not stop")
		}
	})
	var a addrs
	select {
	case a = <-ready:
	case err := <-done:
		t.Fatalf("metal-api: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("metal-api did not start")
	}
	body, _ := json.Marshal(p)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+a.rest+"/v1/partition", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+adminTok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("create partition: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("create partition: %s: %s", resp.Status, b)
	}
	return a.grpc
}

// start runs a boot server whose sockets are opened in ns (host namespace when nil) until the
// test ends.
func start(t testing.TB, ns *netnstest.NS, cfg boot.Config) boot.Addrs {
	t.Helper()
	a, _ := run(t, ns, cfg, testLog(t))
	return a
}

// run starts a boot server and returns its addresses and a function that stops it (also called
// when the test ends).
func run(t testing.TB, ns *netnstest.NS, cfg boot.Config, log *slog.Logger) (boot.Addrs, func()) {
	t.Helper()
	var s *boot.Server
	open := func() error {
		var err error
		s, err = boot.New(cfg, log)
		return err
	}
	var err error
	if ns != nil {
		err = ns.Do(open)
	} else {
		err = open()
	}
	if err != nil {
		t.Fatalf("boot.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("boot server: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Errorf("boot server did not stop")
			}
		})
	}
	t.Cleanup(stop)
	return s.Addrs(), stop
}

// tftpDir is a directory with fake boot loaders.
func tftpDir(t testing.TB) string {
	dir := t.TempDir()
	for _, f := range []string{"undionly.kpxe", "ipxe.efi"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("fake "+f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// client opens a raw DHCP client for mac on ifname inside ns.
func client(t testing.TB, ns *netnstest.NS, ifname string, mac net.HardwareAddr, opts ...nclient4.ClientOpt) *nclient4.Client {
	t.Helper()
	var c *nclient4.Client
	err := ns.Do(func() error {
		var err error
		c, err = nclient4.New(ifname, append([]nclient4.ClientOpt{nclient4.WithHWAddr(mac),
			nclient4.WithTimeout(time.Second), nclient4.WithRetry(3)}, opts...)...)
		return err
	})
	if err != nil {
		t.Fatalf("dhcp client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// dump renders the stable parts of a DHCP reply for golden files: header fields but the
// transaction ID, and every option decoded by type.
func dump(m *dhcpv4.DHCPv4) string {
	var b strings.Builder
	fmt.Fprintf(&b, "op %s, chaddr %s, flags %s\n", m.OpCode, m.ClientHWAddr, m.FlagsToString())
	fmt.Fprintf(&b, "ciaddr %s, yiaddr %s, siaddr %s, giaddr %s\n", m.ClientIPAddr, m.YourIPAddr, m.ServerIPAddr, m.GatewayIPAddr)
	fmt.Fprintf(&b, "sname %q, file %q\n", m.ServerHostName, m.BootFileName)
	codes := make([]int, 0, len(m.Options))
	for c := range m.Options {
		codes = append(codes, int(c))
	}
	sort.Ints(codes)
	for _, c := range codes {
		v := m.Options[uint8(c)]
		var s string
		switch c {
		case 1, 3, 6, 54:
			var ips []string
			for i := 0; i+4 <= len(v); i += 4 {
				ips = append(ips, net.IP(v[i:i+4]).String())
			}
			s = strings.Join(ips, ", ")
		case 51, 58, 59:
			s = (time.Duration(uint32(v[0])<<24|uint32(v[1])<<16|uint32(v[2])<<8|uint32(v[3])) * time.Second).String()
		case 53:
			s = dhcpv4.MessageType(v[0]).String()
		case 56, 60, 67:
			s = fmt.Sprintf("%q", v)
		default:
			s = hex.EncodeToString(v)
		}
		fmt.Fprintf(&b, "option %3d %-22s %s\n", c, optionNames[c], s)
	}
	return b.String()
}

var optionNames = map[int]string{1: "subnet mask", 3: "router", 6: "dns", 43: "vendor specific",
	51: "lease time", 53: "message type", 54: "server identifier", 56: "message", 58: "renewal time",
	59: "rebinding time", 60: "vendor class", 61: "client identifier", 67: "bootfile name",
	82: "relay agent info", 97: "client uuid", 175: "ipxe encapsulated"}

// await polls cond every 20ms for up to d.
func await(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cond()
}
