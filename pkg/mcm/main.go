package mcm

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/gardener/machine-controller-manager/pkg/util/provider/app"
	"github.com/gardener/machine-controller-manager/pkg/util/provider/app/options"
	"github.com/spf13/pflag"
	cliflag "k8s.io/component-base/cli/flag"
	"k8s.io/component-base/logs"
)

// Main runs MCM's provider-side machine controller with the driver until it fails, with MCM's
// own flags (--control-kubeconfig, --target-kubeconfig, --namespace, --machine-creation-timeout,
// ...; see --help). It returns the exit code: 0 for --help, 2 for bad flags, 1 when the controller
// stops. MCM's app.Run has no context and does not return while it runs, so the process is the
// unit of lifetime: stop it with a signal.
func Main(name string, args []string, stderr io.Writer) int {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	// As MCM's binaries (component-base's flag.InitFlags): --some_flag is --some-flag.
	fs.SetNormalizeFunc(cliflag.WordSepNormalizeFunc)
	s := options.NewMCServer()
	s.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 2
	}
	logs.InitLogs()
	defer logs.FlushLogs()
	drv := New(Config{Log: slog.New(slog.NewJSONHandler(os.Stderr, nil)).With("component", name)})
	if err := app.Run(s, drv); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	return 0
}
