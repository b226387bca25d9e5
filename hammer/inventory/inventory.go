// Package inventory collects what the hammer reports about a machine: CPUs, memory, disks, NICs
// with their LLDP neighbours, GPUs and the DMI identity, read from /proc and /sys under an
// injectable root so tests run against recorded trees.
package inventory

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/lldp"
)

// Config says where to read from and how long to listen for LLDP.
type Config struct {
	// Root is prepended to /proc and /sys paths; "" or "/" is the running system.
	Root string
	// LLDPDuration bounds how long each NIC listens for LLDP frames; 0 skips LLDP.
	LLDPDuration time.Duration
	// Neighbors returns the LLDP neighbours of an interface; nil uses lldp.Listen.
	Neighbors func(ctx context.Context, ifname string, d time.Duration) ([]lldp.Neighbor, error)
	Log       *slog.Logger
}

// Inventory is everything Collect found.
type Inventory struct {
	// ID is the DMI product UUID in lower case (or an ID derived from the MACs when the firmware
	// has none).
	ID       string
	Hardware api.MachineHardware
	BIOS     api.MachineBIOS
	// Product is the DMI vendor and product name, for logs.
	Product string
}

// Machine returns the machine to register in a partition.
func (inv Inventory) Machine(partitionID string) api.Machine {
	return api.Machine{Meta: api.Meta{ID: inv.ID}, PartitionID: partitionID, Hardware: inv.Hardware, BIOS: inv.BIOS}
}

// Collect reads the inventory. Missing optional files leave fields empty; unreadable CPU or
// memory information is an error.
func Collect(ctx context.Context, cfg Config) (Inventory, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Root == "" {
		cfg.Root = "/"
	}
	r := reader{root: cfg.Root}
	var inv Inventory
	var err error
	if inv.Hardware.CPUs, err = r.cpus(); err != nil {
		return inv, err
	}
	if inv.Hardware.Memory, err = r.memory(); err != nil {
		return inv, err
	}
	if inv.Hardware.Disks, err = r.disks(); err != nil {
		return inv, err
	}
	if inv.Hardware.NICs, err = r.nics(); err != nil {
		return inv, err
	}
	inv.Hardware.GPUs = r.gpus()
	inv.BIOS = api.MachineBIOS{Vendor: r.dmi("bios_vendor"), Version: r.dmi("bios_version"), Date: r.dmi("bios_date")}
	inv.Product = strings.TrimSpace(r.dmi("sys_vendor") + " " + r.dmi("product_name"))
	inv.ID = r.machineID(inv.Hardware.NICs)
	if inv.ID == "" {
		return inv, errors.New("collect inventory: no dmi product uuid and no nic to derive a machine id from")
	}
	if cfg.LLDPDuration > 0 {
		neighbors(ctx, cfg, inv.Hardware.NICs)
	}
	return inv, nil
}

// neighbors listens on all NICs at once and fills in their neighbours; errors are logged, a NIC
// without a switch is normal.
func neighbors(ctx context.Context, cfg Config, nics []api.MachineNIC) {
	listen := cfg.Neighbors
	if listen == nil {
		listen = lldp.Listen
	}
	type result struct {
		i   int
		nbs []lldp.Neighbor
		err error
	}
	done := make(chan result, len(nics))
	for i, nic := range nics {
		go func() {
			nbs, err := listen(ctx, nic.Name, cfg.LLDPDuration)
			done <- result{i, nbs, err}
		}()
	}
	for range nics {
		r := <-done
		if r.err != nil {
			cfg.Log.Warn("lldp", "nic", nics[r.i].Name, "err", r.err)
		}
		for _, n := range r.nbs {
			nics[r.i].Neighbors = append(nics[r.i].Neighbors, n.API())
		}
	}
}

// reader reads files below root.
type reader struct{ root string }

func (r reader) path(p string) string { return filepath.Join(r.root, p) }

// read returns the trimmed content of a file, "" when it can't be read.
func (r reader) read(p string) string {
	b, err := os.ReadFile(r.path(p))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func (r reader) dmi(name string) string {
	return r.read("sys/class/dmi/id/" + name)
}

// machineID is the DMI product UUID, unless the firmware reports none or a placeholder; then a
// stable UUID-shaped ID from the sorted MACs (logged by the caller's Register).
func (r reader) machineID(nics []api.MachineNIC) string {
	id := strings.ToLower(r.dmi("product_uuid"))
	if len(id) == 36 && strings.Trim(id, "0-") != "" && strings.Trim(id, "f-") != "" {
		return id
	}
	if len(nics) == 0 {
		return ""
	}
	macs := make([]string, 0, len(nics))
	for _, n := range nics {
		macs = append(macs, n.MAC)
	}
	slices.Sort(macs)
	h := sha256.Sum256([]byte(strings.Join(macs, ",")))
	h[6] = h[6]&0x0f | 0x80 // version 8: vendor-specific
	h[8] = h[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}
