package disk

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/metalforge/metalforge/pkg/api"
)

// raidLevels maps the accepted spellings of a RAID level to mdadm's level and the least number
// of member devices.
func raidLevels() map[string]struct {
	level   string
	minDevs int
} {
	type l = struct {
		level   string
		minDevs int
	}
	return map[string]l{
		"0": {"0", 2}, "raid0": {"0", 2}, "stripe": {"0", 2},
		"1": {"1", 2}, "raid1": {"1", 2}, "mirror": {"1", 2},
		"10": {"10", 2}, "raid10": {"10", 2},
		"4": {"4", 3}, "raid4": {"4", 3},
		"5": {"5", 3}, "raid5": {"5", 3},
		"6": {"6", 4}, "raid6": {"6", 4},
	}
}

// lvmName is what LVM accepts as a volume group or logical volume name (a subset: no leading
// hyphen, no dots-only names).
var lvmName = regexp.MustCompile(`^[A-Za-z0-9_+][A-Za-z0-9_+.-]{0,126}$`)

// mdName is an md array device node: /dev/md0 … /dev/md127 (mdadm makes these nodes itself when
// there is no udev, which is the case in the hammer).
var mdName = regexp.MustCompile(`^/dev/md([0-9]{1,3})$`)

// LVDevice is the device path of a logical volume: /dev/<vg>/<lv>.
func LVDevice(vg, lv string) string { return "/dev/" + vg + "/" + lv }

// mapperNode is the device-mapper node of a logical volume, which exists without udev: dashes in
// the names are doubled and the names joined with one dash.
func mapperNode(vg, lv string) string {
	return "/dev/mapper/" + strings.ReplaceAll(vg, "-", "--") + "-" + strings.ReplaceAll(lv, "-", "--")
}

// validateVolumes checks the RAID arrays, volume groups and logical volumes of l against the
// partitions and disks of the layout (devices) and adds the block devices they provide to it.
// Each device is used by at most one array, volume group or file system.
func validateVolumes(l api.FilesystemLayout, devices map[string]bool) error {
	used := map[string]string{}
	use := func(dev, by string) error {
		if !devices[dev] {
			return fmt.Errorf("layout %s: %s: device %s is not a partition, disk or array of the layout", l.ID, by, dev)
		}
		if prev, ok := used[dev]; ok {
			return fmt.Errorf("layout %s: %s: device %s is already used by %s", l.ID, by, dev, prev)
		}
		used[dev] = by
		return nil
	}
	for _, r := range l.Raid {
		by := "raid " + r.ArrayName
		if !mdName.MatchString(r.ArrayName) || devices[r.ArrayName] {
			return fmt.Errorf("layout %s: raid array name %q is not a unique /dev/md<N>", l.ID, r.ArrayName)
		}
		if n, _ := strconv.Atoi(mdName.FindStringSubmatch(r.ArrayName)[1]); n > 127 {
			return fmt.Errorf("layout %s: raid array name %q: number above 127", l.ID, r.ArrayName)
		}
		lv, ok := raidLevels()[strings.ToLower(r.Level)]
		if !ok {
			return fmt.Errorf("layout %s: %s: level %q: %w", l.ID, by, r.Level, ErrUnsupported)
		}
		if len(r.Devices) < lv.minDevs {
			return fmt.Errorf("layout %s: %s: level %s needs at least %d devices, has %d", l.ID, by, r.Level, lv.minDevs, len(r.Devices))
		}
		for _, d := range r.Devices {
			if err := use(d, by); err != nil {
				return err
			}
		}
		devices[r.ArrayName] = true
	}
	vgs := map[string]bool{}
	for _, vg := range l.VolumeGroups {
		by := "volume group " + vg.Name
		if !lvmName.MatchString(vg.Name) || vgs[vg.Name] {
			return fmt.Errorf("layout %s: volume group name %q is not a unique lvm name", l.ID, vg.Name)
		}
		if len(vg.Devices) == 0 {
			return fmt.Errorf("layout %s: %s has no devices", l.ID, by)
		}
		for _, d := range vg.Devices {
			if err := use(d, by); err != nil {
				return err
			}
		}
		vgs[vg.Name] = true
	}
	lvs := map[string]bool{}
	rest := map[string]bool{} // volume groups whose rest is taken
	for _, lv := range l.LogicalVolumes {
		name := lv.VolumeGroup + "/" + lv.Name
		if !vgs[lv.VolumeGroup] {
			return fmt.Errorf("layout %s: logical volume %s: volume group %q is not in the layout", l.ID, lv.Name, lv.VolumeGroup)
		}
		if !lvmName.MatchString(lv.Name) || strings.HasPrefix(lv.Name, "snapshot") || strings.HasPrefix(lv.Name, "pvmove") || lvs[name] {
			return fmt.Errorf("layout %s: logical volume name %q is not a unique lvm name", l.ID, name)
		}
		if rest[lv.VolumeGroup] {
			return fmt.Errorf("layout %s: logical volume %s: size 0 (the rest) is only allowed last in its volume group", l.ID, name)
		}
		if lv.Size == 0 {
			rest[lv.VolumeGroup] = true
		}
		lvs[name] = true
		devices[LVDevice(lv.VolumeGroup, lv.Name)] = true
	}
	for _, fs := range l.Filesystems {
		if fs.Device != "" && fs.Format != FormatTmpfs && devices[fs.Device] {
			if err := use(fs.Device, "file system "+fs.Format); err != nil {
				return err
			}
		}
	}
	return nil
}

