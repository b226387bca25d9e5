package storetest

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/metalforge/metalforge/pkg/api"
	"github.com/metalforge/metalforge/pkg/store"
)

// listIDs lists the IDs matching q in one read transaction.
func listIDs[T any, P entity[T]](t *testing.T, s store.Store, table func(store.Tx) store.Table[T], q store.Query) ([]string, string) {
	t.Helper()
	var ids []string
	var next string
	read(t, s, func(ctx context.Context, tx store.Tx) error {
		es, n, err := table(tx).List(ctx, q)
		if err != nil {
			return err
		}
		for _, e := range es {
			ids = append(ids, P(e).GetMeta().ID)
		}
		next = n
		return nil
	})
	return ids, next
}

// count counts the entities matching q.
func count[T any](t *testing.T, s store.Store, table func(store.Tx) store.Table[T], q store.Query) int {
	t.Helper()
	var n int
	read(t, s, func(ctx context.Context, tx store.Tx) error {
		var err error
		n, err = table(tx).Count(ctx, q)
		return err
	})
	return n
}

// walk pages through q with its Limit and returns the pages.
func walk[T any, P entity[T]](t *testing.T, s store.Store, table func(store.Tx) store.Table[T], q store.Query) [][]string {
	t.Helper()
	var pages [][]string
	for range 100 {
		ids, next := listIDs[T, P](t, s, table, q)
		pages = append(pages, ids)
		if next == "" {
			return pages
		}
		if len(ids) == 0 || next != ids[len(ids)-1] {
			t.Fatalf("page %d: next %q, want the last ID of %v", len(pages), next, ids)
		}
		q.After = next
	}
	t.Fatalf("more than 100 pages: %v", pages)
	return nil
}

// listMachine is machine i of the list tests: every index column varies with i.
func listMachine(i int) *api.Machine {
	m := &api.Machine{Meta: api.Meta{ID: fmt.Sprintf("m-%02d", i)},
		PartitionID: []string{"fra", "ber"}[i%2],
		SizeID:      []string{"s1", "s2", "s3"}[i%3],
		RackID:      []string{"r1", "r2", "r3", "r4"}[i%4],
	}
	switch i % 5 {
	case 0, 3:
		m.Allocation = &api.MachineAllocation{ProjectID: []string{"p1", "p2"}[i%2]}
	case 1:
		m.Waiting = true
	}
	return m
}

// matches says whether an entity's index columns match q, as the store should decide.
func matches(e any, q store.Query) bool {
	idx, _ := store.IndexOf(e)
	for _, f := range []struct{ want, got string }{
		{q.Project, idx.Project}, {q.Partition, idx.Partition},
		{q.Key1, idx.Key1}, {q.Key2, idx.Key2}, {q.Key3, idx.Key3},
	} {
		if f.want != "" && f.want != f.got {
			return false
		}
	}
	return true
}

func testListCount(t *testing.T, s store.Store) {
	const n = 25
	all := map[string]*api.Machine{}
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		for i := range n {
			m := listMachine(i)
			if err := tx.Machines().Create(ctx, m); err != nil {
				return err
			}
			all[m.ID] = m
		}
		return nil
	})
	queries := []struct {
		name string
		q    store.Query
	}{
		{"project", store.Query{Project: "p1"}},
		{"partition", store.Query{Partition: "ber"}},
		{"key1 size", store.Query{Key1: "s2"}},
		{"key2 allocated", store.Query{Key2: store.MachineStatusAllocated}},
		{"key2 waiting", store.Query{Key2: store.MachineStatusWaiting}},
		{"key2 free", store.Query{Key2: store.MachineStatusFree}},
		{"key3 rack", store.Query{Key3: "r3"}},
		{"partition size status", store.Query{Partition: "fra", Key1: "s1", Key2: store.MachineStatusFree}},
		{"project partition", store.Query{Project: "p2", Partition: "ber"}},
		{"size rack", store.Query{Key1: "s3", Key3: "r2"}},
	}
	check := func(t *testing.T) {
		want := slices.Sorted(func(yield func(string) bool) {
			for id := range all {
				if !yield(id) {
					return
				}
			}
		})
		got, next := listIDs[api.Machine](t, s, machines, store.Query{})
		if diff := cmp.Diff(want, got); diff != "" || next != "" {
			t.Errorf("list all: next %q (-want +got):\n%s", next, diff)
		}
		if c := count(t, s, machines, store.Query{}); c != len(all) {
			t.Errorf("count all = %d, want %d", c, len(all))
		}
		for _, tc := range queries {
			var want []string
			for id, m := range all {
				if matches(m, tc.q) {
					want = append(want, id)
				}
			}
			slices.Sort(want)
			// Every query must select a proper subset, or it tests nothing.
			if len(want) == 0 || len(want) == len(all) {
				t.Fatalf("%s: fixture selects %d of %d machines", tc.name, len(want), len(all))
			}
			got, next := listIDs[api.Machine](t, s, machines, tc.q)
			if diff := cmp.Diff(want, got); diff != "" || next != "" {
				t.Errorf("list %s %+v: next %q (-want +got):\n%s", tc.name, tc.q, next, diff)
			}
			if c := count(t, s, machines, tc.q); c != len(want) {
				t.Errorf("count %s %+v = %d, want %d", tc.name, tc.q, c, len(want))
			}
		}
		none := store.Query{Partition: "nowhere"}
		if got, _ := listIDs[api.Machine](t, s, machines, none); len(got) != 0 {
			t.Errorf("list %+v = %v, want none", none, got)
		}
		if c := count(t, s, machines, none); c != 0 {
			t.Errorf("count %+v = %d, want 0", none, c)
		}
	}
	t.Run("created", check)

	// Updates move entities between index values; deletes drop them.
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		for _, id := range []string{"m-00", "m-01", "m-02"} {
			m, err := tx.Machines().Get(ctx, id)
			if err != nil {
				return err
			}
			m.Allocation, m.Waiting = nil, false
			m.PartitionID, m.SizeID, m.RackID = "ber", "s3", "r2"
			if id == "m-02" {
				m.Allocation = &api.MachineAllocation{ProjectID: "p2"}
			}
			if err := tx.Machines().Update(ctx, m); err != nil {
				return err
			}
			all[id] = m
		}
		delete(all, "m-24")
		return tx.Machines().Delete(ctx, "m-24")
	})
	t.Run("updated", check)
}

