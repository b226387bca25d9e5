package sysinit

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseCmdline(t *testing.T) {
	got := ParseCmdline(`BOOT_IMAGE=/vmlinuz console=ttyS0 mf.api=10.0.2.2:50051 mf.token=abc=def  mf.debug quiet msg="a b"` + "\n")
	want := map[string]string{"BOOT_IMAGE": "/vmlinuz", "console": "ttyS0", "mf.api": "10.0.2.2:50051", "mf.token": "abc=def",
		"mf.debug": "", "quiet": "", "msg": "a b"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("cmdline (-want +got):\n%s", d)
	}
}

func TestCmdline(t *testing.T) {
	m, err := Cmdline("")
	if err != nil {
		t.Fatal(err)
	}
	if len(m) == 0 {
		t.Error("the running kernel has an empty command line")
	}
}
