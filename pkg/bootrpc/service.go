package bootrpc

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/auth"
	"github.com/metalforge/metalforge/pkg/bootrpc/bootpb"
	"github.com/metalforge/metalforge/pkg/store"
)

// service implements bootpb.BootServer. It is separate from Server so that the rpc named Register
// does not clash with (*Server).Register.
type service struct {
	bootpb.UnimplementedBootServer
	*Server
}

// partitionMAC checks the caller against the requested partition and parses the MAC.
func partitionMAC(ctx context.Context, partitionID, mac string) (string, string, error) {
	p, err := caller(ctx)
	if err != nil {
		return "", "", err
	}
	partitionID, err = partition(p, partitionID)
	if err != nil {
		return "", "", err
	}
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return "", "", status.Errorf(codes.InvalidArgument, "invalid mac %q", mac)
	}
	return partitionID, hw.String(), nil
}

// forMachine checks that the caller may act on machineID.
func (s *service) forMachine(ctx context.Context, machineID string) error {
	p, err := caller(ctx)
	if err != nil {
		return err
	}
	return s.machine(ctx, p, machineID)
}

// decode unmarshals a JSON payload field of a request.
func decode(field string, b []byte, v any) error {
	if len(b) == 0 {
		return status.Errorf(codes.InvalidArgument, "%s is required", field)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return status.Errorf(codes.InvalidArgument, "%s: %v", field, err)
	}
	return nil
}

func (s *service) Dhcp(ctx context.Context, req *bootpb.DhcpRequest) (*bootpb.DhcpResponse, error) {
	partitionID, mac, err := partitionMAC(ctx, req.GetPartitionId(), req.GetMac())
	if err != nil {
		return nil, err
	}
	id, err := s.cfg.Machines.Dhcp(ctx, partitionID, mac)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	return &bootpb.DhcpResponse{MachineId: id}, nil
}

func (s *service) Lease(ctx context.Context, req *bootpb.LeaseRequest) (*bootpb.LeaseResponse, error) {
	partitionID, mac, err := partitionMAC(ctx, req.GetPartitionId(), req.GetMac())
	if err != nil {
		return nil, err
	}
	first, err1 := netip.ParseAddr(req.GetFirst())
	last, err2 := netip.ParseAddr(req.GetLast())
	if err1 != nil || err2 != nil || !first.Is4() || !last.Is4() || last.Less(first) {
		return nil, status.Errorf(codes.InvalidArgument, "lease range %q-%q is not two ascending IPv4 addresses", req.GetFirst(), req.GetLast())
	}
	ip, err := s.cfg.Machines.Lease(ctx, partitionID, mac, first, last)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	return &bootpb.LeaseResponse{Ip: ip.String()}, nil
}

func (s *service) Boot(ctx context.Context, req *bootpb.BootRequest) (*bootpb.BootResponse, error) {
	partitionID, mac, err := partitionMAC(ctx, req.GetPartitionId(), req.GetMac())
	if err != nil {
		return nil, err
	}
	d, err := s.cfg.Machines.BootDecision(ctx, partitionID, mac)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	if d == nil {
		return nil, s.status(ctx, errors.New("nil boot decision"))
	}
	return &bootpb.BootResponse{
		MachineId: d.MachineID,
		Action:    d.Action,
		Kernel:    d.Kernel,
		Initrd:    d.Initrd,
		Cmdline:   d.Cmdline,
	}, nil
}

func (s *service) Register(ctx context.Context, req *bootpb.RegisterRequest) (*bootpb.RegisterResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	var m api.Machine
	if err := decode("machine_json", req.GetMachineJson(), &m); err != nil {
		return nil, err
	}
	if m.ID == "" {
		return nil, status.Error(codes.InvalidArgument, "machine_json: id is required")
	}
	if m.PartitionID, err = partition(p, m.PartitionID); err != nil {
		return nil, err
	}
	if scoped(p) {
		// A partition's token must not take over a machine registered in another partition.
		old, err := s.cfg.Machines.Get(ctx, m.ID)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return nil, s.status(ctx, err)
		case old.PartitionID != p.PartitionID:
			return nil, status.Errorf(codes.PermissionDenied, "token may not act on machine %q", m.ID)
		}
	}
	got, err := s.cfg.Machines.Register(ctx, &m)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	return &bootpb.RegisterResponse{MachineId: got.ID, SizeId: got.SizeID, PartitionId: got.PartitionID,
		Allocated: got.Allocation != nil, Reinstall: got.Allocation != nil && got.Allocation.Reinstall}, nil
}

