package inventory

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/metalforge/metalforge/pkg/api"
)

// cpus groups /proc/cpuinfo by physical id: one api.MachineCPU per socket with its cores
// ("cpu cores") and logical processors.
func (r reader) cpus() ([]api.MachineCPU, error) {
	f, err := os.Open(r.path("proc/cpuinfo"))
	if err != nil {
		return nil, fmt.Errorf("read cpuinfo: %w", err)
	}
	defer f.Close()
	sockets := map[string]*api.MachineCPU{}
	var order []string
	cur := map[string]string{}
	flush := func() {
		if _, ok := cur["processor"]; !ok {
			cur = map[string]string{}
			return
		}
		id := cur["physical id"]
		s, ok := sockets[id]
		if !ok {
			s = &api.MachineCPU{Vendor: cur["vendor_id"], Model: cur["model name"]}
			sockets[id] = s
			order = append(order, id)
		}
		s.Threads++
		if c, err := strconv.Atoi(cur["cpu cores"]); err == nil {
			s.Cores = c
		}
		cur = map[string]string{}
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			flush()
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if ok {
			cur[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read cpuinfo: %w", err)
	}
	flush()
	if len(order) == 0 {
		return nil, fmt.Errorf("read cpuinfo: no processors")
	}
	out := make([]api.MachineCPU, 0, len(order))
	for _, id := range order {
		s := sockets[id]
		if s.Cores == 0 { // no "cpu cores" line (some virtual CPUs): count threads as cores
			s.Cores = s.Threads
		}
		out = append(out, *s)
	}
	return out, nil
}

// memory returns MemTotal from /proc/meminfo in bytes.
func (r reader) memory() (uint64, error) {
	b, err := os.ReadFile(r.path("proc/meminfo"))
	if err != nil {
		return 0, fmt.Errorf("read meminfo: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "MemTotal:" {
			kb, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("read meminfo: %w", err)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("read meminfo: no MemTotal")
}

// virtualDisk reports block devices that are not hardware.
func virtualDisk(name string) bool {
	for _, p := range []string{"loop", "ram", "sr", "zram", "nbd", "dm-", "md", "fd"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// disks lists /sys/block without virtual devices, sorted by name.
func (r reader) disks() ([]api.MachineBlockDevice, error) {
	ents, err := os.ReadDir(r.path("sys/block"))
	if err != nil {
		return nil, fmt.Errorf("list block devices: %w", err)
	}
	var out []api.MachineBlockDevice
	for _, e := range ents {
		name := e.Name()
		if virtualDisk(name) {
			continue
		}
		dir := "sys/block/" + name + "/"
		sectors, err := strconv.ParseUint(r.read(dir+"size"), 10, 64)
		if err != nil || sectors == 0 {
			continue // empty card readers and the like
		}
		serial := r.read(dir + "device/serial")
		if serial == "" {
			serial = r.read(dir + "serial") // virtio-blk
		}
		out = append(out, api.MachineBlockDevice{
			Name:       name,
			Size:       sectors * 512,
			Model:      r.read(dir + "device/model"),
			Serial:     serial,
			Rotational: r.read(dir+"queue/rotational") == "1",
		})
	}
	slices.SortFunc(out, func(a, b api.MachineBlockDevice) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// nics lists /sys/class/net entries backed by a device (physical NICs), sorted by name.
func (r reader) nics() ([]api.MachineNIC, error) {
	ents, err := os.ReadDir(r.path("sys/class/net"))
	if err != nil {
		return nil, fmt.Errorf("list network interfaces: %w", err)
	}
	var out []api.MachineNIC
	for _, e := range ents {
		name := e.Name()
		dir := "sys/class/net/" + name + "/"
		if name == "lo" || r.read(dir+"type") != "1" { // ARPHRD_ETHER only
			continue
		}
		if _, err := os.Stat(r.path(dir + "device")); err != nil {
			continue // virtual: bridge, veth, bond, vlan, ...
		}
		mac := r.read(dir + "address")
		if mac == "" || mac == "00:00:00:00:00:00" {
			continue
		}
		out = append(out, api.MachineNIC{Name: name, MAC: mac})
	}
	slices.SortFunc(out, func(a, b api.MachineNIC) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// gpuVendor names the PCI vendors of compute GPUs.
func gpuVendor(id string) string {
	switch id {
	case "0x10de":
		return "NVIDIA"
	case "0x1002":
		return "AMD"
	case "0x8086":
		return "Intel"
	}
	return id
}

// gpus lists PCI display controllers (class 0x03xxxx) other than BMC/emulated VGA.
func (r reader) gpus() []api.MachineGPU {
	ents, err := os.ReadDir(r.path("sys/bus/pci/devices"))
	if err != nil {
		return nil
	}
	var out []api.MachineGPU
	for _, e := range ents {
		dir := "sys/bus/pci/devices/" + e.Name() + "/"
		if !strings.HasPrefix(r.read(dir+"class"), "0x03") {
			continue
		}
		vendorID := r.read(dir + "vendor")
		switch vendorID {
		case "0x1a03", "0x102b", "0x1234", "0x1af4": // BMC and virtual VGA, not compute GPUs
			continue
		}
		out = append(out, api.MachineGPU{Vendor: gpuVendor(vendorID), Model: vendorID + ":" + r.read(dir+"device")})
	}
	return out
}
