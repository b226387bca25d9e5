// Package metalctl is the metalctl command line as a library: every resource of metal-api (list,
// describe, create, update, delete, apply) and its actions (allocate, free, power, ...), output as
// kubectl-like tables, YAML or JSON, and shell completion. It talks to metal-api through the
// generated client of pkg/client. cmd/metalctl only wires the process (arguments, environment,
// signals, exit code) onto Run.
package metalctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/metalforge/metalforge/pkg/client"
	"github.com/metalforge/metalforge/pkg/client/metalapi"
)

// Environment variables that override the config file.
const (
	EnvURL   = "METALCTL_URL"
	EnvToken = "METALCTL_TOKEN"
)

// Config is the process around the command line.
type Config struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Getenv reads METALCTL_URL and METALCTL_TOKEN; nil reads nothing.
	Getenv func(string) string
	// ConfigFile is the default config file (~/.metalctl.yaml), overridden by --config. A missing
	// default file is no error.
	ConfigFile string
	// Version is the client version `metalctl version` prints.
	Version string
	// HTTPClient talks to metal-api; nil is http.DefaultClient.
	HTTPClient *http.Client
}

// FileConfig is the content of ~/.metalctl.yaml.
type FileConfig struct {
	URL   string `json:"url"`
	Token string `json:"token"`
}

// Run executes one command line (without the program name).
func Run(ctx context.Context, cfg Config, args []string) error {
	cmd := NewCommand(cfg)
	cmd.SetArgs(args)
	return cmd.ExecuteContext(ctx)
}

// Message renders an error of Run for people: the API's message and status for error responses.
func Message(err error) string { return client.Message(err) }

// cli is the state of one command line: flags and the lazily made client.
type cli struct {
	cfg                      Config
	url, token, file, output string
	api                      *metalapi.MetalAPI
}

// NewCommand returns the root command.
func NewCommand(cfg Config) *cobra.Command {
	if cfg.Stdin == nil {
		cfg.Stdin = strings.NewReader("")
	}
	if cfg.Stdout == nil {
		cfg.Stdout = io.Discard
	}
	if cfg.Stderr == nil {
		cfg.Stderr = io.Discard
	}
	if cfg.Getenv == nil {
		cfg.Getenv = func(string) string { return "" }
	}
	c := &cli{cfg: cfg}
	root := &cobra.Command{
		Use:   "metalctl",
		Short: "metalctl manages the machines, networks and catalogue of a metalforge control plane",
		Long: `metalctl talks to metal-api. The URL and token come from ~/.metalctl.yaml (url, token),
overridden by ` + EnvURL + ` / ` + EnvToken + `, overridden by --url / --token.`,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			return c.checkOutput()
		},
	}
	root.SetIn(cfg.Stdin)
	root.SetOut(cfg.Stdout)
	root.SetErr(cfg.Stderr)
	pf := root.PersistentFlags()
	pf.StringVar(&c.url, "url", "", "metal-api URL (overrides "+EnvURL+" and the config file)")
	pf.StringVar(&c.token, "token", "", "API token (overrides "+EnvToken+" and the config file)")
	pf.StringVar(&c.file, "config", "", "config file (default "+cfg.ConfigFile+")")
	pf.StringVarP(&c.output, "output", "o", "table", "output format: table, wide, yaml or json")
	_ = root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(formats, cobra.ShellCompDirectiveNoFileComp))

	for _, r := range c.resources() {
		root.AddCommand(c.resourceCommand(r))
	}
	root.AddCommand(c.applyCommand(), c.versionCommand())
	return root
}

// client returns the API client, resolving URL and token on first use.
func (c *cli) client() (*metalapi.MetalAPI, error) {
	if c.api != nil {
		return c.api, nil
	}
	fc, err := c.fileConfig()
	if err != nil {
		return nil, err
	}
	url := first(c.url, c.cfg.Getenv(EnvURL), fc.URL)
	token := first(c.token, c.cfg.Getenv(EnvToken), fc.Token)
	if url == "" {
		return nil, fmt.Errorf("no metal-api URL: set url in %s, %s or --url", c.configPath(), EnvURL)
	}
	api, err := client.NewWithHTTPClient(url, token, c.cfg.HTTPClient)
	if err != nil {
		return nil, err
	}
	c.api = api
	return api, nil
}

func (c *cli) configPath() string {
	if c.file != "" {
		return c.file
	}
	return c.cfg.ConfigFile
}

// fileConfig reads the config file; only an explicitly named file must exist.
func (c *cli) fileConfig() (FileConfig, error) {
	var fc FileConfig
	path := c.configPath()
	if path == "" {
		return fc, nil
	}
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && c.file == "" {
		return fc, nil
	}
	if err != nil {
		return fc, fmt.Errorf("read config: %w", err)
	}
	if err := yaml.UnmarshalStrict(raw, &fc); err != nil {
		return fc, fmt.Errorf("config %s: %w", path, err)
	}
	return fc, nil
}

func first(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// ctxOf is the command's context (Run's), never nil.
func ctxOf(cmd *cobra.Command) context.Context {
	if ctx := cmd.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}
