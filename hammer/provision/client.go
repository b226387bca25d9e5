package provision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/bootrpc/bootpb"
)

// transient reports errors worth retrying: the service is unreachable or overloaded.
func transient(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted:
		return true
	}
	return false
}

// retry calls f until it succeeds, fails permanently, or the retry budget is spent. Each call
// gets callTimeout.
func (r *runner) retry(ctx context.Context, what string, f func(ctx context.Context) error) error {
	deadline := time.Now().Add(r.cfg.RetryFor)
	backoff := 500 * time.Millisecond
	for {
		cctx, cancel := context.WithTimeout(ctx, r.cfg.CallTimeout)
		err := f(cctx)
		cancel()
		if err == nil || !transient(err) || time.Now().Add(backoff).After(deadline) || ctx.Err() != nil {
			if err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			return nil
		}
		r.log.Warn("boot service call failed, retrying", "call", what, "err", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// event records a provisioning event; failures are logged, never fatal.
func (r *runner) event(ctx context.Context, name, msg string) error {
	err := r.retry(ctx, "event "+name, func(ctx context.Context) error {
		_, err := r.client.Event(ctx, &bootpb.EventRequest{MachineId: r.id, Event: name, Message: msg})
		return err
	})
	if err != nil {
		r.log.Warn("event not recorded", "event", name, "err", err)
	} else {
		r.log.Info("event", "event", name, "message", msg)
	}
	return err
}

func (r *runner) register(ctx context.Context, m api.Machine) (*bootpb.RegisterResponse, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("register: %w", err)
	}
	var resp *bootpb.RegisterResponse
	err = r.retry(ctx, "register", func(ctx context.Context) error {
		resp, err = r.client.Register(ctx, &bootpb.RegisterRequest{MachineJson: b})
		return err
	})
	return resp, err
}

func (r *runner) reportWipe(ctx context.Context, w api.WipeRecord) error {
	b, err := json.Marshal(w)
	if err != nil {
		return fmt.Errorf("report wipe: %w", err)
	}
	return r.retry(ctx, "report wipe", func(ctx context.Context) error {
		_, err := r.client.ReportWipe(ctx, &bootpb.ReportWipeRequest{MachineId: r.id, WipeRecordJson: b})
		return err
	})
}

func (r *runner) report(ctx context.Context, rep api.InstallReport) error {
	b, err := json.Marshal(rep)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return r.retry(ctx, "report", func(ctx context.Context) error {
		_, err := r.client.Report(ctx, &bootpb.ReportRequest{MachineId: r.id, InstallReportJson: b})
		return err
	})
}

func (r *runner) abortReinstall(ctx context.Context, primaryWiped bool) (*api.BootInfo, error) {
	var resp *bootpb.AbortReinstallResponse
	err := r.retry(ctx, "abort reinstall", func(ctx context.Context) error {
		var err error
		resp, err = r.client.AbortReinstall(ctx, &bootpb.AbortReinstallRequest{MachineId: r.id, PrimaryDiskWiped: primaryWiped})
		return err
	})
	if err != nil || len(resp.GetBootInfoJson()) == 0 {
		return nil, err
	}
	var bi api.BootInfo
	if err := json.Unmarshal(resp.GetBootInfoJson(), &bi); err != nil {
		return nil, fmt.Errorf("abort reinstall: boot info: %w", err)
	}
	return &bi, nil
}

// wait blocks on the Wait stream until the install spec arrives. Keepalives prove the stream is
// alive; a broken stream is re-opened.
func (r *runner) wait(ctx context.Context) (api.InstallSpec, error) {
	for {
		spec, err := r.waitOnce(ctx)
		if err == nil {
			return spec, nil
		}
		if ctx.Err() != nil || !(transient(err) || errors.Is(err, io.EOF)) {
			return api.InstallSpec{}, fmt.Errorf("wait: %w", err)
		}
		r.log.Warn("wait stream broke, reopening", "err", err)
		select {
		case <-ctx.Done():
			return api.InstallSpec{}, fmt.Errorf("wait: %w", ctx.Err())
		case <-time.After(r.cfg.WaitRetry):
		}
	}
}

func (r *runner) waitOnce(ctx context.Context) (api.InstallSpec, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := r.client.Wait(ctx, &bootpb.WaitRequest{MachineId: r.id})
	if err != nil {
		return api.InstallSpec{}, err
	}
	for {
		msg, err := stream.Recv()
		if err != nil {
			return api.InstallSpec{}, err
		}
		if msg.GetKeepalive() || len(msg.GetInstallSpecJson()) == 0 {
			r.log.Debug("wait keepalive")
			continue
		}
		var spec api.InstallSpec
		if err := json.Unmarshal(msg.GetInstallSpecJson(), &spec); err != nil {
			return api.InstallSpec{}, status.Errorf(codes.InvalidArgument, "install spec: %v", err)
		}
		return spec, nil
	}
}
