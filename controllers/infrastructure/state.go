package infrastructure

import (
	"encoding/json"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/metalforge/metalforge/pkg/apis/metal"
)

// StateKind is the kind of the document the actuator keeps in Infrastructure.status.state.
//
// It is defined here, not in pkg/apis/metal, because only this actuator reads it: it records the
// task graph's progress and what each step found or created, so an operator (and a migration to
// another seed, which copies status.state) sees it. It is never trusted blindly: every step
// re-derives its object from metal-api by the cluster tag or label before it allocates.
const StateKind = "InfrastructureState"

// Step names, in the order Reconcile runs them. Delete runs the release steps in reverse.
const (
	StepNetwork   = "network"
	StepEgressIPs = "egress-ips"
	StepFirewall  = "firewall"
)

// State is the document in Infrastructure.status.state.
type State struct {
	metav1.TypeMeta `json:",inline"`

	// ClusterID is the cluster tag value the objects below carry.
	ClusterID string `json:"clusterID"`
	// NetworkID and NodeCIDR describe the cluster's private network.
	NetworkID string `json:"networkID,omitempty"`
	NodeCIDR  string `json:"nodeCIDR,omitempty"`
	// EgressIPs are the firewall's SNAT addresses on the external networks.
	EgressIPs []EgressIP `json:"egressIPs,omitempty"`
	// FirewallID is the firewall machine's ID.
	FirewallID string `json:"firewallID,omitempty"`
	// Steps are the task graph's steps with their last outcome, in run order.
	Steps []StepStatus `json:"steps,omitempty"`
}

// EgressIP is one SNAT address of the firewall.
type EgressIP struct {
	NetworkID string `json:"networkID"`
	Address   string `json:"address"`
	// Owned is true for addresses this actuator allocated (and releases on delete), false for the
	// ones the user pinned with firewall.egressRules.
	Owned bool `json:"owned,omitempty"`
}

// StepStatus is the last outcome of one step.
type StepStatus struct {
	Name  string      `json:"name"`
	Done  bool        `json:"done"`
	Error string      `json:"error,omitempty"`
	Time  metav1.Time `json:"time"`
}

// decodeState reads status.state; an absent or foreign document gives an empty state.
func decodeState(raw []byte) *State {
	s := &State{}
	if len(raw) == 0 || json.Unmarshal(raw, s) != nil || s.Kind != StateKind {
		s = &State{}
	}
	s.APIVersion, s.Kind = metal.GroupName+"/v1alpha1", StateKind
	return s
}

func (s *State) encode() ([]byte, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("encode infrastructure state: %w", err)
	}
	return b, nil
}

// record sets a step's outcome, keeping the steps in first-run order.
func (s *State) record(name string, err error, now time.Time) {
	st := StepStatus{Name: name, Done: err == nil, Time: metav1.NewTime(now.UTC().Truncate(time.Second))}
	if err != nil {
		st.Error = err.Error()
	}
	for i := range s.Steps {
		if s.Steps[i].Name == name {
			s.Steps[i] = st
			return
		}
	}
	s.Steps = append(s.Steps, st)
}

// step returns a step's last outcome.
func (s *State) step(name string) (StepStatus, bool) {
	for _, st := range s.Steps {
		if st.Name == name {
			return st, true
		}
	}
	return StepStatus{}, false
}
