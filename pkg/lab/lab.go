// Package lab is a whole metalforge partition on one host, without KVM or containers, as a
// library: a network namespace with a PXE bridge and one tap per QEMU machine, metal-api
// (embedded SQLite), the boot-server and the bmc-agent running inside it, an ipmi_sim BMC per
// machine whose power on starts QEMU (TCG, network boot first, its BMC on the KCS interface),
// seed data and tokens, and optionally a host-side TCP forwarder to the REST API. Up powers the
// machines on through their BMCs, so they PXE-boot the hammer and register.
//
// Everything the lab starts or creates is written to a state file, so Down removes it again
// (processes by PID and start time, the namespace with its devices, the files) also from another
// process: cmd/metal-lab is `up`, `status` and `down` on top of this package, and end-to-end tests
// call Up and Down in-process.
package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/metalforge/metalforge/pkg/bmc"
	"github.com/metalforge/metalforge/pkg/client"
	"github.com/metalforge/metalforge/pkg/client/metalapi"
	"github.com/metalforge/metalforge/pkg/lab/netns"
)

// State is what a running lab consists of; it is saved as Dir/state.json.
type State struct {
	Name      string     `json:"name"`
	Dir       string     `json:"dir"`
	APIURL    string     `json:"apiURL"`
	Partition string     `json:"partition"`
	Forward   string     `json:"forward,omitempty"`
	Procs     []*Proc    `json:"procs"`
	Machines  []Machine  `json:"machines"`
	Tokens    Tokens     `json:"tokens"`
	Artifacts Artifacts  `json:"artifacts"`
	Created   time.Time  `json:"created"`
	Ready     *time.Time `json:"ready,omitempty"`
}

// Lab is a running (or partly created) lab.
type Lab struct {
	cfg Config
	st  State
}

// Up creates the lab of cfg and returns when every component runs and the machines are powered
// on. On failure it removes what it created. It refuses to start when a lab with the same state
// directory is up.
func Up(ctx context.Context, cfg Config) (*Lab, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("lab config: %w", err)
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("lab: needs root (network namespaces, taps)")
	}
	if _, err := os.Stat(cfg.statePath()); err == nil {
		return nil, fmt.Errorf("lab: %s exists: a lab is up (or was not taken down); run metal-lab down", cfg.statePath())
	}
	if netns.Exists(cfg.Name) {
		return nil, fmt.Errorf("lab: network namespace %s exists; run metal-lab down", cfg.Name)
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	l := &Lab{cfg: cfg, st: State{Name: cfg.Name, Dir: cfg.Dir, APIURL: cfg.APIURL(), Partition: cfg.Partition,
		Forward: cfg.Forward, Created: time.Now().UTC()}}
	if err := l.up(ctx); err != nil {
		if derr := l.down(true); derr != nil {
			err = errors.Join(err, fmt.Errorf("clean up: %w", derr))
		}
		return nil, fmt.Errorf("%w (logs kept in %s)", err, filepath.Join(cfg.Dir, "logs"))
	}
	return l, nil
}

func (l *Lab) save() error {
	raw, err := json.MarshalIndent(l.st, "", "  ")
	if err != nil {
		return err
	}
	tmp := l.cfg.statePath() + ".tmp"
	if err := os.WriteFile(tmp, raw, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, l.cfg.statePath())
}

func (l *Lab) addProc(p *Proc) error {
	l.st.Procs = append(l.st.Procs, p)
	return l.save()
}

func (l *Lab) logPath(name string) string { return filepath.Join(l.cfg.Dir, "logs", name+".log") }

