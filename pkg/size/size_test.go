package size

import (
	"errors"
	"testing"

	"github.com/metalforge/metalforge/pkg/api"
)

const gib = 1 << 30

func sz(id string, cores [2]uint64, mem [2]uint64) *api.Size {
	return &api.Size{Meta: api.Meta{ID: id}, Constraints: []api.Constraint{
		{Type: api.ConstraintCores, Min: cores[0], Max: cores[1]},
		{Type: api.ConstraintMemory, Min: mem[0], Max: mem[1]},
	}}
}

func hw(cores int, mem uint64) api.MachineHardware {
	return api.MachineHardware{CPUs: []api.MachineCPU{{Model: "Intel Xeon", Cores: cores}}, Memory: mem}
}

func TestMatch(t *testing.T) {
	small := sz("small", [2]uint64{1, 4}, [2]uint64{1 * gib, 8 * gib})
	large := sz("large", [2]uint64{8, 64}, [2]uint64{16 * gib, 512 * gib})
	sizes := []*api.Size{small, large}
	tests := []struct {
		name string
		hw   api.MachineHardware
		want string
		err  error
	}{
		{"small", hw(2, 4*gib), "small", nil},
		{"large", hw(32, 256*gib), "large", nil},
		{"between", hw(6, 12*gib), "", ErrNoMatch},
		{"cores fit memory not", hw(2, 64*gib), "", ErrNoMatch},
		{"edge min", hw(1, 1*gib), "small", nil},
		{"edge max", hw(4, 8*gib), "small", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Match(sizes, tt.hw)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if err == nil && got.ID != tt.want {
				t.Fatalf("got %s, want %s", got.ID, tt.want)
			}
		})
	}
	if _, err := Match([]*api.Size{small, sz("dup", [2]uint64{2, 2}, [2]uint64{0, 100 * gib})}, hw(2, 4*gib)); !errors.Is(err, ErrAmbiguous) {
		t.Fatalf("overlapping sizes: err = %v, want ErrAmbiguous", err)
	}
}

func TestIdentifierGlob(t *testing.T) {
	s := &api.Size{Meta: api.Meta{ID: "gpu"}, Constraints: []api.Constraint{
		{Type: api.ConstraintGPU, Min: 2, Max: 2, Identifier: "*H100*"},
		{Type: api.ConstraintStorage, Min: 100 * gib, Max: 2000 * gib, Identifier: "nvme*"},
	}}
	h := api.MachineHardware{
		GPUs:  []api.MachineGPU{{Model: "NVIDIA H100 80GB"}, {Model: "NVIDIA H100 80GB"}, {Model: "NVIDIA T4"}},
		Disks: []api.MachineBlockDevice{{Name: "nvme0n1", Size: 500 * gib}, {Name: "sda", Size: 4000 * gib}},
	}
	if !Matches(s, h) {
		t.Fatal("want match: 2 H100 and 500 GiB nvme")
	}
	h.GPUs = h.GPUs[1:]
	if Matches(s, h) {
		t.Fatal("want no match with one H100")
	}
}

func TestOverlaps(t *testing.T) {
	a := sz("a", [2]uint64{1, 4}, [2]uint64{0, 8 * gib})
	tests := []struct {
		name string
		b    *api.Size
		want bool
	}{
		{"disjoint cores", sz("b", [2]uint64{5, 8}, [2]uint64{0, 8 * gib}), false},
		{"disjoint memory", sz("b", [2]uint64{1, 4}, [2]uint64{9 * gib, 16 * gib}), false},
		{"touching", sz("b", [2]uint64{4, 8}, [2]uint64{8 * gib, 16 * gib}), true},
		{"contained", sz("b", [2]uint64{2, 3}, [2]uint64{1, 2}), true},
		{"fewer constraints", &api.Size{Meta: api.Meta{ID: "b"}, Constraints: []api.Constraint{{Type: api.ConstraintCores, Min: 2, Max: 2}}}, true},
	}
	for _, tt := range tests {
		if got := Overlaps(a, tt.b); got != tt.want {
			t.Errorf("%s: Overlaps = %v, want %v", tt.name, got, tt.want)
		}
		if got := Overlaps(tt.b, a); got != tt.want {
			t.Errorf("%s (reversed): Overlaps = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestValidate(t *testing.T) {
	bad := []*api.Size{
		{},
		{Constraints: []api.Constraint{{Type: "disk", Min: 1, Max: 2}}},
		{Constraints: []api.Constraint{{Type: api.ConstraintCores, Min: 3, Max: 2}}},
		{Constraints: []api.Constraint{{Type: api.ConstraintGPU, Min: 1, Max: 2, Identifier: "[x"}}},
		{Constraints: []api.Constraint{{Type: api.ConstraintCores, Min: 1, Max: 2}, {Type: api.ConstraintCores, Min: 1, Max: 2}}},
	}
	for i, s := range bad {
		if err := Validate(s); err == nil {
			t.Errorf("case %d: want error", i)
		}
	}
	if err := Validate(sz("ok", [2]uint64{1, 2}, [2]uint64{1, 2})); err != nil {
		t.Fatal(err)
	}
}

// FuzzMatch checks that Match agrees with Matches and never returns a size the hardware doesn't fit,
// and that sizes accepted as non-overlapping are never both matched.
func FuzzMatch(f *testing.F) {
	f.Add(uint8(2), uint64(4*gib), uint8(1), uint8(4), uint8(5), uint8(8))
	f.Add(uint8(4), uint64(0), uint8(4), uint8(4), uint8(4), uint8(4))
	f.Fuzz(func(t *testing.T, cores uint8, mem uint64, aMin, aMax, bMin, bMax uint8) {
		a := &api.Size{Meta: api.Meta{ID: "a"}, Constraints: []api.Constraint{{Type: api.ConstraintCores, Min: uint64(aMin), Max: uint64(aMax)}}}
		b := &api.Size{Meta: api.Meta{ID: "b"}, Constraints: []api.Constraint{{Type: api.ConstraintCores, Min: uint64(bMin), Max: uint64(bMax)}}}
		h := hw(int(cores), mem)
		got, err := Match([]*api.Size{a, b}, h)
		if err == nil && !Matches(got, h) {
			t.Fatalf("Match returned %s which does not match", got.ID)
		}
		if !Overlaps(a, b) && errors.Is(err, ErrAmbiguous) {
			t.Fatalf("non-overlapping sizes both matched %d cores", cores)
		}
		if Matches(a, h) && Matches(b, h) && !Overlaps(a, b) {
			t.Fatal("Overlaps said no but one machine matches both")
		}
	})
}
