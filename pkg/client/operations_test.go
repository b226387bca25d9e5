package client_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/client"
	"github.com/metalforge/metalforge/pkg/client/clienttest"
	"github.com/metalforge/metalforge/pkg/client/metalapi"
	"github.com/metalforge/metalforge/pkg/client/metalapi/bmc"
	"github.com/metalforge/metalforge/pkg/client/metalapi/filesystemlayout"
	"github.com/metalforge/metalforge/pkg/client/metalapi/image"
	"github.com/metalforge/metalforge/pkg/client/metalapi/ip"
	"github.com/metalforge/metalforge/pkg/client/metalapi/machine"
	"github.com/metalforge/metalforge/pkg/client/metalapi/network"
	"github.com/metalforge/metalforge/pkg/client/metalapi/partition"
	"github.com/metalforge/metalforge/pkg/client/metalapi/project"
	"github.com/metalforge/metalforge/pkg/client/metalapi/size"
	"github.com/metalforge/metalforge/pkg/client/metalapi/sizereservation"
	sw "github.com/metalforge/metalforge/pkg/client/metalapi/switch_operations"
	"github.com/metalforge/metalforge/pkg/client/metalapi/token"
	"github.com/metalforge/metalforge/pkg/client/metalapi/version"
	"github.com/metalforge/metalforge/pkg/client/wire"
)

// fixture is what the steps share: the client and the IDs earlier steps created.
type fixture struct {
	t   *testing.T
	api *clienttest.API
	c   *metalapi.MetalAPI

	project, reservation, privateNet, ip, token, command string
	machine                                              string
	installed                                            <-chan api.InstallSpec
}

func (f *fixture) ctx() context.Context { return f.t.Context() }

// check fails the test (and goes on) unless ok.
func (f *fixture) check(ok bool, format string, args ...any) {
	f.t.Helper()
	if !ok {
		f.t.Errorf(format, args...)
	}
}

// step calls one operation and returns the generated success response.
type step struct {
	op   string
	call func(f *fixture) (any, error)
}

const (
	part   = "p1"
	sizeID = "s1"
	img    = "debian-12"
	layout = "default"
	gib    = 1 << 30
)

func projectParams(p *wire.Project) *project.CreateProjectParams {
	return project.NewCreateProjectParams().WithBody(p)
}

func tokenParams(tok *wire.Token) *token.CreateTokenParams {
	return token.NewCreateTokenParams().WithBody(tok)
}

// findRequest builds a machine filter from JSON, so that the test does not depend on how the
// generator types optional filters (false and "" are filters too).
func findRequest(t *testing.T, js string) *wire.MachineFindRequest {
	t.Helper()
	var req wire.MachineFindRequest
	if err := json.Unmarshal([]byte(js), &req); err != nil {
		t.Fatal(err)
	}
	return &req
}

func createNetwork(n *wire.Network) func(f *fixture) (any, error) {
	return func(f *fixture) (any, error) {
		r, err := f.c.Network.CreateNetworkContext(f.ctx(), network.NewCreateNetworkParams().WithBody(n), nil)
		if err == nil {
			f.check(r.Payload.ID == n.ID && r.Payload.Version > 0, "created network %+v", r.Payload)
		}
		return r, err
	}
}

func deleteNetwork(id func(f *fixture) string) func(f *fixture) (any, error) {
	return func(f *fixture) (any, error) {
		return f.c.Network.DeleteNetworkContext(f.ctx(), network.NewDeleteNetworkParams().WithID(id(f)), nil)
	}
}

func fixed(id string) func(*fixture) string { return func(*fixture) string { return id } }