func (l *Lab) up(ctx context.Context) error {
	c, log := &l.cfg, l.cfg.Log
	if err := l.save(); err != nil { // from here on, Down finds what to remove
		return err
	}
	if c.InstallDeps {
		if err := runDeps(ctx, c); err != nil {
			return err
		}
	}
	for _, p := range []string{"ipmi_sim", "qemu-system-x86_64", "qemu-img"} {
		if _, err := exec.LookPath(p); err != nil {
			return fmt.Errorf("lab: %s is not installed: run hack/deps.sh qemu-system-x86 ipxe-qemu qemu-utils openipmi ipmitool kmod cpio", p)
		}
	}
	if !c.SkipBuild {
		if err := buildBinaries(ctx, c, log); err != nil {
			return err
		}
	}
	assets := filepath.Join(c.Dir, "assets")
	if !c.NoArtifacts {
		a, err := buildArtifacts(ctx, c, assets, log)
		if err != nil {
			return err
		}
		l.st.Artifacts = a
	} else if err := os.MkdirAll(assets, 0o755); err != nil {
		return err
	}

	// Network: namespace, bridge, BMC addresses on lo, one tap per machine.
	if err := netns.Create(c.Name); err != nil {
		return err
	}
	if err := netns.AddBridge(c.Name, c.Bridge, c.BridgeAddr); err != nil {
		return err
	}
	for i := 1; i <= c.Machines; i++ {
		m := machineFor(c.Dir, i)
		if err := netns.AddLoopback(c.Name, netipPrefix(bmcIP(i))); err != nil {
			return err
		}
		if err := netns.AddTap(c.Name, m.Tap, c.Bridge); err != nil {
			return err
		}
		l.st.Machines = append(l.st.Machines, m)
	}
	if err := l.save(); err != nil {
		return err
	}
	log.Info("lab network ready", "netns", c.Name, "bridge", c.Bridge, "addr", c.BridgeAddr.String(), "machines", c.Machines)

	// metal-api with a fixed admin token (kept with the data).
	admin, err := adminToken(c.Dir)
	if err != nil {
		return err
	}
	l.st.Tokens.Admin = admin
	apiBin := filepath.Join(c.BinDir, binMetalAPI)
	p, err := startProc("metal-api", c.Name, l.logPath("metal-api"), []string{"METAL_API_ADMIN_TOKEN=" + admin},
		apiBin, "--data-dir", filepath.Join(c.Dir, "api"),
		"--listen", fmt.Sprintf("%s:%d", c.ServerIP(), c.APIPort), "--grpc-listen", fmt.Sprintf("%s:%d", c.ServerIP(), c.GRPCPort))
	if err != nil {
		return err
	}
	if err := l.addProc(p); err != nil {
		return err
	}
	rc := l.rest(admin)
	hctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	err = rc.waitHealthy(hctx)
	cancel()
	if err != nil {
		return fmt.Errorf("%w (log: %s)", err, p.Log)
	}
	toks, err := seed(ctx, rc, c, l.st.Artifacts)
	if err != nil {
		return err
	}
	l.st.Tokens.Service, l.st.Tokens.Boot = toks.Service, toks.Boot
	if err := l.save(); err != nil {
		return err
	}
	log.Info("metal-api ready and seeded", "url", c.APIURL(), "partition", c.Partition)

	if err := l.startPartitionServices(ctx, assets); err != nil {
		return err
	}
	if err := l.startMachines(ctx); err != nil {
		return err
	}
	if c.Forward != "" {
		argv := append(append([]string{}, c.ForwardCmd...), "--netns", c.Name, "--listen", c.Forward,
			"--target", fmt.Sprintf("%s:%d", c.ServerIP(), c.APIPort))
		p, err := startProc("forward", "", l.logPath("forward"), nil, argv...)
		if err != nil {
			return err
		}
		if err := l.addProc(p); err != nil {
			return err
		}
		if err := settle(ctx, p); err != nil { // e.g. the host port is taken
			return err
		}
	}
	if !c.NoPowerOn {
		if err := l.powerOnAll(ctx); err != nil {
			return err
		}
	}
	now := time.Now().UTC()
	l.st.Ready = &now
	return l.save()
}

