package metalctl

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/metalforge/metalforge/pkg/client/metalapi/machine"
	"github.com/metalforge/metalforge/pkg/client/wire"
)

// status summarises where a machine is in its life.
func status(o obj) string {
	var s []string
	switch {
	case lookup(o, "allocation") != nil && cell(lookup(o, "allocation.reinstall")) != "":
		s = append(s, "reinstalling")
	case lookup(o, "allocation") != nil:
		s = append(s, "allocated")
	case cell(o["waiting"]) != "":
		s = append(s, "waiting")
	}
	if cell(o["crashLoop"]) != "" {
		s = append(s, "crashloop")
	}
	if cell(o["failedMachineReclaim"]) != "" {
		s = append(s, "failed-reclaim")
	}
	return strings.Join(s, ",")
}

// machineIPs are the addresses of all networks of an allocation.
func machineIPs(o obj) string {
	var ips []string
	for _, n := range list(o, "allocation.networks") {
		if v := cell(n["ips"]); v != "" {
			ips = append(ips, v)
		}
	}
	return strings.Join(ips, ",")
}

var machineColumns = []column{idCol, col("PARTITION", "partitionID"), col("SIZE", "sizeID"), col("RACK", "rackID"),
	fn("STATUS", status), col("STATE", "state.value"), col("PROJECT", "allocation.projectID"),
	col("HOSTNAME", "allocation.hostname"), col("IMAGE", "allocation.imageID"), col("LIVELINESS", "liveliness"),
	fn("IPS", machineIPs).onlyWide(), col("LAST EVENT", "lastEvent.event").onlyWide(), col("POWER", "bmc.powerState").onlyWide(),
	col("TAGS", "tags").onlyWide()}

func machineResource() *resource {
	return &resource{
		name: "machine", aliases: []string{"m"}, short: "Machines: registration, allocation, lifecycle and power",
		columns: machineColumns,
		list: func(ctx context.Context, c api, cursor string) ([]any, string, error) {
			r, err := c.Machine.ListMachinesContext(ctx, machine.NewListMachinesParams().WithCursor(opt(cursor)), nil)
			if err != nil {
				return nil, "", err
			}
			return anys(r.Payload.Items), r.Payload.Next, nil
		},
		get: func(ctx context.Context, c api, id string) (any, error) {
			return payload(c.Machine.GetMachineContext(ctx, machine.NewGetMachineParams().WithID(id), nil))
		},
		del: func(ctx context.Context, c api, id string) (any, error) {
			return payload(c.Machine.DeleteMachineContext(ctx, machine.NewDeleteMachineParams().WithID(id), nil))
		},
		describe: describeMachine,
		actions:  machineActions,
	}
}

func machineActions(c *cli, r *resource) []*cobra.Command {
	cmds := []*cobra.Command{c.findMachinesCommand(r), c.allocateCommand(r), c.eventsCommand(r), c.powerCommand(r)}
	// simple actions on one machine that answer with the machine
	one := func(use, short string, do func(ctx context.Context, api api, id string) (any, error)) *cobra.Command {
		return &cobra.Command{
			Use: use + " ID", Short: short, Args: cobra.ExactArgs(1), ValidArgsFunction: c.completeIDs(r),
			RunE: func(cmd *cobra.Command, args []string) error {
				api, err := c.client()
				if err != nil {
					return err
				}
				v, err := do(ctxOf(cmd), api, args[0])
				if err != nil {
					return err
				}
				return c.print(cmd, v, r.columns)
			},
		}
	}
	cmds = append(cmds, one("free", "Free a machine: release its addresses, wipe it and make it available again",
		func(ctx context.Context, api api, id string) (any, error) {
			return payload(api.Machine.FreeMachineContext(ctx, machine.NewFreeMachineParams().WithID(id), nil))
		}))
	var image string
	reinstall := one("reinstall", "Reinstall a machine with an image, keeping its data disks",
		func(ctx context.Context, api api, id string) (any, error) {
			return payload(api.Machine.ReinstallMachineContext(ctx, machine.NewReinstallMachineParams().WithID(id).
				WithBody(&wire.MachineReinstallRequest{ImageID: image}), nil))
		})
	reinstall.Flags().StringVar(&image, "image", "", "image to install")
	_ = reinstall.MarkFlagRequired("image")
	cmds = append(cmds, reinstall)

	// lock/unlock and taint/untaint set the operator state; clearing checks it is the one named.
	for _, s := range []struct{ set, clear, value, short string }{
		{"lock", "unlock", "LOCKED", "a locked machine can't be freed or powered off"},
		{"taint", "untaint", "TAINTED", "a tainted machine is not allocated"},
	} {
		var why string
		set := one(s.set, "Mark a machine "+s.value+": "+s.short, func(ctx context.Context, api api, id string) (any, error) {
			return setState(ctx, api, id, s.value, why)
		})
		set.Flags().StringVar(&why, "description", "", "why (required)")
		_ = set.MarkFlagRequired("description")
		clear := one(s.clear, "Clear the "+s.value+" state of a machine", func(ctx context.Context, api api, id string) (any, error) {
			m, err := api.Machine.GetMachineContext(ctx, machine.NewGetMachineParams().WithID(id), nil)
			if err != nil {
				return nil, err
			}
			if st := m.Payload.State; st == nil || st.Value != s.value {
				return nil, fmt.Errorf("machine %s is not %s", id, s.value)
			}
			return setState(ctx, api, id, "", "")
		})
		cmds = append(cmds, set, clear)
	}
	return cmds
}

