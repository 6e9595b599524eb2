package gather_test

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/scattergather/scattergather/processor/gather"
	"github.com/scattergather/scattergather/schemas"
	"github.com/scattergather/scattergather/store"
)

// BenchmarkFold folds whole requests (a manifest and three results, the
// last completing it) through a partition on an in-memory Pebble,
// committing every 100 requests as a busy gather would. One op is one
// request: four records folded and one aggregate built.
func BenchmarkFold(b *testing.B) {
	f, err := gather.NewFlow(flowConfig(&testing.T{}, "{type: all}", "{type: min, field: price}"), nil)
	if err != nil {
		b.Fatal(err)
	}
	db, err := store.Open("", store.WithFS(vfs.NewMem()))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	p := f.NewPartition(0, db.Partition(0), store.Position{})
	enc := func(v any) []byte {
		out, err := schemas.Encode(v)
		if err != nil {
			b.Fatal(err)
		}
		return out
	}
	type req struct{ recs [][]byte }
	const pool = 1000
	reqs := make([]req, pool)
	for i := range reqs {
		id := fmt.Sprintf("req-%06d", i)
		m := &schemas.Manifest{RequestID: id, Flow: "f", Strategy: "all", MaxFailures: -1, TimeoutMs: 60_000,
			Tasks: []schemas.TaskRef{{TaskID: id + "/a", Target: "a", Item: -1}, {TaskID: id + "/b", Target: "b", Item: -1}, {TaskID: id + "/c", Target: "c", Item: -1}}}
		reqs[i].recs = append(reqs[i].recs, enc(m))
		for j, t := range []string{"a", "b", "c"} {
			reqs[i].recs = append(reqs[i].recs, enc(&schemas.Result{RequestID: id, Flow: "f", TaskID: id + "/" + t, Target: t, Item: -1,
				Status: schemas.StatusOK, Payload: fmt.Appendf(nil, `{"price": %d}`, 100+j), Attempts: 1}))
		}
	}
	var offset, aggs int64
	emit := func(o gather.Output) {
		if o.Kind == gather.ToAggregated {
			aggs++
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		// Reusing ids after a pool's worth: each is closed by then, and its
		// memory expires long before (closed_retention is a minute of log
		// time; the clock moves a millisecond per record).
		r := reqs[i%pool]
		for _, v := range r.recs {
			offset++
			if err := p.Apply(gather.Record{Offset: offset, TimeMs: offset * 100, Value: v}, emit); err != nil {
				b.Fatal(err)
			}
		}
		i++
		if i%100 == 0 {
			if err := p.Commit(); err != nil {
				b.Fatal(err)
			}
		}
	}
	if aggs != int64(i) {
		b.Fatalf("%d aggregates for %d requests", aggs, i)
	}
}
