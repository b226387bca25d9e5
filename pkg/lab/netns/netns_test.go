package netns_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/metalforge/metalforge/pkg/lab/netns"
)

func TestNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a network namespace")
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "mfns" + hex.EncodeToString(b)
	if err := netns.Create(name); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := netns.Delete(name); err != nil {
			t.Error(err)
		}
		if netns.Exists(name) {
			t.Error("namespace exists after delete")
		}
	}()
	if err := netns.Create(name); err == nil {
		t.Error("creating an existing namespace succeeded")
	}
	if err := netns.AddBridge(name, "br0", netip.MustParsePrefix("10.99.0.1/24")); err != nil {
		t.Fatal(err)
	}
	if err := netns.AddTap(name, "tap0", "br0"); err != nil {
		t.Fatal(err)
	}
	if err := netns.AddLoopback(name, netip.MustParsePrefix("127.0.1.7/32")); err != nil {
		t.Fatal(err)
	}
	links, err := netns.Links(name)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"lo", "br0", "tap0"} {
		if !slices.Contains(links, want) {
			t.Errorf("links %v lack %s", links, want)
		}
	}

	// A listener inside, reached by a dialer inside; the host's namespace does not see it.
	l, err := netns.Listen(name, "tcp", "10.99.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			_, _ = c.Write([]byte("hi"))
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := netns.Dialer(name)(ctx, "tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(c)
	c.Close()
	if string(got) != "hi" {
		t.Errorf("read %q", got)
	}
	if c, err := (&net.Dialer{Timeout: time.Second}).Dial("tcp", l.Addr().String()); err == nil {
		c.Close()
		t.Error("the host namespace reaches the listener inside the lab namespace")
	}

	// A process started inside sees the namespace's devices.
	cmd := exec.Command("cat", "/proc/net/dev")
	out, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = out
	if err := netns.Start(name, cmd); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	raw, _ := os.ReadFile(out.Name())
	if !strings.Contains(string(raw), "tap0:") {
		t.Errorf("process in the namespace does not see tap0:\n%s", raw)
	}
	if err := netns.DeleteLink(name, "tap0"); err != nil {
		t.Error(err)
	}
	if err := netns.DeleteLink(name, "tap0"); err != nil {
		t.Errorf("deleting a missing link: %v", err)
	}
}
