package infrastructure

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestHostname(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"prod-firewall", "prod-firewall"},
		{"Prod_Cluster.1-firewall", "prod-cluster-1-firewall"},
		{"--x--", "x"},
		{"a123456789b123456789c123456789d123456789e123456789f123456789g12-firewall", "a123456789b123456789c123456789d123456789e123456789f123456789g12"},
	} {
		if got := hostname(tc.in); got != tc.want {
			t.Errorf("hostname(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestStateRoundTrip: steps keep their first-run order and their last outcome; a foreign or
// broken document in status.state is replaced, not misread.
func TestStateRoundTrip(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC)
	s := decodeState(nil)
	s.ClusterID, s.NetworkID = "c1", "n1"
	s.record(StepNetwork, nil, now)
	s.record(StepFirewall, errors.New("no machine"), now)
	s.record(StepNetwork, errors.New("gone"), now)
	raw, err := s.encode()
	if err != nil {
		t.Fatal(err)
	}
	ts := metav1.NewTime(now.Truncate(time.Second))
	want := &State{TypeMeta: metav1.TypeMeta{APIVersion: "metal.provider.extensions.gardener.cloud/v1alpha1", Kind: StateKind},
		ClusterID: "c1", NetworkID: "n1", Steps: []StepStatus{
			{Name: StepNetwork, Error: "gone", Time: ts}, {Name: StepFirewall, Error: "no machine", Time: ts}}}
	if d := cmp.Diff(want, decodeState(raw)); d != "" {
		t.Errorf("decoded state (-want +got):\n%s", d)
	}
	for _, in := range []string{`{"kind":"Other","networkID":"x"}`, `not json`} {
		if got := decodeState([]byte(in)); got.NetworkID != "" || got.Kind != StateKind {
			t.Errorf("decodeState(%s) = %+v, want an empty state", in, got)
		}
	}
}
