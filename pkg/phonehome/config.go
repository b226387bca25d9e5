// Package phonehome is the agent an installed OS runs at boot: it reads the phone-home file the
// hammer wrote (DefaultPath), tells metal-api's boot service "Phoned Home" for its machine with the
// machine token, retrying with backoff until it succeeds, marks the success in the kernel log, and
// then repeats the event at a fixed interval as liveliness.
//
// It imports the boot service client only: no Kubernetes, no store, so it builds into a small static
// binary (cmd/metal-phonehome) that any image can carry.
package phonehome

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// DefaultPath is where the hammer writes the phone-home file into the installed OS.
const DefaultPath = "/etc/metalforge/phonehome.json"

// File is the phone-home file: which metal-api to call, as which machine, with which token. The
// hammer writes it with mode 0600.
type File struct {
	// API is the host:port of metal-api's gRPC boot service.
	API       string `json:"api"`
	MachineID string `json:"machineID"`
	// Token is the machine token (role "machine"): it may only report Phoned Home and Planned
	// Reboot for MachineID.
	Token string `json:"token"`
}

// Validate reports a missing field.
func (f File) Validate() error {
	var missing []string
	if strings.TrimSpace(f.API) == "" {
		missing = append(missing, "api")
	}
	if strings.TrimSpace(f.MachineID) == "" {
		missing = append(missing, "machineID")
	}
	if strings.TrimSpace(f.Token) == "" {
		missing = append(missing, "token")
	}
	if len(missing) > 0 {
		return fmt.Errorf("phone-home file lacks %s", strings.Join(missing, ", "))
	}
	return nil
}

// ReadFile reads and validates a phone-home file. Unknown fields are ignored so that newer hammers
// can add some.
func ReadFile(path string) (File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return File{}, fmt.Errorf("read phone-home file: %w", err)
	}
	var f File
	if err := json.Unmarshal(b, &f); err != nil {
		return File{}, fmt.Errorf("parse phone-home file %s: %w", path, err)
	}
	if err := f.Validate(); err != nil {
		return File{}, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// WriteFile writes f to path with mode 0600, creating the directory (0700) if needed. The hammer
// uses it so that both sides agree on the format.
func WriteFile(path string, f File) error {
	if err := f.Validate(); err != nil {
		return err
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("encode phone-home file: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("write phone-home file: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write phone-home file: %w", err)
	}
	// WriteFile keeps the mode of an existing file; the token must not stay readable by others.
	if err := os.Chmod(path, 0o600); err != nil {
		return fmt.Errorf("write phone-home file: %w", err)
	}
	return nil
}
