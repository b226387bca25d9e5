package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/metalforge/metalforge/pkg/api"
)

// client is one REST client bound to a replica.
type client struct {
	base string
	http *http.Client
}

func newClients(addrs []string, n int) []client {
	tr := &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: n}
	var cs []client
	for i := range n {
		cs = append(cs, client{base: "http://" + addrs[i%len(addrs)], http: &http.Client{Transport: tr, Timeout: time.Minute}})
	}
	return cs
}

func (c client) do(ctx context.Context, method, path string, body any, want int) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, r)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: status %d: %s", method, path, resp.StatusCode, raw)
	}
	return nil
}

// op is one measured request.
type op func(ctx context.Context, c client, i int) error

func getMachine(n int) op {
	return func(ctx context.Context, c client, _ int) error {
		return c.do(ctx, http.MethodGet, "/v1/machine/"+machineID(rand.IntN(n)), nil, http.StatusOK)
	}
}

func findMachines(ctx context.Context, c client, i int) error {
	no := false
	return c.do(ctx, http.MethodPost, "/v1/machine/find", api.MachineFindRequest{
		PartitionID: partition, SizeID: sizeID, RackID: fmt.Sprintf("rack-%02d", i%16), Allocated: &no, Limit: 50,
	}, http.StatusOK)
}

func allocate(ctx context.Context, c client, i int) error {
	return c.do(ctx, http.MethodPost, "/v1/machine/allocate", api.MachineAllocateRequest{
		ProjectID: project, PartitionID: partition, SizeID: sizeID, ImageID: imageID,
		Hostname: fmt.Sprintf("node-%d", i), Networks: []api.AllocationNetwork{{NetworkID: netID}},
	}, http.StatusCreated)
}

// measure runs n operations spread over the clients and returns each one's latency.
func measure(ctx context.Context, clients []client, n int, fn op) ([]time.Duration, error) {
	lat := make([]time.Duration, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				t := time.Now()
				if err := fn(ctx, c, i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
				lat[i] = time.Since(t)
			}
		}()
	}
	wg.Wait()
	return lat, first
}