func setState(ctx context.Context, api api, id, value, why string) (any, error) {
	return payload(api.Machine.SetMachineStateContext(ctx, machine.NewSetMachineStateParams().WithID(id).
		WithBody(&wire.MachineStateRequest{Value: value, Description: why}), nil))
}

// findFlags maps the flags of `machine find` to the fields of the filter.
var findFlags = []struct{ flag, field, usage string }{
	{"id", "id", "machine id"}, {"name", "name", "name"}, {"partition", "partitionID", "partition"},
	{"size", "sizeID", "size"}, {"rack", "rackID", "rack"}, {"project", "projectID", "project of the allocation"},
	{"hostname", "hostname", "hostname"}, {"image", "imageID", "image"}, {"network", "networkID", "network of the allocation"},
	{"ip", "ip", "address of the allocation"}, {"mac", "mac", "MAC of a NIC"}, {"role", "role", "machine or firewall"},
	{"state", "state", `operator state: LOCKED, TAINTED or "" for none`}, {"liveliness", "liveliness", "Alive, Dead or Unknown"},
}

func (c *cli) findMachinesCommand(r *resource) *cobra.Command {
	values := map[string]*string{}
	var allocated, waiting bool
	var tags []string
	cmd := &cobra.Command{
		Use: "find", Short: "Find machines; every given filter must match", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			api, err := c.client()
			if err != nil {
				return err
			}
			// Only the flags given become filters: --allocated=false and --state "" filter too.
			filter := map[string]any{}
			for _, f := range findFlags {
				if cmd.Flags().Changed(f.flag) {
					filter[f.field] = *values[f.flag]
				}
			}
			if cmd.Flags().Changed("allocated") {
				filter["allocated"] = allocated
			}
			if cmd.Flags().Changed("waiting") {
				filter["waiting"] = waiting
			}
			if len(tags) > 0 {
				filter["tags"] = tags
			}
			var all []*wire.Machine
			for {
				raw, err := json.Marshal(filter)
				if err != nil {
					return err
				}
				req, err := decode[wire.MachineFindRequest](raw)
				if err != nil {
					return err
				}
				res, err := api.Machine.FindMachinesContext(ctxOf(cmd), machine.NewFindMachinesParams().WithBody(req), nil)
				if err != nil {
					return err
				}
				all = append(all, res.Payload.Items...)
				if res.Payload.Next == "" || res.Payload.Next == filter["cursor"] {
					break
				}
				filter["cursor"] = res.Payload.Next
			}
			return c.print(cmd, all, r.columns)
		},
	}
	for _, f := range findFlags {
		values[f.flag] = cmd.Flags().String(f.flag, "", f.usage)
	}
	cmd.Flags().BoolVar(&allocated, "allocated", false, "allocated (true) or not (false)")
	cmd.Flags().BoolVar(&waiting, "waiting", false, "waiting for an allocation (true) or not (false)")
	cmd.Flags().StringSliceVar(&tags, "tag", nil, "tag, repeatable")
	return cmd
}

// fileOrValue reads "@path" as the file's content and returns other values as they are.
func fileOrValue(v string) (string, error) {
	path, ok := strings.CutPrefix(v, "@")
	if !ok {
		return v, nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(raw), "\n"), nil
}

