package ipmisim

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestLANConf(t *testing.T) {
	c := Config{Name: "vm1", Addr: "127.0.1.1", User: "admin", Password: "pw", SerialAddr: "127.0.1.1", SerialPort: 9002,
		StartCmd: "/lab/vm1/start.sh", LANConfigProgram: "/lab/vm1/lancontrol.sh"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	conf := c.LANConf()
	for _, want := range []string{`name "vm1"`, "addr 127.0.1.1 623", "guid ", `lan_config_program "/lab/vm1/lancontrol.sh"`,
		"serial 15 127.0.1.1 9002 codec VM", `startcmd "/lab/vm1/start.sh"`, "startnow false", "poweroff_wait 5", "kill_wait 2",
		`user 2 true "admin" "pw" admin 10 md5`} {
		if !strings.Contains(conf, want) {
			t.Errorf("lan.conf lacks %q:\n%s", want, conf)
		}
	}
	if c2 := c; c2.LANConf() != conf {
		t.Error("lan.conf is not deterministic")
	}
	for _, bad := range []Config{
		{Name: "x", Addr: "127.0.0.1", User: `a"b`, Password: "p"},
		{Name: "x", Addr: "127.0.0.1", User: "u", Password: "with space"},
		{Name: "x", Addr: "127.0.0.1", User: "u", Password: "p", StartCmd: "/bin/true"}, // no serial channel
		{Name: "x", Addr: "127.0.0.1", User: "a-user-name-too-long", Password: "p"},
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%+v validated", bad)
		}
	}
}

func TestLANControl(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lanctl")
	if err := WriteLANControl(path, LANSettings{IP: "127.0.1.2", Netmask: "255.0.0.0", MAC: "02:4d:46:00:00:02"}); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(path, "get", "ip_addr", "mac_addr", "subnet_mask", "ip_addr_src", "default_gw_ip_addr").Output()
	if err != nil {
		t.Fatal(err)
	}
	want := "ip_addr:127.0.1.2\nmac_addr:02:4d:46:00:00:02\nsubnet_mask:255.0.0.0\nip_addr_src:static\ndefault_gw_ip_addr:0.0.0.0\n"
	if string(out) != want {
		t.Errorf("get = %q, want %q", out, want)
	}
	if err := exec.Command(path, "set", "ip_addr", "1.2.3.4").Run(); err == nil {
		t.Error("set succeeded")
	}
	if err := WriteLANControl(path, LANSettings{IP: "1.2.3.4; rm -rf /", Netmask: "x", MAC: "y"}); err == nil {
		t.Error("a value with shell syntax was written")
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
}
