package bench

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx" for VACUUM

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/apiserver"
	"github.com/metalforge/metalforge/pkg/network"
	"github.com/metalforge/metalforge/pkg/store"
)

const (
	partition = "bench"
	sizeID    = "bench-size"
	project   = "bench-project"
	netID     = "bench-net"
	imageID   = "bench-image"
)

func machineID(i int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", i) }

// seedStore writes the partition, size, image, project, a private /16 and n waiting, alive machines
// in batches, straight into the store (registering 10,000 machines one by one would measure the
// seeding, not the API).
func seedStore(ctx context.Context, c apiserver.Config, n int) error {
	st, err := apiserver.OpenStore(ctx, c)
	if err != nil {
		return err
	}
	defer st.Close()
	err = st.Write(ctx, func(tx store.Tx) error {
		for _, err := range []error{
			tx.Partitions().Create(ctx, &api.Partition{Meta: api.Meta{ID: partition}}),
			tx.Sizes().Create(ctx, &api.Size{Meta: api.Meta{ID: sizeID}, Constraints: []api.Constraint{{Type: api.ConstraintCores, Min: 1, Max: 128}}}),
			tx.Images().Create(ctx, &api.Image{Meta: api.Meta{ID: imageID}, URL: "http://images/bench", OS: "debian", OSVersion: "12", Features: []string{api.FeatureMachine}}),
			tx.Projects().Create(ctx, &api.Project{Meta: api.Meta{ID: project}}),
		} {
			if err != nil {
				return err
			}
		}
		return network.Create(ctx, tx, &api.Network{Meta: api.Meta{ID: netID, Name: netID}, Type: api.NetworkPrivate,
			Prefixes: []string{"10.200.0.0/16"}, PartitionID: partition, ProjectID: project})
	})
	if err != nil {
		return err
	}
	const batch = 500
	now := time.Now().UTC()
	for from := 0; from < n; from += batch {
		err := st.Write(ctx, func(tx store.Tx) error {
			for i := from; i < min(n, from+batch); i++ {
				m := &api.Machine{
					Meta: api.Meta{ID: machineID(i)}, PartitionID: partition, SizeID: sizeID,
					RackID: fmt.Sprintf("rack-%02d", i%16), Waiting: true, Liveliness: api.LivelinessAlive,
					Hardware: api.MachineHardware{
						CPUs:   []api.MachineCPU{{Vendor: "GenuineIntel", Model: "Xeon", Cores: 32, Threads: 64}},
						Memory: 256 << 30,
						Disks:  []api.MachineBlockDevice{{Name: "nvme0n1", Size: 1 << 40}, {Name: "nvme1n1", Size: 1 << 40}},
						NICs: []api.MachineNIC{
							{Name: "lan0", MAC: fmt.Sprintf("02:00:%02x:%02x:%02x:00", i>>16&0xff, i>>8&0xff, i&0xff)},
							{Name: "lan1", MAC: fmt.Sprintf("02:00:%02x:%02x:%02x:01", i>>16&0xff, i>>8&0xff, i&0xff)},
						},
					},
				}
				if err := tx.Machines().Create(ctx, m); err != nil {
					return err
				}
				log := &api.MachineEventLog{Meta: api.Meta{ID: m.ID}, Liveliness: api.LivelinessAlive,
					Events: []api.ProvisioningEvent{{Time: now, Event: api.EventWaiting}}}
				if err := tx.EventLogs().Create(ctx, log); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if c.DB != "" {
		// A live database is vacuumed and analysed by autovacuum; a freshly seeded one is not yet,
		// which would make the benchmark measure heap fetches instead of index-only scans.
		db, err := sql.Open("pgx", c.DB)
		if err != nil {
			return err
		}
		defer db.Close()
		if _, err := db.ExecContext(ctx, "VACUUM ANALYZE"); err != nil {
			return fmt.Errorf("vacuum: %w", err)
		}
	}
	return nil
}