// Command is one program run with its arguments, e.g. {"mdadm", "--create", ...}.
type Command []string

func (c Command) String() string { return strings.Join(c, " ") }

// lvmConfig is passed to every lvm command: the hammer has no udev (device nodes are made by
// libdevmapper, no waiting for udev events), no lvmetad/lvmpolld/dmeventd, no devices file,
// and only the layout's physical volumes are scanned.
func lvmConfig(pvs []string) string {
	filter := make([]string, 0, len(pvs)+1)
	for _, pv := range pvs {
		filter = append(filter, strconv.Quote("a|^"+regexp.QuoteMeta(pv)+"$|"))
	}
	filter = append(filter, `"r|.*|"`)
	return "devices { filter = [ " + strings.Join(filter, ", ") + " ] obtain_device_list_from_udev = 0 use_devicesfile = 0 } " +
		"activation { udev_sync = 0 udev_rules = 0 monitoring = 0 } " +
		"global { use_lvmpolld = 0 } backup { backup = 0 archive = 0 }"
}

// volumeCommands returns the commands that build the arrays, volume groups and logical volumes
// of l, in order, and those that take them down again (deactivate the volume groups, stop the
// arrays). node maps a layout device (a partition) to the node to use for it.
func volumeCommands(l api.FilesystemLayout, node func(string) string) (build, teardown []Command) {
	for _, r := range l.Raid {
		members := make([]string, 0, len(r.Devices))
		for _, d := range r.Devices {
			members = append(members, node(d))
			// A stale superblock from an earlier install would make mdadm ask; --force makes a
			// device without one no error.
			build = append(build, Command{"mdadm", "--zero-superblock", "--force", node(d)})
		}
		level := raidLevels()[strings.ToLower(r.Level)].level
		c := Command{"mdadm", "--create", r.ArrayName, "--run", "--metadata=1.2", "--homehost=any",
			"--level=" + level, "--raid-devices=" + strconv.Itoa(len(members))}
		build = append(build, append(c, members...))
	}
	if len(l.VolumeGroups) > 0 {
		var pvs []string
		for _, vg := range l.VolumeGroups {
			for _, d := range vg.Devices {
				pvs = append(pvs, node(d))
			}
		}
		cfg := lvmConfig(pvs)
		for _, vg := range l.VolumeGroups {
			vpvs := make([]string, 0, len(vg.Devices))
			for _, d := range vg.Devices {
				vpvs = append(vpvs, node(d))
			}
			build = append(build, append(Command{"lvm", "pvcreate", "--config", cfg, "-ff", "-y", "--zero", "y"}, vpvs...))
			build = append(build, append(Command{"lvm", "vgcreate", "--config", cfg, "-y", vg.Name}, vpvs...))
			teardown = append(teardown, Command{"lvm", "vgchange", "--config", cfg, "-an", vg.Name})
		}
		for _, lv := range l.LogicalVolumes {
			size := []string{"-L", strconv.FormatUint(lv.Size, 10) + "m"}
			if lv.Size == 0 {
				size = []string{"-l", "100%FREE"}
			}
			c := Command{"lvm", "lvcreate", "--config", cfg, "-y", "-W", "y", "-Z", "y", "-n", lv.Name}
			build = append(build, append(append(c, size...), lv.VolumeGroup))
		}
	}
	for _, r := range slices.Backward(l.Raid) {
		teardown = append(teardown, Command{"mdadm", "--stop", r.ArrayName})
	}
	return build, teardown
}

