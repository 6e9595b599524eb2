package kafka_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/scattergather/scattergather/internal/processortest"
	"github.com/scattergather/scattergather/processor/kafka"
	"github.com/scattergather/scattergather/processor/topology"
	"github.com/scattergather/scattergather/processor/worker"
	"github.com/scattergather/scattergather/schemas"
)

// priceHandler answers every task with a price that depends on the
// target and the request, so the cheapest target is known in advance.
func priceHandler(base int) worker.Handler {
	return worker.HandlerFunc(func(_ context.Context, t *schemas.Task) ([]byte, error) {
		var req struct{ N int }
		if err := json.Unmarshal(t.Payload, &req); err != nil {
			return nil, err
		}
		return fmt.Appendf(nil, `{"price": %d}`, base+req.N%3*10), nil
	})
}

func requests(flow string, n int) []*schemas.Request {
	out := make([]*schemas.Request, n)
	for i := range out {
		out[i] = &schemas.Request{RequestID: fmt.Sprintf("req-%03d", i), Flow: flow, Payload: fmt.Appendf(nil, `{"n": %d}`, i), ContentType: schemas.ContentTypeJSON}
	}
	return out
}

func runCheapest(t *testing.T, brokers []string) {
	topo, f := processortest.Topology(t, brokers, `
timeout: 10s
targets: [{name: a}, {name: b}, {name: c}]
strategy: {type: all}
consolidate: {type: min, field: price}
`)
	processortest.CreateTopics(t, topo, f)
	txns := &txnRecorder{records: map[string]int{}}
	opts := []kafka.RoleOpt{
		kafka.WithHooks(txns),
		kafka.WithHandler("a", priceHandler(100)),
		kafka.WithHandler("b", priceHandler(95)),
		kafka.WithHandler("c", priceHandler(105)),
	}
	runners, err := kafka.Roles(topo, topo.Flows, kafka.RoleAll, t.TempDir(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	processortest.Start(t, runners...)
	const n = 60
	// One at a time, so that the gather runs many transactions back to back.
	for _, r := range requests(f.Name, n) {
		processortest.Send(t, topo, r)
	}
	checkCheapest(t, processortest.Aggregates(t, topo, f, n, 2*time.Minute), n)
	// With one gather and no rebalance, no transaction has a reason to
	// abort; an abort means work done twice.
	for _, r := range runners {
		if g, ok := r.(*kafka.Gather); ok {
			if st := g.Stats(); st.Aborted != 0 {
				t.Errorf("gather aborted %d of %d transactions", st.Aborted, st.Aborted+st.Committed)
			}
		}
	}
	// Every request passed a timed transaction of the scatter, and its
	// manifest and three results one of the gather.
	txns.mu.Lock()
	defer txns.mu.Unlock()
	if txns.records["scatter"] < n || txns.records["gather"] < 4*n || txns.bad != "" {
		t.Errorf("timed transactions carried %v records, want at least %d of the scatter and %d of the gather; %s", txns.records, n, 4*n, txns.bad)
	}
}

// txnRecorder sums the records of the timed transactions by role.
type txnRecorder struct {
	mu      sync.Mutex
	records map[string]int
	bad     string // a transaction whose times do not add up
}

func (r *txnRecorder) OnTransactionTimed(flow, role string, records int, took, end time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records[role] += records
	if end < 0 || took < end {
		r.bad = fmt.Sprintf("a transaction of the %s took %v, %v of it its end", role, took, end)
	}
}

func TestPipelineFake(t *testing.T) { runCheapest(t, processortest.Fake(t)) }

func TestIntegrationPipeline(t *testing.T) { runCheapest(t, processortest.Brokers(t)) }

// startWithoutGather runs the flow's scatter and workers until the test
// ends, and returns a function that starts a gather with identity
// instance on dir (stop it with the function that returns).
func startWithoutGather(t *testing.T, topo *topology.Topology, f *topology.Flow, opts ...kafka.WorkerOpt) func(instance, dir string) (*kafka.Gather, func()) {
	t.Helper()
	sc := kafka.NewScatter(topo, f)
	w, err := kafka.NewWorker(topo, f, opts...)
	if err != nil {
		t.Fatal(err)
	}
	processortest.Start(t, sc, w)
	return func(instance, dir string) (*kafka.Gather, func()) {
		t.Helper()
		g, err := kafka.NewGather(topo, f, dir, kafka.WithInstance(instance))
		if err != nil {
			t.Fatal(err)
		}
		return g, processortest.Start(t, g)
	}
}

// backlog runs the flow's scatter and gather (no worker) on a state in a
// test directory until the test ends, sends n requests and waits until
// their tasks of target are in its topic: a backlog for a worker started
// next.
func backlog(t *testing.T, topo *topology.Topology, f *topology.Flow, target string, n int) {
	t.Helper()
	dir := t.TempDir()
	for _, role := range []string{kafka.RoleScatter, kafka.RoleGather} {
		runners, err := kafka.Roles(topo, topo.Flows, role, dir)
		if err != nil {
			t.Fatal(err)
		}
		processortest.Start(t, runners...)
	}
	processortest.Send(t, topo, requests(f.Name, n)...)
	processortest.Records(t, topo, f.Target(target).Topic, n, 2*time.Minute)
}

// checkCheapest checks the aggregates of requests(_, n) answered by
// priceHandler(100), (95) and (105): complete, b the cheapest.
func checkCheapest(t *testing.T, aggs map[string]*schemas.Aggregate, n int) {
	t.Helper()
	for i := range n {
		id := fmt.Sprintf("req-%03d", i)
		a := aggs[id]
		if a == nil {
			t.Errorf("no aggregate for %s", id)
			continue
		}
		var res struct {
			Target string
			Value  int
		}
		if err := json.Unmarshal(a.Result, &res); err != nil {
			t.Fatalf("%s: result %s: %v", id, a.Result, err)
		}
		want := 95 + i%3*10
		if a.Outcome != schemas.OutcomeComplete || res.Target != "b" || res.Value != want || len(a.Answered) != 3 {
			t.Errorf("%s: outcome %s, cheapest %s at %d (want b at %d), %d answered", id, a.Outcome, res.Target, res.Value, want, len(a.Answered))
		}
	}
}
