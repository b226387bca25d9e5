package firewall

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/metalforge/metalforge/pkg/apis/firewall/v1"
)

// Event reasons.
const (
	ReasonIgnored = "WrongNamespace"
	ReasonError   = "ApplyFailed"
)

// status derives a policy's status from the plan and the apply error.
func status(pol *fwv1.ClusterwideNetworkPolicy, p *Plan, applyErr error) fwv1.PolicyStatus {
	st := fwv1.PolicyStatus{ObservedGeneration: pol.Generation}
	var o Outcome
	if p != nil {
		o = p.Policies[key(pol)]
	}
	switch {
	case o.State == fwv1.StateIgnored:
		st.State, st.Message = o.State, o.Message
	case applyErr != nil:
		st.State = fwv1.StateError
		st.Message = fmt.Sprintf("the firewall keeps its previous rules: %v", applyErr)
		if o.State == fwv1.StateError && o.Kept == nil {
			st.Message = o.Message
		}
	default:
		st.State, st.Message = o.State, o.Message
	}
	if len(st.Message) > 1024 {
		st.Message = st.Message[:1024]
	}
	return st
}

// writeStatus patches the status of every policy whose status changed and emits a Warning Event
// when a policy becomes Ignored or Error (again only after a change of state or generation, so a
// retried apply does not repeat it).
func (r *reconciler) writeStatus(ctx context.Context, pols []fwv1.ClusterwideNetworkPolicy, p *Plan, applyErr error) error {
	var errs []error
	for i := range pols {
		pol := &pols[i]
		st := status(pol, p, applyErr)
		if st == pol.Status {
			continue
		}
		orig := pol.DeepCopy()
		pol.Status = st
		if err := r.client.Status().Patch(ctx, pol, client.MergeFrom(orig)); err != nil {
			if client.IgnoreNotFound(err) != nil {
				errs = append(errs, fmt.Errorf("patch status of %s/%s: %w", pol.Namespace, pol.Name, err))
			}
			continue
		}
		if st.State == orig.Status.State && st.ObservedGeneration == orig.Status.ObservedGeneration {
			continue // only the message moved (e.g. another apply error): no new Event
		}
		switch st.State {
		case fwv1.StateIgnored:
			r.events.Eventf(pol, nil, corev1.EventTypeWarning, ReasonIgnored, "Reconcile", "%s", st.Message)
		case fwv1.StateError:
			r.events.Eventf(pol, nil, corev1.EventTypeWarning, ReasonError, "Reconcile", "%s", st.Message)
		}
	}
	return errors.Join(errs...)
}
