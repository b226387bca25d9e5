package store

import (
	"strconv"

	"github.com/metalforge/metalforge/pkg/api"
)

// Kind names an aggregate and its table.
type Kind string

// The aggregates.
const (
	KindPartition        Kind = "partitions"
	KindProject          Kind = "projects"
	KindSize             Kind = "sizes"
	KindSizeReservation  Kind = "sizereservations"
	KindImage            Kind = "images"
	KindFilesystemLayout Kind = "filesystemlayouts"
	KindMachine          Kind = "machines"
	KindEventLog         Kind = "eventlogs"
	KindNetwork          Kind = "networks"
	KindIP               Kind = "ips"
	KindSwitch           Kind = "switches"
	KindBMCCommand       Kind = "bmccommands"
	KindToken            Kind = "tokens"
)

// Kinds lists every aggregate, for schema creation.
func Kinds() []Kind {
	return []Kind{KindPartition, KindProject, KindSize, KindSizeReservation, KindImage,
		KindFilesystemLayout, KindMachine, KindEventLog, KindNetwork, KindIP, KindSwitch,
		KindBMCCommand, KindToken}
}

// Machine status values of the Key2 index.
const (
	MachineStatusFree      = "free"
	MachineStatusWaiting   = "waiting"
	MachineStatusAllocated = "allocated"
)

// BMC command status values of the Key2 index.
const (
	CommandPending = "pending"
	CommandDone    = "done"
)

// Index is the set of queryable columns of an entity.
type Index struct {
	Project, Partition string
	Key1, Key2, Key3   string
}

// IndexOf derives the indexed columns and the unique keys of an entity. The meaning of Key1..Key3:
//
//	machines:          size, status (free|waiting|allocated), rack;   keys mac:<nic mac>
//	                   (waiting = waiting for an allocation and neither tainted nor locked)
//	networks:          type, parent network, –;                       keys prefix:<prefix>, vrf:<n>
//	ips:               network, machine, type
//	sizereservations:  size
//	images:            os, os version
//	switches:          rack
//	bmccommands:       machine, status (pending|done)
//	tokens:            role;                                          keys hash:<sha256>
//	eventlogs:         liveliness
func IndexOf(e any) (Index, []string) {
	switch v := e.(type) {
	case *api.Machine:
		status := MachineStatusFree
		project := ""
		switch {
		case v.Allocation != nil:
			status, project = MachineStatusAllocated, v.Allocation.ProjectID
		case v.Waiting && v.State.Value == "":
			// Only untainted, unlocked waiting machines are allocation candidates.
			status = MachineStatusWaiting
		}
		var keys []string
		for _, n := range v.Hardware.NICs {
			if n.MAC != "" {
				keys = append(keys, "mac:"+n.MAC)
			}
		}
		return Index{Project: project, Partition: v.PartitionID, Key1: v.SizeID, Key2: status, Key3: v.RackID}, keys
	case *api.Network:
		var keys []string
		for _, p := range v.Prefixes {
			keys = append(keys, "prefix:"+p)
		}
		if v.VRF != 0 {
			keys = append(keys, "vrf:"+strconv.FormatUint(uint64(v.VRF), 10))
		}
		return Index{Project: v.ProjectID, Partition: v.PartitionID, Key1: v.Type, Key2: v.ParentNetworkID}, keys
	case *api.IP:
		return Index{Project: v.ProjectID, Key1: v.NetworkID, Key2: v.MachineID, Key3: v.Type}, nil
	case *api.SizeReservation:
		return Index{Project: v.ProjectID, Key1: v.SizeID}, nil
	case *api.Image:
		return Index{Key1: v.OS, Key2: v.OSVersion}, nil
	case *api.Switch:
		return Index{Partition: v.PartitionID, Key1: v.RackID}, nil
	case *api.BMCCommand:
		status := CommandPending
		if v.Done != nil {
			status = CommandDone
		}
		return Index{Partition: v.PartitionID, Key1: v.MachineID, Key2: status}, nil
	case *api.Token:
		return Index{Project: v.ProjectID, Partition: v.PartitionID, Key1: v.Role}, []string{"hash:" + v.Secret}
	case *api.MachineEventLog:
		return Index{Key1: v.Liveliness}, nil
	case *api.Project:
		return Index{Project: v.ID}, nil
	}
	return Index{}, nil
}