// runCommands runs cmds in order and stops at the first failure.
func runCommands(ctx context.Context, cmds []Command) error {
	for _, c := range cmds {
		cmd := exec.CommandContext(ctx, c[0], c[1:]...)
		cmd.Env = append(os.Environ(), "LVM_SUPPRESS_FD_WARNINGS=1", "DM_DISABLE_UDEV=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %w: %s", c.short(), err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// short names a command without the long lvm --config argument.
func (c Command) short() string {
	var s []string
	for i := 0; i < len(c); i++ {
		if c[i] == "--config" {
			i++
			continue
		}
		s = append(s, c[i])
	}
	return strings.Join(s, " ")
}

// buildVolumes creates the arrays, volume groups and logical volumes of l and records, in nodes
// and diskOf, the node of each new device and the first disk below it. kept disks must not
// carry any of them.
func buildVolumes(ctx context.Context, l api.FilesystemLayout, nodes, diskOf map[string]string, kept map[string]bool, opts Options) ([]Command, error) {
	if len(l.Raid) == 0 && len(l.VolumeGroups) == 0 {
		return nil, nil
	}
	for _, r := range l.Raid {
		for _, d := range r.Devices {
			if kept[diskOf[d]] {
				return nil, fmt.Errorf("raid %s on kept disk %s: %w", r.ArrayName, diskOf[d], ErrUnsupported)
			}
		}
		nodes[r.ArrayName], diskOf[r.ArrayName] = r.ArrayName, diskOf[r.Devices[0]]
	}
	for _, vg := range l.VolumeGroups {
		for _, d := range vg.Devices {
			if kept[diskOf[d]] {
				return nil, fmt.Errorf("volume group %s on kept disk %s: %w", vg.Name, diskOf[d], ErrUnsupported)
			}
		}
	}
	for _, lv := range l.LogicalVolumes {
		dev := LVDevice(lv.VolumeGroup, lv.Name)
		nodes[dev] = mapperNode(lv.VolumeGroup, lv.Name)
		for _, vg := range l.VolumeGroups {
			if vg.Name == lv.VolumeGroup {
				diskOf[dev] = diskOf[vg.Devices[0]]
			}
		}
	}
	build, teardown := volumeCommands(l, func(d string) string {
		if n := nodes[d]; n != "" {
			return n
		}
		return d
	})
	if len(l.VolumeGroups) > 0 {
		if err := os.MkdirAll("/run/lock/lvm", 0o700); err != nil {
			return nil, fmt.Errorf("lvm lock dir: %w", err)
		}
	}
	if err := runCommands(ctx, build); err != nil {
		// Leave nothing assembled that would hold the disks open for a wipe.
		return nil, errors.Join(fmt.Errorf("raid and lvm: %w", err), stopVolumes(teardown))
	}
	opts.Log.Info("raid and lvm built", "arrays", len(l.Raid), "volumeGroups", len(l.VolumeGroups), "logicalVolumes", len(l.LogicalVolumes))
	return teardown, nil
}

// stopVolumes runs every teardown command (each on its own, with its own bound, as it also runs
// after a cancelled install) and joins their errors. A volume group or array that never came up
// fails harmlessly.
func stopVolumes(teardown []Command) error {
	var errs []error
	for _, c := range teardown {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		errs = append(errs, runCommands(ctx, []Command{c}))
		cancel()
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("take down raid and lvm: %w", err)
	}
	return nil
}
