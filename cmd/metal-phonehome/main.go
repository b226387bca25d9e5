// Command metal-phonehome runs in an installed OS: it tells metal-api that the machine came up
// ("Phoned Home") with the machine token the hammer left in /etc/metalforge/phonehome.json, writes
// a marker to the kernel log, and repeats the event as liveliness. Build it static
// (CGO_ENABLED=0) so that any image can carry it.
//
//	metal-phonehome [-config /etc/metalforge/phonehome.json] [-interval 60s] [-once]
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/metalforge/metalforge/pkg/phonehome"
)

var version = "dev"

func main() {
	fs := flag.NewFlagSet("metal-phonehome", flag.ExitOnError)
	path := fs.String("config", phonehome.DefaultPath, "phone-home file written by the hammer")
	var c phonehome.Config
	fs.DurationVar(&c.Interval, "interval", phonehome.DefaultInterval, "how often to repeat the event as liveliness")
	fs.BoolVar(&c.Once, "once", false, "exit after the first successful phone home")
	fs.DurationVar(&c.FirstTimeout, "first-timeout", phonehome.DefaultFirstTimeout, "give up when the first phone home has not succeeded after this long")
	fs.StringVar(&c.Kmsg, "kmsg", phonehome.DefaultKmsg, `where to write the marker line ("-" for nowhere)`)
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	showVersion := fs.Bool("version", false, "print the version and exit")
	_ = fs.Parse(os.Args[1:])
	if *showVersion {
		fmt.Println(version)
		return
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "metal-phonehome: %v\n", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	f, err := phonehome.ReadFile(*path)
	if err != nil {
		log.Error("metal-phonehome failed", "err", err)
		os.Exit(1)
	}
	c.File = f
	c.Message = "metal-phonehome " + version
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := phonehome.Run(ctx, c, log); err != nil {
		log.Error("metal-phonehome failed", "err", err)
		os.Exit(1)
	}
}
