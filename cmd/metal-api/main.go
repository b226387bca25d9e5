// Command metal-api is the metalforge control plane: REST API, gRPC boot service and store.
//
//	metal-api --listen 127.0.0.1:8080 --data-dir ./data            embedded SQLite
//	metal-api --db postgres://user@host/metal                       PostgreSQL (HA)
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/metalforge/metalforge/pkg/apiserver"
)

var version = "dev"

func main() {
	var c apiserver.Config
	fs := flag.NewFlagSet("metal-api", flag.ExitOnError)
	fs.StringVar(&c.Listen, "listen", env("METAL_API_LISTEN", "127.0.0.1:8080"), "REST listen address")
	fs.StringVar(&c.GRPCListen, "grpc-listen", env("METAL_API_GRPC_LISTEN", "127.0.0.1:50051"), "gRPC boot service listen address")
	fs.StringVar(&c.DataDir, "data-dir", env("METAL_API_DATA_DIR", ""), "data directory of the embedded SQLite store (default ./data)")
	fs.StringVar(&c.DB, "db", env("METAL_API_DB", ""), "PostgreSQL URL (postgres://...); replaces the embedded store")
	fs.StringVar(&c.AdminToken, "admin-token", env("METAL_API_ADMIN_TOKEN", ""), "ensure this secret is an admin token")
	fs.DurationVar(&c.LivelinessInterval, "liveliness-interval", 30*time.Second, "how often to check for silent machines")
	logLevel := fs.String("log-level", env("METAL_API_LOG_LEVEL", "info"), "debug, info, warn or error")
	showVersion := fs.Bool("version", false, "print the version and exit")
	_ = fs.Parse(os.Args[1:])
	if *showVersion {
		fmt.Println(version)
		return
	}
	c.Version = version
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "metal-api: %v\n", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := apiserver.Start(ctx, c, log); err != nil {
		log.Error("metal-api failed", "err", err)
		os.Exit(1)
	}
}

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
