package collect_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/scattergather/scattergather/internal/collect"
	"github.com/scattergather/scattergather/internal/processortest"
	"github.com/scattergather/scattergather/processor/topology"
	"github.com/scattergather/scattergather/schemas"
)

func TestCollectFake(t *testing.T) { testCollect(t, processortest.Fake(t)) }

func TestIntegrationCollect(t *testing.T) { testCollect(t, processortest.Brokers(t)) }

// write appends raw values to the flow's aggregated topic, in order, in
// one partition.
func write(t *testing.T, topo *topology.Topology, f *topology.Flow, values ...[]byte) {
	t.Helper()
	processortest.SendRaw(t, topo, f.Topics.Aggregated, []byte("k"), values...)
}

func aggregate(t *testing.T, id string, outcome schemas.Outcome) []byte {
	t.Helper()
	b, err := schemas.Encode(&schemas.Aggregate{RequestID: id, Flow: "f", Outcome: outcome})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A collector notes each request's first aggregate and its time, counts a
// second one and a record that is no aggregate, waits for a set of ids,
// and says how many are missing when its context ends first.
func testCollect(t *testing.T, brokers []string) {
	topo, f := processortest.Topology(t, brokers, "timeout: 10s\ntargets: [{name: a}]")
	processortest.CreateTopics(t, topo, f)
	write(t, topo, f, aggregate(t, "r1", schemas.OutcomeComplete), []byte("not an aggregate"),
		aggregate(t, "r2", schemas.OutcomeTimeout), aggregate(t, "r1", schemas.OutcomeFailed))

	var mu sync.Mutex
	var firsts []string
	c, err := collect.Start(topo, f, collect.OnFirst(func(id string, _ time.Time, a *schemas.Aggregate) {
		mu.Lock()
		firsts = append(firsts, id+"/"+string(a.Outcome))
		mu.Unlock()
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	before := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.Wait(ctx, "r1", "r2"); err != nil {
		t.Fatal(err)
	}
	at, ok := c.Arrived("r2")
	if !ok || at.IsZero() || at.Before(before.Add(-time.Minute)) {
		t.Errorf("r2 arrived %v %v", at, ok)
	}
	if a := c.Aggregate("r1"); a == nil || a.Outcome != schemas.OutcomeComplete {
		t.Errorf("r1's aggregate %+v, want the first (complete)", a)
	}
	if _, ok := c.Arrived("r3"); ok || c.Aggregate("r3") != nil {
		t.Error("r3 arrived, but was never written")
	}
	// The duplicate r1 may follow r2 in a later fetch: a fourth request
	// written after it marks the end of what was written before.
	write(t, topo, f, aggregate(t, "r4", schemas.OutcomeComplete))
	if err := c.Wait(ctx, "r4"); err != nil {
		t.Fatal(err)
	}
	if got := c.IDs(); !slices.Equal(got, []string{"r1", "r2", "r4"}) {
		t.Errorf("ids %v", got)
	}
	if c.Count() != 3 || c.Duplicates() != 1 || c.Undecodable() != 1 {
		t.Errorf("count %d, duplicates %d, undecodable %d; want 3, 1, 1", c.Count(), c.Duplicates(), c.Undecodable())
	}
	mu.Lock()
	if !slices.Equal(firsts, []string{"r1/complete", "r2/timeout", "r4/complete"}) {
		t.Errorf("OnFirst saw %v", firsts)
	}
	mu.Unlock()

	short, stop := context.WithCancel(ctx)
	stop()
	if err := c.Wait(short, "r1", "r3", "r5"); err == nil || !errors.Is(err, context.Canceled) || err.Error() != "collect: 2 of 3 requests without an aggregate: context canceled" {
		t.Errorf("wait for missing ids: %v", err)
	}
	c.Close()
	if err := c.Wait(ctx, "r3"); !errors.Is(err, collect.ErrClosed) {
		t.Errorf("wait after close: %v", err)
	}
	if c.Count() != 3 {
		t.Errorf("after close: count %d", c.Count())
	}
}

// FromEnd skips what the topic held before the collector started;
// ArrivalsOnly keeps the times without the aggregates.
func TestCollectFromEndArrivalsOnly(t *testing.T) {
	topo, f := processortest.Topology(t, processortest.Fake(t), "timeout: 10s\ntargets: [{name: a}]")
	processortest.CreateTopics(t, topo, f)
	write(t, topo, f, aggregate(t, "old", schemas.OutcomeComplete))
	c, err := collect.Start(topo, f, collect.FromEnd(), collect.ArrivalsOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The reader may join after a first write: write until it sees one.
	for i := 0; ; i++ {
		id := "new-" + string(rune('a'+i%26))
		write(t, topo, f, aggregate(t, id, schemas.OutcomeComplete))
		wctx, wcancel := context.WithTimeout(ctx, 500*time.Millisecond)
		err := c.Wait(wctx, id)
		wcancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatal(err)
		}
	}
	if _, ok := c.Arrived("old"); ok {
		t.Error("FromEnd read an aggregate written before Start")
	}
	for _, id := range c.IDs() {
		if c.Aggregate(id) != nil {
			t.Errorf("ArrivalsOnly kept %s's aggregate", id)
		}
	}
}
