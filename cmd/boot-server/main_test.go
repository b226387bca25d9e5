package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"strings"
	"testing"
)

// TestRunRejects: bad flags and environment end before anything is started.
func TestRunRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"unknown flag", []string{"--nope"}, nil, "usage"},
		{"bad address", []string{"--range-first", "10.0.0"}, nil, "usage"},
		{"bad netmask", []string{"--netmask", "255.0.255.0", "--server-ip", "10.0.0.1"}, nil, "not contiguous"},
		{"netmask without address", []string{"--netmask", "255.255.255.0"}, nil, "needs --server-ip"},
		{"bad relay subnet", []string{"--relay-subnet", "10.1.0.0/24"}, nil, "usage"},
		{"bad env", nil, map[string]string{"BOOT_SERVER_LEASE_TIME": "forever"}, "BOOT_SERVER_LEASE_TIME"},
		{"env feeds config", []string{"--interface", ""}, map[string]string{"BOOT_SERVER_MODE": "relay", "BOOT_SERVER_API": "a:1",
			"BOOT_SERVER_TOKEN": "t", "BOOT_SERVER_PARTITION": "p", "BOOT_SERVER_SERVER_IP": "10.0.0.1"}, `mode "relay"`},
		{"flag beats env", []string{"--mode", "proxy", "--api", "a:1", "--token", "t"}, map[string]string{"BOOT_SERVER_MODE": "relay",
			"BOOT_SERVER_SERVER_IP": "10.0.0.1"}, "partition id is required"},
		{"arguments", []string{"extra"}, nil, "unexpected arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var out bytes.Buffer
			err := run(context.Background(), tc.args, &out)
			if err == nil || !(strings.Contains(err.Error(), tc.want) || tc.want == "usage" && errors.Is(err, errUsage)) {
				t.Errorf("run(%q) = %v, want %q; output %s", tc.args, err, tc.want, out.String())
			}
		})
	}
	if err := run(context.Background(), []string{"-h"}, &bytes.Buffer{}); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
}
