package api

// Constraint types of a size.
const (
	ConstraintCores   = "cores"
	ConstraintMemory  = "memory"
	ConstraintStorage = "storage"
	ConstraintGPU     = "gpu"
)

// Size is a hardware class. A machine matches exactly one size or none ("unknown").
type Size struct {
	Meta
	Constraints []Constraint      `json:"constraints"`
	Labels      map[string]string `json:"labels,omitempty"`
}

// Constraint bounds one hardware dimension, inclusive. Memory and storage are bytes, cores and gpus a
// count. Identifier is a glob on the CPU model, disk name or GPU model, empty for any.
type Constraint struct {
	Type       string `json:"type"`
	Min        uint64 `json:"min"`
	Max        uint64 `json:"max"`
	Identifier string `json:"identifier,omitempty"`
}

// SizeUnknown is the size of a machine that matches no size.
const SizeUnknown = "unknown"

// SizeReservation keeps Amount machines of a size in the given partitions for one project.
type SizeReservation struct {
	Meta
	SizeID       string   `json:"sizeID"`
	Amount       int      `json:"amount"`
	ProjectID    string   `json:"projectID"`
	PartitionIDs []string `json:"partitionIDs"`
}