func (c *cli) allocateCommand(r *resource) *cobra.Command {
	var req wire.MachineAllocateRequest
	var networks, keys []string
	var userdata string
	cmd := &cobra.Command{
		Use:   "allocate",
		Short: "Allocate a machine to a project: a waiting one of --size in --partition, or the one named by --id",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			api, err := c.client()
			if err != nil {
				return err
			}
			for _, n := range networks {
				id, ips, _ := strings.Cut(n, "=")
				an := &wire.AllocationNetwork{NetworkID: id}
				if ips != "" {
					an.Ips = strings.Split(ips, ",")
				}
				req.Networks = append(req.Networks, an)
			}
			for _, k := range keys {
				key, err := fileOrValue(k)
				if err != nil {
					return fmt.Errorf("ssh key: %w", err)
				}
				req.SSHPubKeys = append(req.SSHPubKeys, key)
			}
			if req.UserData, err = fileOrValue(userdata); err != nil {
				return fmt.Errorf("userdata: %w", err)
			}
			v, err := payload(api.Machine.AllocateMachineContext(ctxOf(cmd), machine.NewAllocateMachineParams().WithBody(&req), nil))
			if err != nil {
				return err
			}
			return c.print(cmd, v, r.columns)
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.MachineID, "id", "", "allocate this machine (admins only)")
	f.StringVar(&req.ProjectID, "project", "", "project (default: the token's)")
	f.StringVar(&req.PartitionID, "partition", "", "partition")
	f.StringVar(&req.SizeID, "size", "", "size")
	f.StringVar(&req.ImageID, "image", "", "image to install")
	f.StringVar(&req.FilesystemLayoutID, "filesystemlayout", "", "filesystem layout")
	f.StringVar(&req.Name, "name", "", "name (default: the machine id)")
	f.StringVar(&req.Hostname, "hostname", "", "hostname (default: the name)")
	f.StringVar(&req.Description, "description", "", "description")
	f.StringVar(&req.Role, "role", "machine", "machine or firewall")
	f.StringArrayVar(&networks, "network", nil, "network to attach, NETWORK or NETWORK=IP,IP; repeatable")
	f.BoolVar(&req.AutoNetwork, "auto-network", true, "allocate a private network when none is named")
	f.StringArrayVar(&keys, "sshkey", nil, "SSH public key or @file; repeatable")
	f.StringVar(&userdata, "userdata", "", "user data or @file")
	f.StringSliceVar(&req.Tags, "tag", nil, "tag, repeatable")
	_ = cmd.MarkFlagRequired("image")
	return cmd
}

var eventColumns = []column{fn("TIME", func(o obj) string { return timestamp(cell(o["time"])) }), col("EVENT", "event"),
	col("MESSAGE", "message"), fn("UNEXPECTED", func(o obj) string {
		if cell(o["unexpected"]) != "" {
			return "yes"
		}
		return ""
	})}

func machineEvents(ctx context.Context, api api, id string) (*wire.MachineEventLog, error) {
	r, err := api.Machine.GetMachineEventsContext(ctx, machine.NewGetMachineEventsParams().WithID(id), nil)
	if err != nil {
		return nil, err
	}
	return r.Payload, nil
}

func (c *cli) eventsCommand(r *resource) *cobra.Command {
	return &cobra.Command{
		Use: "events ID", Short: "Show the provisioning event log of a machine", Args: cobra.ExactArgs(1),
		ValidArgsFunction: c.completeIDs(r),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := c.client()
			if err != nil {
				return err
			}
			log, err := machineEvents(ctxOf(cmd), api, args[0])
			if err != nil {
				return err
			}
			if c.output == "json" || c.output == "yaml" {
				return c.dump(cmd.OutOrStdout(), log)
			}
			return c.print(cmd, log.Events, eventColumns)
		},
	}
}

func (c *cli) powerCommand(r *resource) *cobra.Command {
	power := group(&cobra.Command{Use: "power", Short: "Queue a BMC command for a machine"})
	for _, p := range []struct{ cmd, short string }{
		{"on", "Power on"}, {"off", "Power off"}, {"cycle", "Power cycle"}, {"reset", "Reset"},
		{"pxe", "Boot from the network once"}, {"disk", "Boot from disk"},
	} {
		power.AddCommand(&cobra.Command{
			Use: p.cmd + " ID", Short: p.short, Args: cobra.ExactArgs(1), ValidArgsFunction: c.completeIDs(r),
			RunE: func(cmd *cobra.Command, args []string) error {
				api, err := c.client()
				if err != nil {
					return err
				}
				v, err := payload(api.Machine.PowerMachineContext(ctxOf(cmd), machine.NewPowerMachineParams().WithID(args[0]).WithCommand(p.cmd), nil))
				if err != nil {
					return err
				}
				return c.print(cmd, v, []column{idCol, col("MACHINE", "machineID"), col("PARTITION", "partitionID"), col("COMMAND", "command")})
			},
		})
	}
	return power
}

