// Command metalctl is the command line of metalforge's metal-api: see pkg/metalctl.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/metalforge/metalforge/pkg/metalctl"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	cfg := metalctl.Config{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv, Version: version}
	if home, err := os.UserHomeDir(); err == nil {
		cfg.ConfigFile = filepath.Join(home, ".metalctl.yaml")
	}
	err := metalctl.Run(ctx, cfg, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "Error:", metalctl.Message(err))
		os.Exit(1)
	}
}
