package phonehome

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/bootrpc"
	"github.com/metalforge/metalforge/pkg/bootrpc/bootpb"
)

// Marker starts the line written to the kernel log after the first successful phone home; the lab
// and the image tests look for it in the serial console log.
const Marker = "metalforge: phoned home"

// Defaults of Config.
const (
	DefaultInterval     = 60 * time.Second
	DefaultFirstTimeout = 30 * time.Minute
	DefaultMinBackoff   = time.Second
	DefaultMaxBackoff   = 30 * time.Second
	DefaultCallTimeout  = 10 * time.Second
	DefaultKmsg         = "/dev/kmsg"
	DefaultMessage      = "metal-phonehome"
)

// Config configures Run. File is required; zero fields take the defaults above.
type Config struct {
	File File
	// Interval is how often the event is repeated after the first success, as liveliness.
	Interval time.Duration
	// Once stops after the first success instead of repeating.
	Once bool
	// FirstTimeout bounds how long the first phone home is retried; Run fails after it.
	FirstTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between failed first attempts (doubling, jittered).
	MinBackoff, MaxBackoff time.Duration
	// CallTimeout bounds one call.
	CallTimeout time.Duration
	// Kmsg is where the marker line goes (DefaultKmsg); "-" writes none.
	Kmsg string
	// Message is sent with every event.
	Message string
	// DialOptions are passed to bootrpc.Dial (transport credentials for TLS, test dialers).
	DialOptions []grpc.DialOption
}

// withDefaults returns c with zero fields set to the defaults.
func (c Config) withDefaults() Config {
	if c.Interval <= 0 {
		c.Interval = DefaultInterval
	}
	if c.FirstTimeout <= 0 {
		c.FirstTimeout = DefaultFirstTimeout
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = DefaultMinBackoff
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = max(DefaultMaxBackoff, c.MinBackoff)
	}
	if c.CallTimeout <= 0 {
		c.CallTimeout = DefaultCallTimeout
	}
	if c.Kmsg == "" {
		c.Kmsg = DefaultKmsg
	}
	if c.Message == "" {
		c.Message = DefaultMessage
	}
	return c
}

// ErrRejected wraps a refusal that retrying cannot fix: the token may not act on the machine or
// the request is invalid.
var ErrRejected = errors.New("phone home rejected")

// Run phones home once, retrying until it succeeds, FirstTimeout passes or ctx ends, then (unless
// Once) repeats the event every Interval until ctx ends. Failures of the repeated events are
// logged and do not stop it. It returns nil when ctx ends after the first success. A nil log
// discards.
func Run(ctx context.Context, c Config, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c = c.withDefaults()
	if err := c.File.Validate(); err != nil {
		return err
	}
	client, conn, err := bootrpc.Dial(ctx, c.File.API, c.File.Token, c.DialOptions...)
	if err != nil {
		return err
	}
	defer conn.Close()
	log = log.With("machine", c.File.MachineID, "api", c.File.API)

	attempts, err := first(ctx, c, client, log)
	if err != nil {
		return err
	}
	log.Info("phoned home", "attempts", attempts)
	if err := writeMarker(c.Kmsg, c.File.MachineID); err != nil {
		log.Warn("write kernel log marker failed", "err", err)
	}
	if c.Once {
		return nil
	}
	t := time.NewTicker(c.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := send(ctx, c, client); err != nil {
			log.Warn("liveliness phone home failed", "err", err)
			continue
		}
		log.Debug("liveliness phone home sent")
	}
}

// first retries the first phone home with backoff and returns the number of attempts.
func first(ctx context.Context, c Config, client bootpb.BootClient, log *slog.Logger) (int, error) {
	deadline := time.Now().Add(c.FirstTimeout)
	wait := c.MinBackoff
	for attempt := 1; ; attempt++ {
		err := send(ctx, c, client)
		if err == nil {
			return attempt, nil
		}
		if errors.Is(err, ErrRejected) {
			return attempt, err
		}
		if ctx.Err() != nil {
			return attempt, fmt.Errorf("phone home: %w", ctx.Err())
		}
		if time.Now().Add(wait).After(deadline) {
			return attempt, fmt.Errorf("phone home: gave up after %d attempts in %s: %w", attempt, c.FirstTimeout, err)
		}
		log.Info("phone home failed, retrying", "attempt", attempt, "retryIn", wait, "err", err)
		select {
		case <-ctx.Done():
			return attempt, fmt.Errorf("phone home: %w", ctx.Err())
		case <-time.After(jitter(wait)):
		}
		wait = min(2*wait, c.MaxBackoff)
	}
}

// send reports one Phoned Home event.
func send(ctx context.Context, c Config, client bootpb.BootClient) error {
	cctx, cancel := context.WithTimeout(ctx, c.CallTimeout)
	defer cancel()
	_, err := client.Event(cctx, &bootpb.EventRequest{MachineId: c.File.MachineID, Event: api.EventPhonedHome, Message: c.Message})
	if err == nil {
		return nil
	}
	switch status.Code(err) {
	case codes.PermissionDenied, codes.InvalidArgument:
		return fmt.Errorf("%w: %w", ErrRejected, err)
	}
	return fmt.Errorf("send event: %w", err)
}

// jitter spreads d by ±20% so that a rack of machines booting together does not call in lockstep.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// writeMarker writes the marker line to the kernel log at level notice (5), which the default
// console log level prints on the serial console.
func writeMarker(path, machineID string) error {
	if path == "-" {
		return nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("open kernel log: %w", err)
	}
	_, werr := fmt.Fprintf(f, "<5>%s machine=%s\n", Marker, machineID)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		return fmt.Errorf("write kernel log: %w", err)
	}
	return nil
}
