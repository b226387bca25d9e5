package storetest

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/metalforge/metalforge/pkg/store"
)

// acquire takes one value in its own write transaction and returns what Acquire returned.
func acquire(t *testing.T, s store.Store, pool string, lo, hi, want uint64, owner string) (uint64, error) {
	t.Helper()
	var v uint64
	err := try(t, s, func(ctx context.Context, tx store.Tx) error {
		var err error
		v, err = tx.Acquire(ctx, pool, lo, hi, want, owner)
		return err
	})
	return v, err
}

// held lists the values of owner.
func held(t *testing.T, s store.Store, pool, owner string) []uint64 {
	t.Helper()
	var vs []uint64
	read(t, s, func(ctx context.Context, tx store.Tx) error {
		var err error
		vs, err = tx.Held(ctx, pool, owner)
		return err
	})
	return vs
}

// release frees the values of owner and returns how many.
func release(t *testing.T, s store.Store, pool, owner string) int {
	t.Helper()
	var n int
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		var err error
		n, err = tx.Release(ctx, pool, owner)
		return err
	})
	return n
}

func testPools(t *testing.T, s store.Store) {
	const pool, lo, hi = "vrf", 100, 105
	// steps run in order against one pool; owner "" in a check means Held is not checked.
	steps := []struct {
		name    string
		want    uint64 // 0: lowest free
		owner   string
		got     uint64
		err     error
		invalid bool // any error, not a sentinel
	}{
		{name: "lowest", owner: "a", got: 100},
		{name: "next", owner: "b", got: 101},
		{name: "specific", want: 104, owner: "c", got: 104},
		{name: "lowest skips held", owner: "a", got: 102},
		{name: "taken want", want: 101, owner: "d", err: store.ErrDuplicate},
		{name: "want below range", want: lo - 1, owner: "d", invalid: true},
		{name: "want above range", want: hi + 1, owner: "d", invalid: true},
		{name: "gap below a held value", owner: "d", got: 103},
		{name: "last", owner: "d", got: 105},
		{name: "full", owner: "e", err: store.ErrExhausted},
		{name: "full want", want: 103, owner: "e", err: store.ErrDuplicate},
	}
	for _, st := range steps {
		got, err := acquire(t, s, pool, lo, hi, st.want, st.owner)
		switch {
		case st.invalid:
			if err == nil {
				t.Errorf("%s: acquire %d = %d, want an error", st.name, st.want, got)
			}
		case st.err != nil:
			wantErr(t, st.name, err, st.err)
		case err != nil:
			t.Errorf("%s: %v", st.name, err)
		case got != st.got:
			t.Errorf("%s: acquired %d, want %d", st.name, got, st.got)
		}
	}

	ctx := testContext(t)
	err := s.Write(ctx, func(tx store.Tx) error {
		_, err := tx.Acquire(ctx, pool, 10, 5, 0, "x")
		return err
	})
	if err == nil {
		t.Errorf("acquire with min > max: no error")
	}

	for owner, want := range map[string][]uint64{"a": {100, 102}, "b": {101}, "c": {104}, "d": {103, 105}, "e": nil} {
		if diff := cmp.Diff(want, held(t, s, pool, owner)); diff != "" {
			t.Errorf("held by %s (-want +got):\n%s", owner, diff)
		}
	}

	// Pools are independent: the same value is free in another pool.
	if v, err := acquire(t, s, "asn", lo, hi, 0, "a"); err != nil || v != lo {
		t.Errorf("acquire in another pool = %d, %v; want %d", v, err, lo)
	}

	// Release frees all of an owner's values; the lowest gap is filled first.
	if n := release(t, s, pool, "a"); n != 2 {
		t.Errorf("release a freed %d, want 2", n)
	}
	if n := release(t, s, pool, "a"); n != 0 {
		t.Errorf("second release of a freed %d, want 0", n)
	}
	if vs := held(t, s, pool, "a"); len(vs) != 0 {
		t.Errorf("held by a after release = %v, want none", vs)
	}
	for _, want := range []uint64{100, 102} {
		if v, err := acquire(t, s, pool, lo, hi, 0, "f"); err != nil || v != want {
			t.Errorf("acquire after release = %d, %v; want %d", v, err, want)
		}
	}
	_, err = acquire(t, s, pool, lo, hi, 0, "f")
	wantErr(t, "acquire in the refilled pool", err, store.ErrExhausted)
	if diff := cmp.Diff([]uint64{100, 102}, held(t, s, pool, "f")); diff != "" {
		t.Errorf("held by f (-want +got):\n%s", diff)
	}
	// The other pool was not touched by releases in this one.
	if diff := cmp.Diff([]uint64{lo}, held(t, s, "asn", "a")); diff != "" {
		t.Errorf("held by a in asn (-want +got):\n%s", diff)
	}

	// A gap in the middle is found when the low end is taken.
	release(t, s, pool, "d") // frees 103 and 105
	if v, err := acquire(t, s, pool, lo, hi, 0, "g"); err != nil || v != 103 {
		t.Errorf("acquire middle gap = %d, %v; want 103", v, err)
	}
}
