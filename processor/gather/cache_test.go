package gather_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/scattergather/scattergather/processor/gather"
	"github.com/scattergather/scattergather/schemas"
	"github.com/scattergather/scattergather/store"
)

// The store's cache of open requests does not change what the fold
// produces: the same records, in transactions that commit or abort at
// random (an aborted one is folded again), with restarts that resume the
// stored state, give the same outputs with no cache, a cache too small
// for a few requests, and the default one.
func TestFoldIsTheSameWithARequestCache(t *testing.T) {
	flow := flowWith(t, "    strategy: {type: all}\n    consolidate: {type: min, field: price}\n    gather: {closed_retention: 2s}\n")
	f, err := gather.NewFlow(flow, nil)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 11))
	ids := make([]string, 40)
	for i := range ids {
		ids[i] = fmt.Sprintf("r%02d", i)
	}
	enc := func(v any) []byte {
		b, err := schemas.Encode(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var recs []gather.Record
	now := int64(1_000_000)
	for off := range int64(3000) {
		now += rng.Int64N(40)
		id := ids[rng.IntN(len(ids))]
		var v []byte
		if rng.IntN(4) == 0 {
			v = enc(&schemas.Manifest{RequestID: id, Flow: "f", Strategy: "all", MaxFailures: -1, TimeoutMs: 1000,
				Tasks: []schemas.TaskRef{{TaskID: id + "/a", Target: "a", Item: -1}, {TaskID: id + "/b", Target: "b", Item: -1}, {TaskID: id + "/c", Target: "c", Item: -1}}})
		} else {
			tg := []string{"a", "b", "c"}[rng.IntN(3)]
			v = enc(&schemas.Result{RequestID: id, Flow: "f", TaskID: id + "/" + tg, Target: tg, Item: -1,
				Status: schemas.StatusOK, Payload: fmt.Appendf(nil, `{"price": %d}`, rng.IntN(100)), Attempts: 1})
		}
		recs = append(recs, gather.Record{Offset: off, TimeMs: now, Value: v})
	}
	// The plan: after which records a transaction ends, and how.
	type end struct {
		at              int
		commit, restart bool
	}
	var plan []end
	for i := 0; i < len(recs); {
		i += 1 + rng.IntN(30)
		plan = append(plan, end{at: min(i, len(recs)), commit: rng.IntN(4) != 0, restart: rng.IntN(8) == 0})
	}

	run := func(cache int64) []string {
		db, err := store.Open("", store.WithFS(vfs.NewMem()), store.WithRequestCache(cache))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		part := f.NewPartition(0, db.Partition(0), store.Position{})
		var out, txn []string
		emit := func(o gather.Output) {
			txn = append(txn, fmt.Sprintf("%d %s %x %s", o.Kind, o.Key, o.Value, o.Reason))
		}
		from := 0
		for _, e := range plan {
			txn = txn[:0]
			for _, r := range recs[from:e.at] {
				if err := part.Apply(r, emit); err != nil {
					t.Fatal(err)
				}
			}
			if !e.commit {
				part.Abort()
				continue // read again
			}
			if err := part.Commit(); err != nil {
				t.Fatal(err)
			}
			out = append(out, txn...)
			from = e.at
			if e.restart {
				st := db.Partition(0)
				pos, _, err := st.Position()
				if err != nil {
					t.Fatal(err)
				}
				part = f.NewPartition(0, st, pos)
			}
		}
		for from < len(recs) { // what the last aborted transactions left
			txn = txn[:0]
			for _, r := range recs[from:] {
				if err := part.Apply(r, emit); err != nil {
					t.Fatal(err)
				}
			}
			if err := part.Commit(); err != nil {
				t.Fatal(err)
			}
			out = append(out, txn...)
			from = len(recs)
		}
		return out
	}
	want := run(0)
	aggregates := 0
	for _, o := range want {
		if o[0] == byte('0'+gather.ToAggregated) {
			aggregates++
		}
	}
	if aggregates < 50 {
		t.Fatalf("only %d aggregates of %d outputs: the records test too little", aggregates, len(want))
	}
	for _, cache := range []int64{3000, store.DefaultRequestCache} {
		got := run(cache)
		if len(got) != len(want) {
			t.Errorf("cache %d: %d outputs, without a cache %d", cache, len(got), len(want))
		}
		for i := range min(len(got), len(want)) {
			if got[i] != want[i] {
				t.Errorf("cache %d: output %d is\n%s\nwithout a cache\n%s", cache, i, got[i], want[i])
				break
			}
		}
	}
}
