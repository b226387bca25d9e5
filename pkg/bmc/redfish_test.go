package bmc_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/metalforge/metalforge/pkg/bmc"
	"github.com/metalforge/metalforge/pkg/bmc/bmctest"
	"github.com/metalforge/metalforge/pkg/bmc/vendor"
)

func openRedfish(t *testing.T, rf *bmctest.Redfish, vendorName string) bmc.BMC {
	t.Helper()
	b, err := bmc.Open(bmc.Config{Address: rf.Address(), User: "admin", Password: "secret", Vendor: vendorName, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRedfishPower(t *testing.T) {
	tests := []struct {
		name       string
		opts       bmctest.RedfishOptions
		vendor     string
		start      string
		op         func(bmc.BMC, context.Context) error
		wantResets []string
		wantPower  string
	}{
		{name: "on", start: "Off", op: bmc.BMC.PowerOn, wantResets: []string{"On"}, wantPower: "On"},
		{name: "off", start: "On", op: bmc.BMC.PowerOff, wantResets: []string{"ForceOff"}, wantPower: "Off"},
		{name: "reset", start: "On", op: bmc.BMC.PowerReset, wantResets: []string{"ForceRestart"}, wantPower: "On"},
		{name: "cycle on", start: "On", op: bmc.BMC.PowerCycle, wantResets: []string{"PowerCycle"}, wantPower: "On"},
		{name: "cycle off powers on", start: "Off", op: bmc.BMC.PowerCycle, wantResets: []string{"On"}, wantPower: "On"},
		{name: "cycle without PowerCycle", start: "On", opts: bmctest.RedfishOptions{AllowedResets: []string{"On", "ForceOff", "ForceRestart"}},
			op: bmc.BMC.PowerCycle, wantResets: []string{"ForceOff", "On"}, wantPower: "On"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rf := bmctest.NewRedfish(t, tt.opts)
			rf.SetPower(tt.start)
			b := openRedfish(t, rf, tt.vendor)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := tt.op(b, ctx); err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.wantResets, rf.Resets()); d != "" {
				t.Errorf("resets (-want +got):\n%s", d)
			}
			if rf.Power() != tt.wantPower {
				t.Errorf("power %s, want %s", rf.Power(), tt.wantPower)
			}
			want := bmc.PowerStateOff
			if tt.wantPower == "On" {
				want = bmc.PowerStateOn
			}
			if got, err := b.PowerState(ctx); err != nil || got != want {
				t.Errorf("PowerState = %q, %v; want %q", got, err, want)
			}
		})
	}
}

func TestRedfishBootOnce(t *testing.T) {
	tests := []struct {
		name     string
		vendor   string
		opts     bmctest.RedfishOptions
		dev      string
		wantBoot map[string]string
		wantSeen []string
	}{
		{name: "pxe legacy", dev: bmc.BootPXE,
			wantBoot: map[string]string{"BootSourceOverrideEnabled": "Disabled", "BootSourceOverrideTarget": "Pxe", "BootSourceOverrideMode": "Legacy"},
			wantSeen: []string{"Pxe"}},
		{name: "disk uefi (Dell)", vendor: "Dell Inc.", dev: bmc.BootDisk,
			wantBoot: map[string]string{"BootSourceOverrideEnabled": "Disabled", "BootSourceOverrideTarget": "Hdd", "BootSourceOverrideMode": "UEFI"},
			wantSeen: []string{"Hdd"}},
		{name: "etag required", opts: bmctest.RedfishOptions{RequireETag: true}, dev: bmc.BootPXE,
			wantBoot: map[string]string{"BootSourceOverrideEnabled": "Disabled", "BootSourceOverrideTarget": "Pxe", "BootSourceOverrideMode": "Legacy"},
			wantSeen: []string{"Pxe"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rf := bmctest.NewRedfish(t, tt.opts)
			b := openRedfish(t, rf, tt.vendor)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := b.BootOnce(ctx, tt.dev); err != nil {
				t.Fatal(err)
			}
			if got := rf.Boot()["BootSourceOverrideEnabled"]; got != "Once" {
				t.Fatalf("override enabled %q after BootOnce, want Once", got)
			}
			if err := b.PowerOn(ctx); err != nil {
				t.Fatal(err)
			}
			// The override applies to one boot only: a second power on boots the default.
			if err := b.PowerCycle(ctx); err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.wantBoot, rf.Boot()); d != "" {
				t.Errorf("boot (-want +got):\n%s", d)
			}
			if d := cmp.Diff(append(tt.wantSeen, "Default"), rf.BootedTo()); d != "" {
				t.Errorf("booted to (-want +got):\n%s", d)
			}
		})
	}
}

func TestRedfishLED(t *testing.T) {
	for _, legacy := range []bool{false, true} {
		rf := bmctest.NewRedfish(t, bmctest.RedfishOptions{LegacyLED: legacy, RequireETag: true})
		b := openRedfish(t, rf, "")
		ctx := context.Background()
		if err := b.LED(ctx, true); err != nil {
			t.Fatalf("legacy=%v: led on: %v", legacy, err)
		}
		if !rf.LEDOn() {
			t.Errorf("legacy=%v: led is off after LED(true)", legacy)
		}
		if err := b.LED(ctx, false); err != nil {
			t.Fatalf("legacy=%v: led off: %v", legacy, err)
		}
		if rf.LEDOn() {
			t.Errorf("legacy=%v: led is on after LED(false)", legacy)
		}
	}
}

func TestRedfishErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	rf := bmctest.NewRedfish(t, bmctest.RedfishOptions{})
	wrong, err := bmc.Open(bmc.Config{Address: rf.Address(), User: "admin", Password: "nope"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wrong.PowerState(ctx); err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "NoValidSession") {
		t.Errorf("wrong password: %v, want 401 with the Redfish message id", err)
	}

	noCycle := bmctest.NewRedfish(t, bmctest.RedfishOptions{AllowedResets: []string{"On", "ForceOff"}})
	noCycle.SetPower("On")
	b := openRedfish(t, noCycle, "")
	if err := b.PowerReset(ctx); !errors.Is(err, bmc.ErrUnsupported) {
		t.Errorf("reset without ForceRestart: %v, want ErrUnsupported", err)
	}
	if got := noCycle.Resets(); len(got) != 0 {
		t.Errorf("an unsupported reset was sent: %v", got)
	}

	quirk := bmctest.NewRedfish(t, bmctest.RedfishOptions{})
	b = openRedfish(t, quirk, vendor.OpenIPMI)
	if err := b.BootOnce(ctx, bmc.BootPXE); err != nil {
		t.Errorf("boot once with NoBootOverride: %v", err)
	}
	if got := quirk.Boot()["BootSourceOverrideEnabled"]; got != "Disabled" {
		t.Errorf("NoBootOverride still patched the override: %q", got)
	}
	if err := b.LED(ctx, true); !errors.Is(err, bmc.ErrUnsupported) {
		t.Errorf("led with NoIdentify: %v", err)
	}
}