func (s *service) Wait(req *bootpb.WaitRequest, stream grpc.ServerStreamingServer[bootpb.WaitResponse]) error {
	ctx := stream.Context()
	if err := s.forMachine(ctx, req.GetMachineId()); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	type result struct {
		spec *api.InstallSpec
		err  error
	}
	done := make(chan result, 1)
	go func() {
		spec, err := s.cfg.Machines.Wait(ctx, req.GetMachineId())
		done <- result{spec, err}
	}()

	tick := time.NewTicker(s.cfg.KeepaliveInterval)
	defer tick.Stop()
	for {
		select {
		case r := <-done:
			if r.err != nil {
				return s.status(ctx, r.err)
			}
			if r.spec == nil {
				return s.status(ctx, errors.New("nil install spec"))
			}
			b, err := json.Marshal(r.spec)
			if err != nil {
				return s.status(ctx, err)
			}
			return stream.Send(&bootpb.WaitResponse{InstallSpecJson: b})
		case <-tick.C:
			if err := stream.Send(&bootpb.WaitResponse{Keepalive: true}); err != nil {
				// The client is gone: stop waiting and let Machines.Wait clean up before returning.
				cancel()
				<-done
				return err
			}
		}
	}
}

func (s *service) Report(ctx context.Context, req *bootpb.ReportRequest) (*bootpb.ReportResponse, error) {
	if err := s.forMachine(ctx, req.GetMachineId()); err != nil {
		return nil, err
	}
	var r api.InstallReport
	if err := decode("install_report_json", req.GetInstallReportJson(), &r); err != nil {
		return nil, err
	}
	if err := s.cfg.Machines.Report(ctx, req.GetMachineId(), r); err != nil {
		return nil, s.status(ctx, err)
	}
	return &bootpb.ReportResponse{}, nil
}

func (s *service) ReportWipe(ctx context.Context, req *bootpb.ReportWipeRequest) (*bootpb.ReportWipeResponse, error) {
	if err := s.forMachine(ctx, req.GetMachineId()); err != nil {
		return nil, err
	}
	var w api.WipeRecord
	if err := decode("wipe_record_json", req.GetWipeRecordJson(), &w); err != nil {
		return nil, err
	}
	if err := s.cfg.Machines.ReportWipe(ctx, req.GetMachineId(), w); err != nil {
		return nil, s.status(ctx, err)
	}
	return &bootpb.ReportWipeResponse{}, nil
}

func (s *service) AbortReinstall(ctx context.Context, req *bootpb.AbortReinstallRequest) (*bootpb.AbortReinstallResponse, error) {
	if err := s.forMachine(ctx, req.GetMachineId()); err != nil {
		return nil, err
	}
	bi, err := s.cfg.Machines.AbortReinstall(ctx, req.GetMachineId(), req.GetPrimaryDiskWiped())
	if err != nil {
		return nil, s.status(ctx, err)
	}
	resp := &bootpb.AbortReinstallResponse{}
	if bi != nil {
		if resp.BootInfoJson, err = json.Marshal(bi); err != nil {
			return nil, s.status(ctx, err)
		}
	}
	return resp, nil
}

func (s *service) Event(ctx context.Context, req *bootpb.EventRequest) (*bootpb.EventResponse, error) {
	if p, ok := auth.FromContext(ctx); ok && p.Role == auth.RoleMachine {
		// An installed OS may only say that it came up or reboots, and only for itself.
		if p.MachineID == "" || p.MachineID != req.GetMachineId() {
			return nil, status.Errorf(codes.PermissionDenied, "token may not act on machine %q", req.GetMachineId())
		}
		if e := req.GetEvent(); e != api.EventPhonedHome && e != api.EventPlannedReboot {
			return nil, status.Errorf(codes.PermissionDenied, "a machine token may not report %q", e)
		}
	} else if err := s.forMachine(ctx, req.GetMachineId()); err != nil {
		return nil, err
	}
	if req.GetEvent() == "" {
		return nil, status.Error(codes.InvalidArgument, "event is required")
	}
	ev := api.EventRequest{Event: req.GetEvent(), Message: req.GetMessage()}
	if err := s.cfg.Machines.Event(ctx, req.GetMachineId(), ev); err != nil {
		return nil, s.status(ctx, err)
	}
	return &bootpb.EventResponse{}, nil
}
