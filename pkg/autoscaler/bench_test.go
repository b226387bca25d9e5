package autoscaler_test

import (
	"testing"
	"time"

	pb "github.com/metalforge/metalforge/pkg/autoscaler/externalgrpc"
	machineops "github.com/metalforge/metalforge/pkg/client/metalapi/machine"
	"github.com/metalforge/metalforge/pkg/client/wire"
)

// BenchmarkIncreaseSize measures a scale-up by one machine through the autoscaler (read the group,
// count the waiting machines, allocate, over gRPC) against the bare allocation through metal-api's
// REST client, in the same run. Between iterations, untimed, the machine is freed and waits again.
func BenchmarkIncreaseSize(b *testing.B) {
	f := newFixture(b, 2)
	recycle := func(b *testing.B, id string) {
		b.StopTimer()
		_, err := f.editor.Machine.FreeMachineContext(b.Context(), machineops.NewFreeMachineParams().WithID(id), nil)
		check(b, err)
		f.register(f.index[id])
		b.StartTimer()
	}
	// The mean of each side's last run, for the ratio.
	var scale, alloc time.Duration
	b.Run("autoscaler", func(b *testing.B) {
		var sum time.Duration
		defer func() { scale = sum / time.Duration(b.N) }()
		for range b.N {
			start := time.Now()
			_, err := f.cp.NodeGroupIncreaseSize(b.Context(), &pb.NodeGroupIncreaseSizeRequest{Id: "workers", Delta: 1})
			sum += time.Since(start)
			check(b, err)
			b.StopTimer()
			ids := f.allocated("workers")
			if len(ids) != 1 {
				b.Fatalf("members %v, want 1", ids)
			}
			recycle(b, ids[0])
			b.StopTimer()
			_, err = f.cp.Refresh(b.Context(), &pb.RefreshRequest{})
			check(b, err)
			b.StartTimer()
		}
	})
	b.Run("metal-api-allocate", func(b *testing.B) {
		var sum time.Duration
		defer func() { alloc = sum / time.Duration(b.N) }()
		for range b.N {
			start := time.Now()
			r, err := f.editor.Machine.AllocateMachineContext(b.Context(), machineops.NewAllocateMachineParams().WithBody(&wire.MachineAllocateRequest{
				ProjectID: f.project, PartitionID: part, SizeID: sizeS1, ImageID: img, FilesystemLayoutID: layout, AutoNetwork: true}), nil)
			sum += time.Since(start)
			check(b, err)
			recycle(b, r.Payload.ID)
		}
	})
	if alloc > 0 {
		b.Logf("IncreaseSize(1) %v, bare allocation %v: ratio %.2f", scale.Round(time.Microsecond), alloc.Round(time.Microsecond),
			float64(scale)/float64(alloc))
	}
}