// steps covers every operation of the spec; TestEveryOperation runs them in order.
var steps = []step{
	{"getVersion", func(f *fixture) (any, error) {
		r, err := f.c.Version.GetVersionContext(f.ctx(), version.NewGetVersionParams())
		if err == nil {
			f.check(r.Payload.Version == "clienttest" && r.Payload.Store != "", "version %+v", r.Payload)
		}
		return r, err
	}},

	// Partition, size, image, filesystem layout: the global catalogue.
	{"createPartition", func(f *fixture) (any, error) {
		return f.c.Partition.CreatePartitionContext(f.ctx(), partition.NewCreatePartitionParams().WithBody(&wire.Partition{
			ID: part, Name: "Partition 1", Boot: &wire.BootConfig{KernelURL: "http://boot/vmlinuz", InitrdURL: "http://boot/initrd"},
			DNSServers: []string{"192.0.2.53"}, NTPServers: []string{"ntp.example.com"}}), nil)
	}},
	{"getPartition", func(f *fixture) (any, error) {
		r, err := f.c.Partition.GetPartitionContext(f.ctx(), partition.NewGetPartitionParams().WithID(part), nil)
		if err == nil {
			f.check(r.Payload.Boot.KernelURL == "http://boot/vmlinuz", "partition %+v", r.Payload)
		}
		return r, err
	}},
	{"listPartitions", func(f *fixture) (any, error) {
		r, err := f.c.Partition.ListPartitionsContext(f.ctx(), partition.NewListPartitionsParams().WithLimit(ptr[int64](10)), nil)
		if err == nil {
			f.check(len(r.Payload.Items) == 1 && r.Payload.Items[0].ID == part && r.Payload.Next == "", "page %+v", r.Payload)
		}
		return r, err
	}},
	{"updatePartition", func(f *fixture) (any, error) {
		old, err := f.c.Partition.GetPartitionContext(f.ctx(), partition.NewGetPartitionParams().WithID(part), nil)
		if err != nil {
			return nil, err
		}
		p := old.Payload
		p.Description = "updated"
		r, err := f.c.Partition.UpdatePartitionContext(f.ctx(), partition.NewUpdatePartitionParams().WithID(part).WithBody(p), nil)
		if err == nil {
			f.check(r.Payload.Description == "updated" && r.Payload.Version == p.Version+1, "updated %+v", r.Payload)
		}
		return r, err
	}},
	{"createSize", func(f *fixture) (any, error) {
		return f.c.Size.CreateSizeContext(f.ctx(), size.NewCreateSizeParams().WithBody(&wire.Size{ID: sizeID, Constraints: []*wire.Constraint{
			{Type: "cores", Min: 1, Max: 4}, {Type: "memory", Min: 1 * gib, Max: 16 * gib}}}), nil)
	}},
	{"getSize", func(f *fixture) (any, error) {
		r, err := f.c.Size.GetSizeContext(f.ctx(), size.NewGetSizeParams().WithID(sizeID), nil)
		if err == nil {
			f.check(len(r.Payload.Constraints) == 2 && r.Payload.Constraints[1].Max == 16*gib, "size %+v", r.Payload)
		}
		return r, err
	}},
	{"listSizes", func(f *fixture) (any, error) {
		return f.c.Size.ListSizesContext(f.ctx(), size.NewListSizesParams(), nil)
	}},
	{"updateSize", func(f *fixture) (any, error) {
		old, err := f.c.Size.GetSizeContext(f.ctx(), size.NewGetSizeParams().WithID(sizeID), nil)
		if err != nil {
			return nil, err
		}
		old.Payload.Labels = map[string]string{"class": "small"}
		return f.c.Size.UpdateSizeContext(f.ctx(), size.NewUpdateSizeParams().WithID(sizeID).WithBody(old.Payload), nil)
	}},
	{"createImage", func(f *fixture) (any, error) {
		return f.c.Image.CreateImageContext(f.ctx(), image.NewCreateImageParams().WithBody(&wire.Image{ID: img,
			URL: "http://images/debian-12.tar.zst", Sha256: strings.Repeat("ab", 32), OS: "debian", OSVersion: "12",
			Features: []string{"machine", "firewall"}, Classification: "supported"}), nil)
	}},
	{"getImage", func(f *fixture) (any, error) {
		return f.c.Image.GetImageContext(f.ctx(), image.NewGetImageParams().WithID(img), nil)
	}},
	{"listImages", func(f *fixture) (any, error) {
		return f.c.Image.ListImagesContext(f.ctx(), image.NewListImagesParams(), nil)
	}},
	{"updateImage", func(f *fixture) (any, error) {
		old, err := f.c.Image.GetImageContext(f.ctx(), image.NewGetImageParams().WithID(img), nil)
		if err != nil {
			return nil, err
		}
		old.Payload.Name = "Debian 12"
		return f.c.Image.UpdateImageContext(f.ctx(), image.NewUpdateImageParams().WithID(img).WithBody(old.Payload), nil)
	}},
	{"createFilesystemLayout", func(f *fixture) (any, error) {
		return f.c.Filesystemlayout.CreateFilesystemLayoutContext(f.ctx(), filesystemlayout.NewCreateFilesystemLayoutParams().
			WithBody(&wire.FilesystemLayout{ID: layout,
				Constraints: &wire.LayoutConstraints{Sizes: []string{sizeID}, Images: map[string]string{"debian": "*"}},
				Disks: []*wire.Disk{{Device: "/dev/vda", Partitions: []*wire.DiskPartition{
					{Number: 1, Label: "efi", Size: 512}, {Number: 2, Label: "root"}}}},
				Filesystems: []*wire.Filesystem{{Device: "/dev/vda1", Format: "vfat", Path: "/boot/efi"},
					{Device: "/dev/vda2", Format: "ext4", Path: "/"}}}), nil)
	}},
	{"getFilesystemLayout", func(f *fixture) (any, error) {
		return f.c.Filesystemlayout.GetFilesystemLayoutContext(f.ctx(), filesystemlayout.NewGetFilesystemLayoutParams().WithID(layout), nil)
	}},
	{"listFilesystemLayouts", func(f *fixture) (any, error) {
		return f.c.Filesystemlayout.ListFilesystemLayoutsContext(f.ctx(), filesystemlayout.NewListFilesystemLayoutsParams(), nil)
	}},
	{"updateFilesystemLayout", func(f *fixture) (any, error) {
		old, err := f.c.Filesystemlayout.GetFilesystemLayoutContext(f.ctx(), filesystemlayout.NewGetFilesystemLayoutParams().WithID(layout), nil)
		if err != nil {
			return nil, err
		}
		old.Payload.Disks[0].WipeOnReinstall = true
		return f.c.Filesystemlayout.UpdateFilesystemLayoutContext(f.ctx(), filesystemlayout.NewUpdateFilesystemLayoutParams().
			WithID(layout).WithBody(old.Payload), nil)
	}},

	// Project and its reservation.
	{"createProject", func(f *fixture) (any, error) {
		r, err := f.c.Project.CreateProjectContext(f.ctx(), projectParams(&wire.Project{Name: "tenant-a", Tenant: "bank"}), nil)
		if err == nil {
			f.project = r.Payload.ID
			f.check(f.project != "", "project without id")
		}
		return r, err
	}},
	{"getProject", func(f *fixture) (any, error) {
		return f.c.Project.GetProjectContext(f.ctx(), project.NewGetProjectParams().WithID(f.project), nil)
	}},
	{"listProjects", func(f *fixture) (any, error) {
		return f.c.Project.ListProjectsContext(f.ctx(), project.NewListProjectsParams(), nil)
	}},
	{"updateProject", func(f *fixture) (any, error) {
		old, err := f.c.Project.GetProjectContext(f.ctx(), project.NewGetProjectParams().WithID(f.project), nil)
		if err != nil {
			return nil, err
		}
		old.Payload.Labels = map[string]string{"env": "test"}
		return f.c.Project.UpdateProjectContext(f.ctx(), project.NewUpdateProjectParams().WithID(f.project).WithBody(old.Payload), nil)
	}},
	{"createSizeReservation", func(f *fixture) (any, error) {
		r, err := f.c.Sizereservation.CreateSizeReservationContext(f.ctx(), sizereservation.NewCreateSizeReservationParams().
			WithBody(&wire.SizeReservation{SizeID: sizeID, Amount: 1, ProjectID: f.project, PartitionIDs: []string{part}}), nil)
		if err == nil {
			f.reservation = r.Payload.ID
		}
		return r, err
	}},
	{"getSizeReservation", func(f *fixture) (any, error) {
		return f.c.Sizereservation.GetSizeReservationContext(f.ctx(), sizereservation.NewGetSizeReservationParams().WithID(f.reservation), nil)
	}},
	{"listSizeReservations", func(f *fixture) (any, error) {
		return f.c.Sizereservation.ListSizeReservationsContext(f.ctx(), sizereservation.NewListSizeReservationsParams(), nil)
	}},
	{"updateSizeReservation", func(f *fixture) (any, error) {
		old, err := f.c.Sizereservation.GetSizeReservationContext(f.ctx(), sizereservation.NewGetSizeReservationParams().WithID(f.reservation), nil)
		if err != nil {
			return nil, err
		}
		old.Payload.Description = "for tests"
		return f.c.Sizereservation.UpdateSizeReservationContext(f.ctx(), sizereservation.NewUpdateSizeReservationParams().
			WithID(f.reservation).WithBody(old.Payload), nil)
	}},

	// Switches: created by an admin, registered by the switch agent.
	{"createSwitch", func(f *fixture) (any, error) {
		return f.c.SwitchOperations.CreateSwitchContext(f.ctx(), sw.NewCreateSwitchParams().WithBody(&wire.Switch{ID: "leaf01",
			PartitionID: part, RackID: "r1", OS: &wire.SwitchOS{Vendor: "SONiC"},
			Ports: []*wire.SwitchPort{{Name: "swp1", MAC: "aa:bb:cc:00:00:01"}}}), nil)
	}},
	{"getSwitch", func(f *fixture) (any, error) {
		return f.c.SwitchOperations.GetSwitchContext(f.ctx(), sw.NewGetSwitchParams().WithID("leaf01"), nil)
	}},
	{"listSwitchs", func(f *fixture) (any, error) {
		return f.c.SwitchOperations.ListSwitchsContext(f.ctx(), sw.NewListSwitchsParams(), nil)
	}},
	{"updateSwitch", func(f *fixture) (any, error) {
		old, err := f.c.SwitchOperations.GetSwitchContext(f.ctx(), sw.NewGetSwitchParams().WithID("leaf01"), nil)
		if err != nil {
			return nil, err
		}
		old.Payload.ManagementIP = "192.0.2.1"
		return f.c.SwitchOperations.UpdateSwitchContext(f.ctx(), sw.NewUpdateSwitchParams().WithID("leaf01").WithBody(old.Payload), nil)
	}},
	{"registerSwitch", func(f *fixture) (any, error) {
		return f.c.SwitchOperations.RegisterSwitchContext(f.ctx(), sw.NewRegisterSwitchParams().WithBody(&wire.Switch{ID: "leaf02",
			PartitionID: part, RackID: "r1", OS: &wire.SwitchOS{Vendor: "SONiC", Version: "202311"},
			Ports: []*wire.SwitchPort{{Name: "swp1", MAC: "aa:bb:cc:00:01:01"}}}), nil)
	}},
	{"getSwitchDesired", func(f *fixture) (any, error) {
		return f.c.SwitchOperations.GetSwitchDesiredContext(f.ctx(), sw.NewGetSwitchDesiredParams().WithID("leaf02"), nil)
	}},
	{"reportSwitchSync", func(f *fixture) (any, error) {
		r, err := f.c.SwitchOperations.ReportSwitchSyncContext(f.ctx(), sw.NewReportSwitchSyncParams().WithID("leaf02").
			WithBody(&wire.SwitchSyncReport{Duration: int64(time.Second)}), nil)
		if err == nil {
			f.check(r.Payload.LastSync != nil, "last sync %+v", r.Payload.LastSync)
		}
		return r, err
	}},

	// Networks and IPs.
	{"createNetwork", createNetwork(&wire.Network{ID: "tenant-super", Type: "super", Prefixes: []string{"10.128.0.0/14"},
		PartitionID: part, ChildPrefixLength: 22})},
	{"createNetwork", createNetwork(&wire.Network{ID: "underlay", Type: "underlay", Prefixes: []string{"10.0.0.0/22"}, PartitionID: part})},
	{"createNetwork", createNetwork(&wire.Network{ID: "internet", Type: "external", Prefixes: []string{"185.1.2.0/24"},
		DestinationPrefixes: []string{"0.0.0.0/0"}, NAT: true, VRF: 104009})},
	{"getNetwork", func(f *fixture) (any, error) {
		r, err := f.c.Network.GetNetworkContext(f.ctx(), network.NewGetNetworkParams().WithID("internet"), nil)
		if err == nil {
			f.check(r.Payload.NAT && r.Payload.VRF == 104009, "network %+v", r.Payload)
		}
		return r, err
	}},
	{"listNetworks", func(f *fixture) (any, error) {
		r, err := f.c.Network.ListNetworksContext(f.ctx(), network.NewListNetworksParams(), nil)
		if err == nil {
			f.check(len(r.Payload.Items) == 3, "%d networks, want 3", len(r.Payload.Items))
		}
		return r, err
	}},
	{"findNetworks", func(f *fixture) (any, error) {
		r, err := f.c.Network.FindNetworksContext(f.ctx(), network.NewFindNetworksParams().WithBody(&wire.NetworkFindRequest{Type: "super"}), nil)
		if err == nil {
			f.check(len(r.Payload.Items) == 1 && r.Payload.Items[0].ID == "tenant-super", "found %+v", r.Payload.Items)
		}
		return r, err
	}},
	{"updateNetwork", func(f *fixture) (any, error) {
		old, err := f.c.Network.GetNetworkContext(f.ctx(), network.NewGetNetworkParams().WithID("internet"), nil)
		if err != nil {
			return nil, err
		}
		old.Payload.Description = "the internet"
		return f.c.Network.UpdateNetworkContext(f.ctx(), network.NewUpdateNetworkParams().WithID("internet").WithBody(old.Payload), nil)
	}},
	{"allocateNetwork", func(f *fixture) (any, error) {
		r, err := f.c.Network.AllocateNetworkContext(f.ctx(), network.NewAllocateNetworkParams().
			WithBody(&wire.NetworkAllocateRequest{Name: "a-net", ProjectID: f.project, PartitionID: part}), nil)
		if err == nil {
			f.privateNet = r.Payload.ID
			f.check(r.Payload.Type == "private" && r.Payload.ParentNetworkID == "tenant-super", "allocated %+v", r.Payload)
		}
		return r, err
	}},
	{"getNetworkUsage", func(f *fixture) (any, error) {
		r, err := f.c.Network.GetNetworkUsageContext(f.ctx(), network.NewGetNetworkUsageParams().WithID("tenant-super"), nil)
		if err == nil {
			f.check(r.Payload.UsedPrefixes == 1, "usage %+v", r.Payload)
		}
		return r, err
	}},
	{"allocateIP", func(f *fixture) (any, error) {
		r, err := f.c.IP.AllocateIPContext(f.ctx(), ip.NewAllocateIPParams().WithBody(&wire.IPAllocateRequest{
			NetworkID: "internet", ProjectID: f.project, Tags: []string{"lb"}}), nil)
		if err == nil {
			f.ip = r.Payload.ID
			f.check(strings.HasPrefix(r.Payload.Address, "185.1.2."), "ip %+v", r.Payload)
		}
		return r, err
	}},
	{"getIP", func(f *fixture) (any, error) {
		return f.c.IP.GetIPContext(f.ctx(), ip.NewGetIPParams().WithID(f.ip), nil)
	}},
	{"listIPs", func(f *fixture) (any, error) {
		return f.c.IP.ListIPsContext(f.ctx(), ip.NewListIPsParams(), nil)
	}},
	{"findIPs", func(f *fixture) (any, error) {
		r, err := f.c.IP.FindIPsContext(f.ctx(), ip.NewFindIPsParams().WithBody(&wire.IPFindRequest{Tag: "lb"}), nil)
		if err == nil {
			f.check(len(r.Payload.Items) == 1 && r.Payload.Items[0].ID == f.ip, "found %+v", r.Payload.Items)
		}
		return r, err
	}},
	{"updateIP", func(f *fixture) (any, error) {
		old, err := f.c.IP.GetIPContext(f.ctx(), ip.NewGetIPParams().WithID(f.ip), nil)
		if err != nil {
			return nil, err
		}
		old.Payload.Name, old.Payload.Type = "ingress", "static"
		return f.c.IP.UpdateIPContext(f.ctx(), ip.NewUpdateIPParams().WithID(f.ip).WithBody(old.Payload), nil)
	}},

	// Tokens.
	{"createToken", func(f *fixture) (any, error) {
		r, err := f.c.Token.CreateTokenContext(f.ctx(), tokenParams(&wire.Token{Name: "viewer", Role: "viewer", ProjectID: f.project}), nil)
		if err != nil {
			return r, err
		}
		f.token = r.Payload.ID
		f.check(r.Payload.Secret != "", "token without secret")
		// The new token works: its project is visible with it.
		_, err = f.api.Client(r.Payload.Secret).Project.GetProjectContext(f.ctx(), project.NewGetProjectParams().WithID(f.project), nil)
		f.check(err == nil, "the created token does not work: %v", message(err))
		return r, nil
	}},
	{"listTokens", func(f *fixture) (any, error) {
		r, err := f.c.Token.ListTokensContext(f.ctx(), token.NewListTokensParams(), nil)
		if err == nil {
			f.check(len(r.Payload.Items) == 2 && r.Payload.Items[0].Secret == "" && r.Payload.Items[1].Secret == "",
				"tokens %+v", r.Payload.Items)
		}
		return r, err
	}},

	// A machine, registered and waiting as the hammer makes it.
	{"listMachines", func(f *fixture) (any, error) {
		m := clienttest.Machine(part, 1)
		f.machine = m.ID
		f.api.Register(m)
		f.installed = f.api.Wait(m.ID)
		r, err := f.c.Machine.ListMachinesContext(f.ctx(), machine.NewListMachinesParams(), nil)
		if err == nil {
			f.check(len(r.Payload.Items) == 1 && r.Payload.Items[0].SizeID == sizeID, "machines %+v", r.Payload.Items)
		}
		return r, err
	}},
	{"findMachines", func(f *fixture) (any, error) {
		// Wait marks the machine waiting in the background.
		deadline := time.Now().Add(30 * time.Second)
		for {
			r, err := f.c.Machine.FindMachinesContext(f.ctx(), machine.NewFindMachinesParams().
				WithBody(findRequest(f.t, `{"waiting": true, "partitionID": "`+part+`"}`)), nil)
			if err != nil || len(r.Payload.Items) == 1 || time.Now().After(deadline) {
				if err == nil {
					f.check(len(r.Payload.Items) == 1 && r.Payload.Items[0].ID == f.machine, "waiting machines %+v", r.Payload.Items)
				}
				return r, err
			}
			time.Sleep(20 * time.Millisecond)
		}
	}},
	{"getMachine", func(f *fixture) (any, error) {
		r, err := f.c.Machine.GetMachineContext(f.ctx(), machine.NewGetMachineParams().WithID(f.machine), nil)
		if err == nil {
			m := r.Payload
			f.check(m.Waiting && m.Liveliness == "Alive" && m.BMC.Password == "" && m.BMC.User == "admin" &&
				len(m.Hardware.Nics) == 2, "machine %+v", m)
		}
		return r, err
	}},
	{"addMachineEvent", func(f *fixture) (any, error) {
		return f.c.Machine.AddMachineEventContext(f.ctx(), machine.NewAddMachineEventParams().WithID(f.machine).
			WithBody(&wire.EventRequest{Event: "Alive", Message: "heartbeat"}), nil)
	}},
	{"getMachineEvents", func(f *fixture) (any, error) {
		r, err := f.c.Machine.GetMachineEventsContext(f.ctx(), machine.NewGetMachineEventsParams().WithID(f.machine), nil)
		if err == nil {
			var evs []string
			for _, e := range r.Payload.Events {
				evs = append(evs, e.Event)
			}
			f.check(slices.Equal(evs, []string{"Registering", "Waiting", "Alive"}), "events %q", evs)
		}
		return r, err
	}},
	{"reportBMC", func(f *fixture) (any, error) {
		r, err := f.c.Machine.ReportBMCContext(f.ctx(), machine.NewReportBMCParams().WithID(f.machine).
			WithBody(&wire.BMCReport{PowerState: "ON"}), nil)
		if err == nil {
			f.check(r.Payload.BMC.PowerState == "ON", "bmc %+v", r.Payload.BMC)
		}
		return r, err
	}},
	{"setMachineState", func(f *fixture) (any, error) {
		return f.c.Machine.SetMachineStateContext(f.ctx(), machine.NewSetMachineStateParams().WithID(f.machine).
			WithBody(&wire.MachineStateRequest{Value: "TAINTED", Description: "flaky disk"}), nil)
	}},
	{"setMachineState", func(f *fixture) (any, error) {
		r, err := f.c.Machine.SetMachineStateContext(f.ctx(), machine.NewSetMachineStateParams().WithID(f.machine).
			WithBody(&wire.MachineStateRequest{}), nil)
		if err == nil {
			f.check(r.Payload.State.Value == "", "state %+v", r.Payload.State)
		}
		return r, err
	}},
	{"setMachineTags", func(f *fixture) (any, error) {
		r, err := f.c.Machine.SetMachineTagsContext(f.ctx(), machine.NewSetMachineTagsParams().WithID(f.machine).
			WithBody(&wire.MachineTagsRequest{Tags: []string{"cluster.metalforge.io/id=c1", "a=b", "a=b"}}), nil)
		if err == nil {
			f.check(len(r.Payload.Tags) == 2 && r.Payload.Tags[0] == "a=b", "tags %v", r.Payload.Tags)
		}
		return r, err
	}},
	{"powerMachine", func(f *fixture) (any, error) {
		r, err := f.c.Machine.PowerMachineContext(f.ctx(), machine.NewPowerMachineParams().WithID(f.machine).WithCommand("on"), nil)
		if err == nil {
			f.command = r.Payload.ID
			f.check(r.Payload.Command == "on" && r.Payload.PartitionID == part, "command %+v", r.Payload)
		}
		return r, err
	}},
	{"listBMCCommands", func(f *fixture) (any, error) {
		r, err := f.c.BMC.ListBMCCommandsContext(f.ctx(), bmc.NewListBMCCommandsParams().WithPartition(ptr(part)), nil)
		if err == nil {
			f.check(len(r.Payload.Items) == 1 && r.Payload.Items[0].ID == f.command, "commands %+v", r.Payload.Items)
		}
		return r, err
	}},
	{"doneBMCCommand", func(f *fixture) (any, error) {
		return f.c.BMC.DoneBMCCommandContext(f.ctx(), bmc.NewDoneBMCCommandParams().WithID(f.command).WithBody(&wire.BMCCommandDone{}), nil)
	}},
	{"allocateMachine", func(f *fixture) (any, error) {
		r, err := f.c.Machine.AllocateMachineContext(f.ctx(), machine.NewAllocateMachineParams().WithBody(&wire.MachineAllocateRequest{
			ProjectID: f.project, PartitionID: part, SizeID: sizeID, ImageID: img, FilesystemLayoutID: layout,
			Hostname: "node-1", Networks: []*wire.AllocationNetwork{{NetworkID: f.privateNet}, {NetworkID: "internet"}},
			SSHPubKeys: []string{"ssh-ed25519 AAAA test"}}), nil)
		if err != nil {
			return r, err
		}
		a := r.Payload.Allocation
		f.check(r.Payload.ID == f.machine && a != nil && a.ProjectID == f.project && len(a.Networks) == 2, "allocated %+v", r.Payload)
		// false is a filter too: no unallocated machine is left.
		free, err := f.c.Machine.FindMachinesContext(f.ctx(), machine.NewFindMachinesParams().
			WithBody(findRequest(f.t, `{"allocated": false}`)), nil)
		f.check(err == nil && len(free.GetPayload().Items) == 0, "unallocated machines after the allocation: %v %+v",
			message(err), free.GetPayload())
		select {
		case spec := <-f.installed:
			f.check(spec.Machine.ID == f.machine && spec.Image.ID == img && spec.Layout != nil, "install spec %+v", spec)
		case <-time.After(30 * time.Second):
			f.t.Error("the waiting machine got no install spec")
		}
		return r, nil
	}},
	{"reinstallMachine", func(f *fixture) (any, error) {
		r, err := f.c.Machine.ReinstallMachineContext(f.ctx(), machine.NewReinstallMachineParams().WithID(f.machine).
			WithBody(&wire.MachineReinstallRequest{ImageID: img}), nil)
		if err == nil {
			f.check(r.Payload.Allocation.Reinstall, "allocation %+v", r.Payload.Allocation)
		}
		return r, err
	}},
	{"freeMachine", func(f *fixture) (any, error) {
		r, err := f.c.Machine.FreeMachineContext(f.ctx(), machine.NewFreeMachineParams().WithID(f.machine), nil)
		if err == nil {
			f.check(r.Payload.Allocation == nil, "still allocated: %+v", r.Payload.Allocation)
		}
		return r, err
	}},
	{"deleteMachine", func(f *fixture) (any, error) {
		return f.c.Machine.DeleteMachineContext(f.ctx(), machine.NewDeleteMachineParams().WithID(f.machine), nil)
	}},

	// Everything goes again, dependents first.
	{"releaseIP", func(f *fixture) (any, error) {
		return f.c.IP.ReleaseIPContext(f.ctx(), ip.NewReleaseIPParams().WithID(f.ip), nil)
	}},
	{"deleteNetwork", deleteNetwork(func(f *fixture) string { return f.privateNet })},
	{"deleteNetwork", deleteNetwork(fixed("tenant-super"))},
	{"deleteNetwork", deleteNetwork(fixed("underlay"))},
	{"deleteNetwork", deleteNetwork(fixed("internet"))},
	{"deleteToken", func(f *fixture) (any, error) {
		return f.c.Token.DeleteTokenContext(f.ctx(), token.NewDeleteTokenParams().WithID(f.token), nil)
	}},
	{"deleteSizeReservation", func(f *fixture) (any, error) {
		return f.c.Sizereservation.DeleteSizeReservationContext(f.ctx(), sizereservation.NewDeleteSizeReservationParams().WithID(f.reservation), nil)
	}},
	{"deleteSwitch", func(f *fixture) (any, error) {
		return f.c.SwitchOperations.DeleteSwitchContext(f.ctx(), sw.NewDeleteSwitchParams().WithID("leaf01"), nil)
	}},
	{"deleteSwitch", func(f *fixture) (any, error) {
		return f.c.SwitchOperations.DeleteSwitchContext(f.ctx(), sw.NewDeleteSwitchParams().WithID("leaf02"), nil)
	}},
	{"deleteFilesystemLayout", func(f *fixture) (any, error) {
		return f.c.Filesystemlayout.DeleteFilesystemLayoutContext(f.ctx(), filesystemlayout.NewDeleteFilesystemLayoutParams().WithID(layout), nil)
	}},
	{"deleteImage", func(f *fixture) (any, error) {
		return f.c.Image.DeleteImageContext(f.ctx(), image.NewDeleteImageParams().WithID(img), nil)
	}},
	{"deleteSize", func(f *fixture) (any, error) {
		return f.c.Size.DeleteSizeContext(f.ctx(), size.NewDeleteSizeParams().WithID(sizeID), nil)
	}},
	{"deleteProject", func(f *fixture) (any, error) {
		return f.c.Project.DeleteProjectContext(f.ctx(), project.NewDeleteProjectParams().WithID(f.project), nil)
	}},
	{"deletePartition", func(f *fixture) (any, error) {
		r, err := f.c.Partition.DeletePartitionContext(f.ctx(), partition.NewDeletePartitionParams().WithID(part), nil)
		if err == nil {
			_, err := f.c.Partition.GetPartitionContext(f.ctx(), partition.NewGetPartitionParams().WithID(part), nil)
			f.check(client.IsStatus(err, 404), "partition still there after delete: %v", err)
		}
		return r, err
	}},
}

func ptr[T any](v T) *T { return &v }

func message(err error) string {
	if err == nil {
		return "<nil>"
	}
	return client.Message(err)
}
