package ccm_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/metalforge/metalforge/pkg/ccm"
	"github.com/metalforge/metalforge/pkg/client/clienttest"
	"github.com/metalforge/metalforge/pkg/client/metalapi/network"
)

// stormResult: the address of every Service and the time from its Create call to the first
// status with an ingress address.
type stormResult struct {
	ips       map[string]string
	latencies []time.Duration
}

// percentile p (0-100) of the latencies, nearest rank.
func (r stormResult) percentile(p int) time.Duration {
	l := slices.Clone(r.latencies)
	slices.Sort(l)
	if len(l) == 0 {
		return 0
	}
	i := (len(l)*p + 99) / 100
	return l[max(0, min(len(l)-1, i-1))]
}

// storm creates n LoadBalancer Services at once (16 clients in parallel) and waits until all have
// an ingress address, watching their status.
func storm(t testing.TB, ns string, n int) stormResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	w, err := env.Kube.CoreV1().Services(ns).Watch(ctx, metav1.ListOptions{})
	check(t, err)
	defer w.Stop()

	var mu sync.Mutex
	created := map[string]time.Time{}
	names := make(chan string)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for name := range names {
				mu.Lock()
				created[name] = time.Now()
				mu.Unlock()
				if _, err := env.Kube.CoreV1().Services(ns).Create(ctx, lbService(ns, name), metav1.CreateOptions{}); err != nil {
					t.Errorf("create service %s: %v", name, err)
				}
			}
		})
	}
	go func() {
		for i := range n {
			names <- fmt.Sprintf("svc-%03d", i)
		}
		close(names)
	}()

	r := stormResult{ips: map[string]string{}}
	for len(r.ips) < n {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatalf("watch ended with %d of %d services served", len(r.ips), n)
			}
			s, isSvc := ev.Object.(*corev1.Service)
			if !isSvc || ev.Type == watch.Deleted || len(s.Status.LoadBalancer.Ingress) == 0 {
				continue
			}
			if _, seen := r.ips[s.Name]; seen {
				continue
			}
			now := time.Now()
			r.ips[s.Name] = s.Status.LoadBalancer.Ingress[0].IP
			mu.Lock()
			r.latencies = append(r.latencies, now.Sub(created[s.Name]))
			mu.Unlock()
		case <-ctx.Done():
			t.Fatalf("%d of %d services got an address within 3 minutes", len(r.ips), n)
		}
	}
	wg.Wait()
	return r
}

// deleteAll deletes the storm's Services at once and waits until metal-ccm let them all go.
func (r stormResult) deleteAll(t testing.TB, ns string) {
	t.Helper()
	var wg sync.WaitGroup
	names := make(chan string)
	for range 16 {
		wg.Go(func() {
			for name := range names {
				if err := env.Kube.CoreV1().Services(ns).Delete(t.Context(), name, metav1.DeleteOptions{}); err != nil {
					t.Errorf("delete service %s: %v", name, err)
				}
			}
		})
	}
	for name := range r.ips {
		names <- name
	}
	close(names)
	wg.Wait()
	clienttest.WaitFor(t, 3*time.Minute, "every service deleted", func() (bool, error) {
		l, err := env.Kube.CoreV1().Services(ns).List(t.Context(), metav1.ListOptions{})
		return err == nil && len(l.Items) == 0, err
	})
}

func usedIPs(t testing.TB, f *fixture, id string) uint64 {
	t.Helper()
	u, err := f.admin.Network.GetNetworkUsageContext(t.Context(), network.NewGetNetworkUsageParams().WithID(id), nil)
	check(t, err)
	return u.Payload.Used
}

// BenchmarkServiceIngress prints the time from Service create to ingress address: one Service at a
// time (the baseline, median of 5), then 200 created at once (p50/p99), with metal-ccm's 4 service
// workers against an in-process metal-api on SQLite and envtest's client limits (1000 QPS).
func BenchmarkServiceIngress(b *testing.B) {
	f := newFixture(b, ccm.BackendMetalLB)
	readyNode(b, f, 1, "node-a")
	b.ResetTimer()
	for range b.N {
		ns := newNamespace(b)
		var single stormResult
		for range 5 {
			r := storm(b, ns, 1)
			single.latencies = append(single.latencies, r.latencies...)
			r.deleteAll(b, ns)
		}
		writes := f.cloud.ConfigWrites()
		r := storm(b, ns, 200)
		p50, p99 := r.percentile(50), r.percentile(99)
		base := single.percentile(50)
		b.ReportMetric(float64(base.Microseconds())/1000, "ms-single")
		b.ReportMetric(float64(p50.Microseconds())/1000, "ms-p50")
		b.ReportMetric(float64(p99.Microseconds())/1000, "ms-p99")
		fmt.Printf("service create → ingress: single %v; 200 at once p50 %v (%.1f× single), p99 %v (%.1f×), max %v; %d config writes for 200 services\n",
			base.Round(time.Millisecond), p50.Round(time.Millisecond), float64(p50)/float64(base),
			p99.Round(time.Millisecond), float64(p99)/float64(base), r.percentile(100).Round(time.Millisecond),
			f.cloud.ConfigWrites()-writes)
		r.deleteAll(b, ns)
	}
}
