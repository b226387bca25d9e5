package bmc_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/bmc"
	"github.com/metalforge/metalforge/pkg/bmc/bmctest"
	"github.com/metalforge/metalforge/pkg/bmc/vendor"
)

func TestExecute(t *testing.T) {
	f := bmctest.NewFake()
	ctx := context.Background()
	for _, c := range []string{api.BootPXE, api.PowerOn, api.PowerCycle, api.PowerReset, api.LEDOn, api.LEDOff, api.BootDisk, api.PowerOff} {
		if err := bmc.Execute(ctx, f, c); err != nil {
			t.Fatalf("%s: %v", c, err)
		}
	}
	want := []string{"boot pxe", "on", "cycle", "reset", "led on", "led off", "boot disk", "off"}
	if d := cmp.Diff(want, f.Calls()); d != "" {
		t.Errorf("calls (-want +got):\n%s", d)
	}
	if err := bmc.Execute(ctx, f, "explode"); !errors.Is(err, bmc.ErrUnsupported) {
		t.Errorf("unknown command: %v", err)
	}
}

func TestOpen(t *testing.T) {
	tests := []struct {
		cfg     bmc.Config
		wantErr bool
	}{
		{cfg: bmc.Config{Address: "10.0.0.1"}},
		{cfg: bmc.Config{Address: "10.0.0.1:6230"}},
		{cfg: bmc.Config{Address: "[fd00::1]:623"}},
		{cfg: bmc.Config{Address: "https://10.0.0.1"}},
		{cfg: bmc.Config{Address: "10.0.0.1", Protocol: bmc.ProtocolRedfish}},
		{cfg: bmc.Config{Address: ""}, wantErr: true},
		{cfg: bmc.Config{Address: "10.0.0.1:99999"}, wantErr: true},
		{cfg: bmc.Config{Address: "10.0.0.1", Protocol: "snmp"}, wantErr: true},
	}
	for _, tt := range tests {
		_, err := bmc.Open(tt.cfg)
		if (err != nil) != tt.wantErr {
			t.Errorf("Open(%+v) err = %v, wantErr %v", tt.cfg, err, tt.wantErr)
		}
	}
}

func TestQuirks(t *testing.T) {
	if q := bmc.QuirksFor("Hewlett Packard Enterprise"); !q.EFIBoot || q.CipherSuite != 3 {
		t.Errorf("HPE quirks %+v", q)
	}
	if q := bmc.QuirksFor(vendor.FromIANA(4753)); !q.NoBootOverride || !q.NoIdentify || q.EFIBoot {
		t.Errorf("ipmi_sim quirks %+v", q)
	}
	if q := bmc.QuirksFor("Acme"); q.EFIBoot || q.NoBootOverride || q.CipherSuite != 3 || q.OffTimeout == 0 {
		t.Errorf("default quirks %+v", q)
	}
	for in, want := range map[string]string{"Dell Inc.": vendor.Dell, "HPE": vendor.HPE, "Supermicro": vendor.Supermicro,
		"Lenovo": vendor.Lenovo, "Champion": "Champion", "AMI": vendor.AMI, " Contoso ": "Contoso", vendor.OpenIPMI: vendor.OpenIPMI} {
		if got := vendor.Normalize(in); got != want {
			t.Errorf("Normalize(%q) = %q, want %q", in, got, want)
		}
	}
	if vendor.FromIANA(674) != vendor.Dell || vendor.FromIANA(10876) != vendor.Supermicro || vendor.FromIANA(1) != "" {
		t.Error("FromIANA table")
	}
}
