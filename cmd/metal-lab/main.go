// Command metal-lab runs a whole metalforge partition on this host (root, no KVM, no Docker):
// QEMU machines with ipmi_sim BMCs that PXE-boot the hammer from the boot-server, metal-api and
// the bmc-agent, all in the network namespace mflab, with the REST API forwarded to the host.
//
//	metal-lab up [--machines 2]     create and start everything, power the machines on
//	metal-lab status                processes, power states, registered machines
//	metal-lab down [--keep-data]    stop and remove everything up created
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/metalforge/metalforge/pkg/lab"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "metal-lab:", err)
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

const usage = `Usage: metal-lab <command> [flags]

Commands:
  up       create the lab: netns, bridge, taps, metal-api, boot-server, bmc-agent, BMCs, machines
  status   show the lab's processes, machines and what metal-api knows about them
  down     stop and remove everything up created

Run metal-lab <command> -h for the flags of a command.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	switch args[0] {
	case "up":
		return up(ctx, args[1:], stdout, stderr)
	case "down":
		return down(args[1:], stdout, stderr)
	case "status":
		return status(ctx, args[1:], stdout, stderr)
	case "forward":
		return forward(ctx, args[1:], stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprintf(stderr, "unknown command %q\n\n%s", args[0], usage)
	return errUsage
}

// common are the flags that find a lab.
func common(fs *flag.FlagSet, c *lab.Config) {
	fs.StringVar(&c.Dir, "dir", "", "lab directory: state, logs, data, machines (default $METALFORGE_CACHE/metal-lab)")
	fs.StringVar(&c.Name, "name", "", "network namespace (default mflab)")
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return nil
}

func up(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c lab.Config
	var images string
	fs := flag.NewFlagSet("metal-lab up", flag.ContinueOnError)
	fs.SetOutput(stderr)
	common(fs, &c)
	fs.IntVar(&c.Machines, "machines", 2, "number of QEMU machines")
	fs.StringVar(&c.Forward, "forward", "127.0.0.1:8080", "host address forwarded to metal-api's REST API (empty: none)")
	fs.StringVar(&images, "images", "small", "comma-separated images to build with hack/images/build.sh (small, debian, firewall)")
	fs.IntVar(&c.MemoryMB, "memory", 1024, "memory per machine in MiB")
	fs.BoolVar(&c.SkipBuild, "skip-build", false, "use the binaries in <dir>/bin as they are")
	fs.BoolVar(&c.NoArtifacts, "no-artifacts", false, "do not build the hammer initramfs and images (machines boot into a retry loop)")
	fs.BoolVar(&c.NoPowerOn, "no-power-on", false, "leave the machines off")
	timeout := fs.Duration("timeout", 30*time.Minute, "give up (and clean up) after this long; the first build of kernel and images takes minutes")
	if err := parse(fs, args); err != nil {
		return err
	}
	c.Images = splitList(images)
	c.InstallDeps = true
	c.Log = slog.New(slog.NewTextHandler(stderr, nil))
	if c.Forward != "" {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		c.ForwardCmd = []string{self, "forward"}
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	start := time.Now()
	l, err := lab.Up(ctx, c)
	if err != nil {
		return err
	}
	st := l.State()
	url := "http://" + c.Forward
	if c.Forward == "" {
		url = st.APIURL + "   (inside the namespace: ip netns exec " + st.Name + " ...)"
	}
	fmt.Fprintf(stdout, "\nmetal-lab is up in %v: %d machines in netns %s, partition %s, state %s/state.json\n\n",
		time.Since(start).Round(time.Second), len(st.Machines), st.Name, st.Partition, st.Dir)
	fmt.Fprintf(stdout, "  export METALCTL_URL=%s\n  export METALCTL_TOKEN=$(cat %s/admin-token)\n\n", url, st.Dir)
	fmt.Fprintf(stdout, "  metalctl machine ls                 # machines show up as Waiting once their hammer registered (~1 min)\n")
	fmt.Fprintf(stdout, "  metalctl machine describe %s\n", st.Machines[0].UUID)
	fmt.Fprintf(stdout, "  metalctl machine power cycle %s\n", st.Machines[0].UUID)
	fmt.Fprintf(stdout, "  metalctl machine allocate --project demo --partition %s --size v1-small-x86 --image small --auto-network\n", st.Partition)
	fmt.Fprintf(stdout, "  tail -f %s                # serial console of vm1\n", st.Machines[0].Console)
	fmt.Fprintf(stdout, "  metal-lab status\n  metal-lab down [--keep-data]\n")
	return nil
}

func down(args []string, stdout, stderr io.Writer) error {
	var c lab.Config
	fs := flag.NewFlagSet("metal-lab down", flag.ContinueOnError)
	fs.SetOutput(stderr)
	common(fs, &c)
	fs.BoolVar(&c.KeepData, "keep-data", false, "keep metal-api's database, the admin token, the machines' disks and the logs")
	if err := parse(fs, args); err != nil {
		return err
	}
	l, err := lab.Load(c)
	if err != nil {
		return fmt.Errorf("%w (nothing to take down?)", err)
	}
	if err := l.Down(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "metal-lab is down (data kept: %v)\n", c.KeepData)
	return nil
}

func status(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c lab.Config
	fs := flag.NewFlagSet("metal-lab status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	common(fs, &c)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	l, err := lab.Load(c)
	if err != nil {
		return fmt.Errorf("%w (is the lab up?)", err)
	}
	s := l.Status(ctx)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(s)
	}
	_, err = fmt.Fprint(stdout, s.String())
	return err
}

// forward is the background process up starts for --forward.
func forward(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("metal-lab forward", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ns := fs.String("netns", "mflab", "namespace of the target")
	listen := fs.String("listen", "127.0.0.1:8080", "host address to listen on")
	target := fs.String("target", "10.255.0.1:8080", "address inside the namespace")
	if err := parse(fs, args); err != nil {
		return err
	}
	return lab.Forward(ctx, *listen, *ns, *target, slog.New(slog.NewTextHandler(stderr, nil)))
}

func splitList(s string) []string {
	out := []string{}
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