func testPagination(t *testing.T, s store.Store) {
	const n = 25
	var want []string
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		// Create out of order: the store orders by ID, not by insertion.
		for i := range n {
			id := fmt.Sprintf("p-%02d", i*7%n)
			want = append(want, id)
			p := &api.Partition{Meta: api.Meta{ID: id}, Labels: map[string]string{"i": id}}
			if err := tx.Partitions().Create(ctx, p); err != nil {
				return err
			}
			if err := tx.Machines().Create(ctx, listMachine(i)); err != nil {
				return err
			}
		}
		return nil
	})
	slices.Sort(want)

	tests := []struct {
		name  string
		pages []int
		walk  func(t *testing.T) [][]string
		want  func() []string
	}{
		{"limit 10", []int{10, 10, 5}, func(t *testing.T) [][]string {
			return walk[api.Partition](t, s, partitions, store.Query{Limit: 10})
		}, func() []string { return want }},
		{"limit 25 ends on the first page", []int{25}, func(t *testing.T) [][]string {
			return walk[api.Partition](t, s, partitions, store.Query{Limit: n})
		}, func() []string { return want }},
		{"limit 5 divides evenly", []int{5, 5, 5, 5, 5}, func(t *testing.T) [][]string {
			return walk[api.Partition](t, s, partitions, store.Query{Limit: 5})
		}, func() []string { return want }},
		{"filtered", []int{5, 5, 2}, func(t *testing.T) [][]string {
			return walk[api.Machine](t, s, machines, store.Query{Partition: "ber", Limit: 5})
		}, func() []string {
			var ids []string
			for i := range n {
				if m := listMachine(i); m.PartitionID == "ber" {
					ids = append(ids, m.ID)
				}
			}
			return ids
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pages := tc.walk(t)
			var sizes []int
			var got []string
			for _, p := range pages {
				sizes = append(sizes, len(p))
				got = append(got, p...)
			}
			if diff := cmp.Diff(tc.pages, sizes); diff != "" {
				t.Errorf("page sizes (-want +got):\n%s", diff)
			}
			// Concatenated pages are every ID once, in order: no duplicates, none missed.
			if diff := cmp.Diff(tc.want(), got); diff != "" {
				t.Errorf("ids over all pages (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("after without limit", func(t *testing.T) {
		got, next := listIDs[api.Partition](t, s, partitions, store.Query{After: want[19]})
		if diff := cmp.Diff(want[20:], got); diff != "" || next != "" {
			t.Errorf("after %s: next %q (-want +got):\n%s", want[19], next, diff)
		}
	})
}

// testOrder checks that IDs order bytewise (as Go compares strings) on every backend, so that a
// cursor means the same everywhere.
func testOrder(t *testing.T, s store.Store) {
	ids := []string{"b", "B", "a", "A", "_x", "a-b", "ab", "a.b", "10", "9", "Z", "z-1"}
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		for _, id := range ids {
			if err := tx.Projects().Create(ctx, &api.Project{Meta: api.Meta{ID: id}}); err != nil {
				return err
			}
		}
		return nil
	})
	want := slices.Sorted(slices.Values(ids))
	got, _ := listIDs[api.Project](t, s, projects, store.Query{})
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("list order (-want +got):\n%s", diff)
	}
	pages := walk[api.Project](t, s, projects, store.Query{Limit: 5})
	if diff := cmp.Diff(want, slices.Concat(pages...)); diff != "" {
		t.Errorf("paged order (-want +got):\n%s", diff)
	}
}
