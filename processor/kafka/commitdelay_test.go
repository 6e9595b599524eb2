package kafka_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scattergather/scattergather/internal/processortest"
	"github.com/scattergather/scattergather/processor/kafka"
	"github.com/scattergather/scattergather/schemas"
)

// gatherTxns records the gather's committed transactions (the input
// records of each) and the results it folded.
type gatherTxns struct {
	roleTxns
	folded int
}

func (h *gatherTxns) OnResultFolded(string, string, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.folded++
}

func (h *gatherTxns) get() (txns []int, folded int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]int(nil), h.txns...), h.folded
}

// With gather.commit_delay, the results that decide no request wait in
// the gather's open transaction, and the result that completes the
// request ends it at once: one transaction for the manifest and its three
// results, where a transaction after every poll makes at least two (the
// third result is written only once the first two were folded). A lone
// result is committed once the delay has passed with nothing more, and a
// gather that stops commits what its open transaction folded.
func TestIntegrationGatherCommitDelay(t *testing.T) {
	brokers := processortest.Brokers(t)
	topo, f := processortest.Topology(t, brokers, `
timeout: 1h
partitions: 1
targets: [{name: a}, {name: b}, {name: c}]
strategy: {type: all}
gather: {commit_delay: 5s}
`)
	processortest.CreateTopics(t, topo, f)
	h := &gatherTxns{roleTxns: roleTxns{role: kafka.RoleGather}}
	g, err := kafka.NewGather(topo, f, t.TempDir(), kafka.WithInstance("g"), kafka.WithHooks(h))
	if err != nil {
		t.Fatal(err)
	}
	stop := processortest.Start(t, g)

	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(f.Topics.Results))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	write := func(vs ...any) {
		t.Helper()
		var recs []*kgo.Record
		for _, v := range vs {
			b, err := schemas.Encode(v)
			if err != nil {
				t.Fatal(err)
			}
			var id string
			switch v := v.(type) {
			case *schemas.Manifest:
				id = v.RequestID
			case *schemas.Result:
				id = v.RequestID
			}
			recs = append(recs, &kgo.Record{Key: []byte(id), Value: b})
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	manifest := func(id string) *schemas.Manifest {
		m := &schemas.Manifest{RequestID: id, Flow: f.Name, Strategy: "all", MaxFailures: -1, TimeoutMs: time.Hour.Milliseconds()}
		for _, target := range []string{"a", "b", "c"} {
			m.Tasks = append(m.Tasks, schemas.TaskRef{TaskID: id + "/" + target, Target: target, Item: -1})
		}
		return m
	}
	result := func(id, target string) *schemas.Result {
		return &schemas.Result{RequestID: id, Flow: f.Name, TaskID: id + "/" + target, Target: target, Item: -1,
			Status: schemas.StatusOK, Payload: []byte(`{}`), ContentType: schemas.ContentTypeJSON}
	}
	waitFolded := func(n int) {
		t.Helper()
		processortest.Eventually(t, time.Minute, fmt.Sprintf("%d results folded", n), func() bool {
			_, folded := h.get()
			return folded >= n
		})
	}
	waitTxns := func(n int) []int {
		t.Helper()
		processortest.Eventually(t, time.Minute, fmt.Sprintf("%d transactions of the gather", n), func() bool {
			txns, _ := h.get()
			return len(txns) >= n
		})
		txns, _ := h.get()
		return txns
	}

	// Two results that complete nothing, then the third.
	write(manifest("r1"), result("r1", "a"), result("r1", "b"))
	waitFolded(2)
	write(result("r1", "c"))
	aggs := processortest.Aggregates(t, topo, f, 1, time.Minute)
	if a := aggs["r1"]; a == nil || a.Outcome != schemas.OutcomeComplete || len(a.Answered) != 3 {
		t.Fatalf("aggregate of r1: %+v", a)
	}
	if txns := waitTxns(1); len(txns) != 1 || txns[0] != 4 {
		t.Fatalf("the gather's transactions carried %v records; want one of 4 (the manifest and three results)", txns)
	}

	// A lone result: committed when the delay has passed.
	write(manifest("r2"), result("r2", "a"))
	if txns := waitTxns(2); len(txns) != 2 || txns[1] != 2 {
		t.Fatalf("the gather's transactions carried %v records; want a second of 2", txns)
	}

	// A lone result, and the gather stops well within the delay: it
	// commits on its way out, so that its successor need not fold again.
	write(manifest("r3"), result("r3", "a"))
	waitFolded(5)
	stop()
	if txns, _ := h.get(); len(txns) != 3 || txns[2] != 2 {
		t.Fatalf("the gather's transactions carried %v records; want a third of 2", txns)
	}
	adm := processortest.Admin(t, topo)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	offs, err := adm.FetchOffsets(ctx, topo.Group(f, "gather"))
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := offs.Lookup(f.Topics.Results, 0); !ok || o.At != 8 {
		t.Errorf("the gather's committed offset of %s[0] is %+v; want 8, past all eight records", f.Topics.Results, o)
	}
}
