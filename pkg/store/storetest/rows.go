package storetest

import (
	"context"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/metalforge/metalforge/pkg/store"
)

// testRowsCountBy checks the undecoded listing and the grouped counts against IndexOf.
func testRowsCountBy(t *testing.T, s store.Store) {
	const n = 25
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		for i := range n {
			if err := tx.Machines().Create(ctx, listMachine(i)); err != nil {
				return err
			}
		}
		return nil
	})
	ctx := testContext(t)
	queries := []store.Query{
		{}, {Partition: "fra"}, {Partition: "fra", Key1: "s1"}, {Key2: store.MachineStatusWaiting},
		{Partition: "ber", Key1: "s2", Key2: store.MachineStatusFree, Key3: "r2"}, {Project: "p1"},
		{Partition: "fra", Limit: 3}, {After: "m-10", Limit: 5},
	}
	for _, q := range queries {
		var want []store.Row
		wantBy := map[string]int{}
		for i := range n {
			m := listMachine(i)
			if !matches(m, q) || (q.After != "" && m.ID <= q.After) {
				continue
			}
			idx, _ := store.IndexOf(m)
			want = append(want, store.Row{ID: m.ID, Index: idx})
		}
		sort.Slice(want, func(i, j int) bool { return want[i].ID < want[j].ID })
		if q.Limit > 0 && len(want) > q.Limit {
			want = want[:q.Limit]
		}
		for i := range n {
			m := listMachine(i)
			if matches(m, q) && (q.After == "" || m.ID > q.After) {
				wantBy[m.RackID]++
			}
		}
		var got []store.Row
		var gotBy map[string]int
		err := s.Read(ctx, func(tx store.Tx) error {
			var err error
			if got, err = tx.Machines().Rows(ctx, q); err != nil {
				return err
			}
			cq := q
			cq.Limit = 0
			gotBy, err = tx.Machines().CountBy(ctx, cq, "key3")
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("Rows(%+v) (-want +got):\n%s", q, d)
		}
		if d := cmp.Diff(wantBy, gotBy); d != "" {
			t.Errorf("CountBy(%+v, key3) (-want +got):\n%s", q, d)
		}
	}
	err := s.Read(ctx, func(tx store.Tx) error {
		_, err := tx.Machines().CountBy(ctx, store.Query{}, "data")
		return err
	})
	if err == nil {
		t.Fatal("CountBy on a column that is not indexed: want an error")
	}
}