// startPartitionServices starts the boot-server (when built) and the bmc-agent in the namespace.
func (l *Lab) startPartitionServices(ctx context.Context, assets string) error {
	c := &l.cfg
	grpc := fmt.Sprintf("%s:%d", c.ServerIP(), c.GRPCPort)
	if bin := filepath.Join(c.BinDir, binBootServer); exists(bin) {
		first, last := rangeOf(c.BridgeAddr)
		env := []string{"BOOT_SERVER_TOKEN=" + l.st.Tokens.Service, "BOOT_SERVER_HAMMER_TOKEN=" + l.st.Tokens.Boot}
		p, err := startProc("boot-server", c.Name, l.logPath("boot-server"), env, bin,
			"--interface", c.Bridge, "--server-ip", c.ServerIP().String(),
			"--range-first", first.String(), "--range-last", last.String(), "--netmask", maskOf(c.BridgeAddr),
			"--dns", c.ServerIP().String(), "--http-listen", fmt.Sprintf("%s:%d", c.ServerIP(), c.BootHTTPPort),
			"--assets", assets, "--cache-dir", filepath.Join(c.Dir, "boot-cache"), "--disable-tftp",
			"--api", grpc, "--partition", c.Partition, "--retry-delay", "5s")
		if err != nil {
			return err
		}
		if err := l.addProc(p); err != nil {
			return err
		}
	} else {
		c.Log.Warn("no boot-server binary: machines get no DHCP answer", "path", bin)
	}
	bin := filepath.Join(c.BinDir, binBMCAgent)
	p, err := startProc("bmc-agent", c.Name, l.logPath("bmc-agent"), []string{"BMC_AGENT_TOKEN=" + l.st.Tokens.Service}, bin,
		"--api-url", c.APIURL(), "--partition", c.Partition, "--poll-interval", "2s", "--report-interval", "15s")
	if err != nil {
		return err
	}
	if err := l.addProc(p); err != nil {
		return err
	}
	return settle(ctx, l.st.Procs...)
}

// settle gives processes half a second to fail on bad flags or taken ports, and reports the first
// that exited with the end of its log.
func settle(ctx context.Context, procs ...*Proc) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(500 * time.Millisecond):
	}
	for _, p := range procs {
		if !p.Alive() {
			out, _ := os.ReadFile(p.Log)
			return fmt.Errorf("%s exited: %s", p.Name, tail(string(out), 2000))
		}
	}
	return nil
}

// startMachines prepares every machine and starts its ipmi_sim (the machine stays off).
func (l *Lab) startMachines(ctx context.Context) error {
	c := &l.cfg
	for _, m := range l.st.Machines {
		files, err := prepareMachine(ctx, c, m)
		if err != nil {
			return err
		}
		p, err := startProc(fmt.Sprintf("ipmi_sim-vm%d", m.Index), c.Name, filepath.Join(m.Dir, "ipmi_sim.log"), nil,
			"ipmi_sim", "-c", files.LANConf, "-f", files.Emu, "-s", files.StateDir, "-n")
		if err != nil {
			return err
		}
		if err := l.addProc(p); err != nil {
			return err
		}
	}
	// Wait until every BMC answers.
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for i := range l.st.Machines {
		b, err := l.BMC(i)
		if err != nil {
			return err
		}
		if err := waitAnswer(wctx, b); err != nil {
			return fmt.Errorf("bmc of vm%d: %w", i+1, err)
		}
	}
	return nil
}

func waitAnswer(ctx context.Context, b bmc.BMC) error {
	for {
		_, err := b.PowerState(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no answer: %w", err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// powerOnAll sets boot-once PXE and powers every machine on through its BMC.
func (l *Lab) powerOnAll(ctx context.Context) error {
	for i, m := range l.st.Machines {
		b, err := l.BMC(i)
		if err != nil {
			return err
		}
		if err := b.BootOnce(ctx, bmc.BootPXE); err != nil {
			return err
		}
		if err := b.PowerOn(ctx); err != nil {
			return err
		}
		l.cfg.Log.Info("machine powered on", "machine", m.Index, "uuid", m.UUID, "mac", m.MAC, "console", m.Console)
	}
	return nil
}

// Down stops every process of the lab, deletes the namespace (with bridge and taps) and removes
// the lab's files, keeping metal-api's data, tokens and disks when the config says KeepData.
func (l *Lab) Down() error { return l.down(false) }

// down is Down; keepLogs keeps the logs (and consoles) for a failed Up.
func (l *Lab) down(keepLogs bool) error {
	var errs []error
	// QEMU runs in its ipmi_sim's process group and goes with it; its pidfile catches the rest.
	if err := stopAll(l.st.Procs); err != nil {
		errs = append(errs, err)
	}
	for _, m := range l.st.Machines {
		if err := killPIDFile(filepath.Join(m.Dir, "qemu.pid"), "qemu-system"); err != nil {
			errs = append(errs, err)
		}
	}
	if err := netns.Delete(l.cfg.Name); err != nil {
		errs = append(errs, err)
	}
	if err := removeFiles(l.cfg.Dir, l.cfg.KeepData, keepLogs); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("lab down: %w", errors.Join(errs...))
	}
	return nil
}

// removeFiles removes what Up wrote into dir (only names the lab uses); with keep, metal-api's
// data, the admin token, the machines' disks and the logs stay; with keepLogs the logs and
// consoles.
func removeFiles(dir string, keep, keepLogs bool) error {
	var errs []error
	rm := func(p string) {
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, err)
		}
	}
	rm(filepath.Join(dir, "state.json"))
	rm(filepath.Join(dir, "state.json.tmp"))
	rm(filepath.Join(dir, "assets"))
	rm(filepath.Join(dir, "boot-cache"))
	vms, _ := filepath.Glob(filepath.Join(dir, "vm[0-9]*"))
	for _, vm := range vms {
		if !keep && !keepLogs {
			rm(vm)
			continue
		}
		entries, _ := os.ReadDir(vm)
		for _, e := range entries {
			n := e.Name()
			if keep && n == "disk.qcow2" || (keep || keepLogs) && (n == "console.log" || n == "ipmi_sim.log") {
				continue
			}
			rm(filepath.Join(vm, n))
		}
	}
	if !keep {
		rm(filepath.Join(dir, "api"))
		rm(filepath.Join(dir, "admin-token"))
	}
	if !keep && !keepLogs {
		rm(filepath.Join(dir, "logs"))
	}
	return errors.Join(errs...)
}

