// Package size matches machine hardware against sizes and validates size definitions: a machine
// matches exactly one size, and sizes that could both match one machine are rejected.
package size

import (
	"errors"
	"fmt"
	"path"

	"github.com/metalforge/metalforge/pkg/api"
)

// ErrNoMatch means the hardware matches no size; ErrAmbiguous that it matches more than one.
var (
	ErrNoMatch   = errors.New("no size matches")
	ErrAmbiguous = errors.New("more than one size matches")
)

// Validate checks one size on its own.
func Validate(s *api.Size) error {
	if len(s.Constraints) == 0 {
		return errors.New("size needs at least one constraint")
	}
	seen := map[string]bool{}
	for _, c := range s.Constraints {
		switch c.Type {
		case api.ConstraintCores, api.ConstraintMemory, api.ConstraintStorage, api.ConstraintGPU:
		default:
			return fmt.Errorf("constraint type %q is not one of cores, memory, storage, gpu", c.Type)
		}
		if c.Min > c.Max {
			return fmt.Errorf("constraint %s: min %d is greater than max %d", c.Type, c.Min, c.Max)
		}
		if _, err := path.Match(c.Identifier, ""); err != nil {
			return fmt.Errorf("constraint %s: identifier %q is not a valid glob: %w", c.Type, c.Identifier, err)
		}
		k := c.Type + "\x00" + c.Identifier
		if seen[k] {
			return fmt.Errorf("constraint %s with identifier %q is given twice", c.Type, c.Identifier)
		}
		seen[k] = true
	}
	return nil
}

// Overlaps reports whether one machine could match both sizes: for every constraint type both
// constrain, with the same identifier, the ranges intersect, and a type only one of them constrains
// can be satisfied by some machine. Constraints on different identifiers are treated as
// independent, so they do not prevent an overlap.
func Overlaps(a, b *api.Size) bool {
	for _, ca := range a.Constraints {
		for _, cb := range b.Constraints {
			if ca.Type == cb.Type && ca.Identifier == cb.Identifier && (ca.Max < cb.Min || cb.Max < ca.Min) {
				return false
			}
		}
	}
	return true
}

// FirstOverlap returns the ID of the first size in others that overlaps s (ignoring s's own ID).
func FirstOverlap(s *api.Size, others []*api.Size) string {
	for _, o := range others {
		if o.ID != s.ID && Overlaps(s, o) {
			return o.ID
		}
	}
	return ""
}

// Matches reports whether the hardware satisfies every constraint of the size.
func Matches(s *api.Size, hw api.MachineHardware) bool {
	for _, c := range s.Constraints {
		v := measure(c, hw)
		if v < c.Min || v > c.Max {
			return false
		}
	}
	return true
}

func measure(c api.Constraint, hw api.MachineHardware) uint64 {
	glob := func(s string) bool {
		if c.Identifier == "" {
			return true
		}
		ok, _ := path.Match(c.Identifier, s)
		return ok
	}
	var v uint64
	switch c.Type {
	case api.ConstraintCores:
		for _, cpu := range hw.CPUs {
			if glob(cpu.Model) {
				v += uint64(cpu.Cores)
			}
		}
	case api.ConstraintMemory:
		v = hw.Memory
	case api.ConstraintStorage:
		for _, d := range hw.Disks {
			if glob(d.Name) {
				v += d.Size
			}
		}
	case api.ConstraintGPU:
		for _, g := range hw.GPUs {
			if glob(g.Model) {
				v++
			}
		}
	}
	return v
}

// Match returns the one size the hardware matches; ErrNoMatch or ErrAmbiguous otherwise.
func Match(sizes []*api.Size, hw api.MachineHardware) (*api.Size, error) {
	var found *api.Size
	for _, s := range sizes {
		if !Matches(s, hw) {
			continue
		}
		if found != nil {
			return nil, fmt.Errorf("%w: %s and %s", ErrAmbiguous, found.ID, s.ID)
		}
		found = s
	}
	if found == nil {
		return nil, ErrNoMatch
	}
	return found, nil
}
