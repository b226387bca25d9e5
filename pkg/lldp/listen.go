package lldp

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Listen collects the LLDP neighbours seen on the interface ifname for the duration d (or until
// ctx ends), deduplicated by chassis and port. It opens an AF_PACKET socket bound to the interface
// and joins the LLDP multicast group, so the interface must be up. Frames that do not parse are
// skipped.
func Listen(ctx context.Context, ifname string, d time.Duration) ([]Neighbor, error) {
	c, err := Open("", ifname)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	deadline := time.Now().Add(d)
	seen := map[[2]string]bool{}
	var out []Neighbor
	for ctx.Err() == nil {
		// Short slices bound every wait, so ctx is checked often.
		next := time.Now().Add(200 * time.Millisecond)
		if next.After(deadline) {
			next = deadline
		}
		nb, err := c.Receive(next)
		switch {
		case errors.Is(err, ErrTimeout):
			if !time.Now().Before(deadline) {
				return out, nil
			}
			continue
		case err != nil:
			return out, fmt.Errorf("listen lldp on %s: %w", ifname, err)
		}
		key := [2]string{nb.ChassisID, nb.PortID}
		if !seen[key] {
			seen[key] = true
			out = append(out, nb)
		}
	}
	return out, nil
}

// Send writes one LLDP frame with the given neighbour data from the interface ifname in the
// caller's namespace. It exists for tests and lab tooling that play a switch.
func Send(ifname string, n Neighbor) error {
	c, err := Open("", ifname)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Send(n)
}
