package lab

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/lab/netns"
)

// Status is what `metal-lab status` shows.
type Status struct {
	NetNS    bool            `json:"netns"`
	Procs    []ProcStatus    `json:"procs"`
	APIReady bool            `json:"apiReady"`
	Machines []MachineStatus `json:"machines"`
}

// ProcStatus is one process of the lab.
type ProcStatus struct {
	Name  string `json:"name"`
	PID   int    `json:"pid"`
	Alive bool   `json:"alive"`
	Log   string `json:"log"`
}

// MachineStatus is one machine: its power as its BMC says, and what metal-api knows.
type MachineStatus struct {
	Machine
	Power      string `json:"power"`
	Registered bool   `json:"registered"`
	Waiting    bool   `json:"waiting"`
	LastEvent  string `json:"lastEvent,omitempty"`
	// ConsoleTail is the last line of the serial console.
	ConsoleTail string `json:"consoleTail,omitempty"`
}

// Status looks at every part of the lab; parts that do not answer are reported, not returned as
// errors.
func (l *Lab) Status(ctx context.Context) Status {
	s := Status{NetNS: netns.Exists(l.cfg.Name)}
	for _, p := range l.st.Procs {
		s.Procs = append(s.Procs, ProcStatus{Name: p.Name, PID: p.PID, Alive: p.Alive(), Log: p.Log})
	}
	known := map[string]api.Machine{}
	if s.NetNS {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		var page api.Page[api.Machine]
		if err := l.rest(l.st.Tokens.Admin).do(ctx, http.MethodGet, "/v1/machine", nil, &page); err == nil {
			s.APIReady = true
			for _, m := range page.Items {
				known[m.ID] = m
			}
		}
	}
	for i, m := range l.st.Machines {
		ms := MachineStatus{Machine: m, Power: "unknown", ConsoleTail: lastLine(m.Console)}
		if s.NetNS {
			if b, err := l.BMC(i); err == nil {
				bctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				if p, err := b.PowerState(bctx); err == nil {
					ms.Power = p
				} else {
					ms.Power = "error: " + err.Error()
				}
				cancel()
			}
		}
		if am, ok := known[m.UUID]; ok {
			ms.Registered, ms.Waiting = true, am.Waiting
			if am.LastEvent != nil {
				ms.LastEvent = am.LastEvent.Event
			}
		}
		s.Machines = append(s.Machines, ms)
	}
	return s
}

// lastLine returns the last non-empty line of a file (reading at most its last 4 KiB).
func lastLine(path string) string {
	f, err := openTail(path, 4096)
	if err != nil {
		return ""
	}
	defer f.Close()
	raw, _ := io.ReadAll(f)
	lines := strings.FieldsFunc(string(raw), func(r rune) bool { return r == '\n' || r == '\r' })
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(stripANSI(lines[i])); l != "" {
			return l
		}
	}
	return ""
}

// stripANSI drops escape sequences and control characters iPXE and the kernel put on the console.
func stripANSI(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == 0x1b {
			for i++; i < len(s) && !(s[i] >= '@' && s[i] <= '~' && s[i] != '['); i++ {
			}
			continue
		}
		if c < 0x20 && c != '\t' {
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// String renders the status for people.
func (s Status) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "netns: %v   metal-api: %v\n", s.NetNS, map[bool]string{true: "ready", false: "not answering"}[s.APIReady])
	for _, p := range s.Procs {
		fmt.Fprintf(&b, "  %-16s pid %-8d %-5s %s\n", p.Name, p.PID, map[bool]string{true: "up", false: "DOWN"}[p.Alive], p.Log)
	}
	for _, m := range s.Machines {
		reg := "not registered"
		if m.Registered {
			reg = "registered"
			if m.Waiting {
				reg += ", waiting"
			}
			if m.LastEvent != "" {
				reg += ", last event " + m.LastEvent
			}
		}
		fmt.Fprintf(&b, "vm%d %s mac %s bmc %s power %s, %s\n    console %s\n", m.Index, m.UUID, m.MAC, m.BMCAddr, m.Power, reg, m.Console)
		if m.ConsoleTail != "" {
			fmt.Fprintf(&b, "    > %s\n", m.ConsoleTail)
		}
	}
	return b.String()
}