// Load reads the state of the lab of cfg (Dir and Name) from its state file.
func Load(cfg Config) (*Lab, error) {
	cfg.Defaults()
	raw, err := os.ReadFile(cfg.statePath())
	if err != nil {
		return nil, fmt.Errorf("lab state: %w", err)
	}
	l := &Lab{cfg: cfg}
	if err := json.Unmarshal(raw, &l.st); err != nil {
		return nil, fmt.Errorf("lab state %s: %w", cfg.statePath(), err)
	}
	if l.st.Name != "" {
		l.cfg.Name = l.st.Name
	}
	return l, nil
}

// State returns the lab's state.
func (l *Lab) State() State { return l.st }

// Machines lists the lab's machines.
func (l *Lab) Machines() []Machine { return append([]Machine(nil), l.st.Machines...) }

// UUIDs are the machines' SMBIOS UUIDs: their machine IDs in metal-api.
func (l *Lab) UUIDs() []string {
	out := make([]string, len(l.st.Machines))
	for i, m := range l.st.Machines {
		out[i] = m.UUID
	}
	return out
}

// Console is the serial console log of machine i (0-based).
func (l *Lab) Console(i int) string { return l.st.Machines[i].Console }

// BMC returns the BMC of machine i (0-based), reached inside the namespace.
func (l *Lab) BMC(i int) (bmc.BMC, error) {
	if i < 0 || i >= len(l.st.Machines) {
		return nil, fmt.Errorf("lab has no machine %d", i)
	}
	return bmcOf(l.cfg.Name, l.st.Machines[i])
}

// HTTPClient reaches addresses inside the lab's namespace (metal-api, boot-server).
func (l *Lab) HTTPClient() *http.Client {
	return &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{DialContext: netns.Dialer(l.cfg.Name)}}
}

// URL is metal-api's REST URL inside the namespace (use it with HTTPClient).
func (l *Lab) URL() string { return l.st.APIURL }

// Tokens returns the lab's tokens.
func (l *Lab) Tokens() Tokens { return l.st.Tokens }

// Client is a metal-api REST client with the admin token that dials inside the namespace.
func (l *Lab) Client() (*metalapi.MetalAPI, error) {
	return client.NewWithHTTPClient(l.st.APIURL, l.st.Tokens.Admin, l.HTTPClient())
}

func (l *Lab) rest(token string) *restClient {
	return &restClient{base: l.cfg.APIURL(), token: token, hc: l.HTTPClient()}
}

// adminToken returns the lab's admin token, creating it on first use.
func adminToken(dir string) (string, error) {
	path := filepath.Join(dir, "admin-token")
	if raw, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(raw))) >= 32 {
		return strings.TrimSpace(string(raw)), nil
	}
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	tok := "mflab-" + hex.EncodeToString(b)
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", err
	}
	return tok, nil
}