// describeMachine shows a machine and its event timeline.
func describeMachine(c *cli, cmd *cobra.Command, id string) error {
	api, err := c.client()
	if err != nil {
		return err
	}
	m, err := api.Machine.GetMachineContext(ctxOf(cmd), machine.NewGetMachineParams().WithID(id), nil)
	if err != nil {
		return err
	}
	log, err := machineEvents(ctxOf(cmd), api, id)
	if err != nil {
		return err
	}
	if c.output == "json" || c.output == "yaml" {
		return c.dump(cmd.OutOrStdout(), struct {
			Machine *wire.Machine         `json:"machine"`
			Events  *wire.MachineEventLog `json:"events"`
		}{m.Payload, log})
	}
	objs, err := objects(m.Payload)
	if err != nil {
		return err
	}
	return writeMachine(cmd.OutOrStdout(), objs[0], log)
}

func writeMachine(out io.Writer, o obj, log *wire.MachineEventLog) error {
	w := tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
	kv := func(k, v string) {
		if v != "" {
			fmt.Fprintf(w, "%s:\t%s\n", k, v)
		}
	}
	kv("ID", cell(o["id"]))
	kv("Name", cell(o["name"]))
	kv("Partition", cell(o["partitionID"]))
	kv("Rack", cell(o["rackID"]))
	kv("Size", cell(o["sizeID"]))
	kv("Status", status(o))
	kv("State", strings.TrimSpace(cell(lookup(o, "state.value"))+" "+cell(lookup(o, "state.description"))))
	kv("Liveliness", cell(o["liveliness"]))
	kv("Tags", cell(o["tags"]))
	var cpus, disks, nics []string
	for _, c := range list(o, "hardware.cpus") {
		cpus = append(cpus, fmt.Sprintf("%d cores %s", number(c, "cores"), cell(c["model"])))
	}
	for _, d := range list(o, "hardware.disks") {
		disks = append(disks, cell(d["name"])+" "+bytesOf(number(d, "size")))
	}
	for _, n := range list(o, "hardware.nics") {
		nics = append(nics, cell(n["name"])+" "+cell(n["mac"]))
	}
	kv("CPUs", strings.Join(cpus, ", "))
	if mem := number(o, "hardware.memory"); mem > 0 {
		kv("Memory", bytesOf(mem))
	}
	kv("Disks", strings.Join(disks, ", "))
	kv("NICs", strings.Join(nics, ", "))
	kv("BIOS", strings.TrimSpace(cell(lookup(o, "bios.vendor"))+" "+cell(lookup(o, "bios.version"))))
	kv("BMC", strings.TrimSpace(cell(lookup(o, "bmc.address"))+" "+cell(lookup(o, "bmc.mac"))))
	kv("Power", strings.TrimSpace(cell(lookup(o, "bmc.powerState"))+" "+timestamp(cell(lookup(o, "bmc.powerReported")))))
	if lookup(o, "allocation") != nil {
		fmt.Fprintln(w, "Allocation:")
		for _, f := range []struct{ k, path string }{
			{"Project", "projectID"}, {"Name", "name"}, {"Hostname", "hostname"}, {"Role", "role"}, {"Image", "imageID"},
			{"Layout", "filesystemLayoutID"}, {"Creator", "creator"}, {"Succeeded", "succeeded"},
		} {
			kv("  "+f.k, cell(lookup(o, "allocation."+f.path)))
		}
		kv("  Created", timestamp(cell(lookup(o, "allocation.created"))))
		if nets := list(o, "allocation.networks"); len(nets) > 0 {
			fmt.Fprintln(w, "  Networks:")
			for _, n := range nets {
				fmt.Fprintf(w, "    %s\t%s\t%s\tvrf %s\n", cell(n["networkID"]), cell(n["networkType"]), cell(n["ips"]), cell(n["vrf"]))
			}
		}
	}
	if wipe := lookup(o, "lastWipe"); wipe != nil {
		kv("Last wipe", timestamp(cell(lookup(o, "lastWipe.time"))))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	flags := ""
	if log.CrashLoop {
		flags += " crash loop"
	}
	if log.FailedMachineReclaim {
		flags += " failed reclaim"
	}
	fmt.Fprintf(out, "Events (%d incomplete provisioning cycles%s):\n", log.IncompleteProvisioningCycles, flags)
	rows, err := objects(log.Events)
	if err != nil {
		return err
	}
	if len(rows) == 0 {
		_, err := fmt.Fprintln(out, "  none")
		return err
	}
	var b strings.Builder
	if err := table(&b, rows, eventColumns, false); err != nil {
		return err
	}
	for _, line := range strings.Split(strings.TrimRight(b.String(), "\n"), "\n") {
		fmt.Fprintln(out, "  "+line)
	}
	return nil
}
