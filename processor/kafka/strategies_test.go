package kafka_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scattergather/scattergather/internal/processortest"
	"github.com/scattergather/scattergather/processor/kafka"
	"github.com/scattergather/scattergather/processor/scatter"
	"github.com/scattergather/scattergather/processor/worker"
	"github.com/scattergather/scattergather/schemas"
)

func answer(price int) worker.Handler {
	return worker.HandlerFunc(func(context.Context, *schemas.Task) ([]byte, error) {
		return fmt.Appendf(nil, `{"price": %d, "label": "p%d"}`, price, price), nil
	})
}

func failing() worker.Handler {
	return worker.HandlerFunc(func(context.Context, *schemas.Task) ([]byte, error) {
		return nil, errors.New("provider down")
	})
}

// hanging never answers: only the task's deadline ends the call.
func hanging() worker.Handler {
	return worker.HandlerFunc(func(ctx context.Context, _ *schemas.Task) ([]byte, error) {
		<-ctx.Done()
		return nil, context.Cause(ctx)
	})
}

type scenario struct {
	name        string
	strategy    string
	consolidate string
	a, b, c     worker.Handler
	outcome     schemas.Outcome
	result      string // JSON path "value" of min, or a substring of the result
	answered    string
	missing     string
	late        int // late results expected per request
}

func strategyScenarios() []scenario {
	return []scenario{
		{name: "all-complete", strategy: "{type: all}", a: answer(100), b: answer(90), c: answer(95),
			outcome: schemas.OutcomeComplete, result: `"value":90`, answered: "a,b,c"},
		{name: "all-hung-provider", strategy: "{type: all}", a: answer(100), b: answer(90), c: hanging(),
			outcome: schemas.OutcomeTimeout, result: `"value":90`, answered: "a,b", missing: "c", late: 1},
		{name: "first", strategy: "{type: first}", a: hanging(), b: answer(90), c: hanging(),
			outcome: schemas.OutcomeFirst, result: `"target":"b"`, answered: "b", missing: "a,c", late: 2},
		{name: "quorum-2", strategy: "{type: quorum, quorum: 2}", a: answer(100), b: answer(90), c: hanging(),
			outcome: schemas.OutcomeQuorum, result: `"value":90`, answered: "a,b", missing: "c", late: 1},
		{name: "majority-unreachable", strategy: "{type: quorum, quorum: majority}", a: failing(), b: failing(), c: hanging(),
			outcome: schemas.OutcomeFailed, result: "null", answered: "", missing: "c", late: 1},
		{name: "timeout-deadline", strategy: "{type: timeout}", a: answer(100), b: answer(90), c: hanging(),
			outcome: schemas.OutcomeDeadline, result: `"value":90`, answered: "a,b", missing: "c", late: 1},
		{name: "timeout-all-answered", strategy: "{type: timeout}", a: answer(100), b: answer(90), c: answer(80),
			outcome: schemas.OutcomeComplete, result: `"value":80`, answered: "a,b,c"},
		{name: "max-failures", strategy: "{type: all, max_failures: 0}", a: failing(), b: hanging(), c: hanging(),
			outcome: schemas.OutcomeFailed, result: "null", answered: "", missing: "b,c", late: 2},
		{name: "vote", strategy: "{type: all}", consolidate: "{type: vote, field: label}", a: answer(90), b: answer(90), c: answer(70),
			outcome: schemas.OutcomeComplete, result: `"value":"p90","votes":2,"voters":3`, answered: "a,b,c"},
	}
}

func names(as []schemas.Answer) string {
	var s []string
	for _, a := range as {
		s = append(s, a.Target)
	}
	return strings.Join(s, ",")
}

func refs(ts []schemas.TaskRef) string {
	var s []string
	for _, t := range ts {
		s = append(s, t.Target)
	}
	return strings.Join(s, ",")
}

func runScenario(t *testing.T, brokers []string, sc scenario) {
	cons := sc.consolidate
	if cons == "" {
		cons = "{type: min, field: price}"
	}
	topo, f := processortest.Topology(t, brokers, fmt.Sprintf(`
timeout: 6s
targets: [{name: a}, {name: b}, {name: c}]
strategy: %s
consolidate: %s
worker: {deadline_grace: 500ms}
`, sc.strategy, cons))
	processortest.CreateTopics(t, topo, f)
	runners, err := kafka.Roles(topo, topo.Flows, kafka.RoleAll, t.TempDir(),
		kafka.WithHandler("a", sc.a), kafka.WithHandler("b", sc.b), kafka.WithHandler("c", sc.c))
	if err != nil {
		t.Fatal(err)
	}
	processortest.Start(t, runners...)
	const n = 5
	processortest.Send(t, topo, requests(f.Name, n)...)
	aggs := processortest.Aggregates(t, topo, f, n, 2*time.Minute)
	for id, a := range aggs {
		if a.Outcome != sc.outcome || !strings.Contains(string(a.Result), sc.result) {
			t.Errorf("%s: outcome %s (%s) result %s; want %s with %s", id, a.Outcome, a.Reason, a.Result, sc.outcome, sc.result)
		}
		if sc.answered != "" && names(a.Answered) != sc.answered {
			t.Errorf("%s: answered %q, want %q", id, names(a.Answered), sc.answered)
		}
		if got := refs(a.Missing); got != sc.missing {
			t.Errorf("%s: missing %q, want %q", id, got, sc.missing)
		}
		if a.Duplicates != 0 {
			t.Errorf("%s: %d duplicates", id, a.Duplicates)
		}
	}
	if sc.late > 0 {
		// A hung provider's ERROR result comes after the deadline: late.
		for _, r := range processortest.Records(t, topo, f.Topics.Late, n*sc.late, time.Minute) {
			var res schemas.Result
			if err := schemas.DecodeInto(r.Value, &res); err != nil {
				t.Fatalf("late record: %v", err)
			}
			if reason := kafka.Header(r, schemas.HeaderReason); res.Status != schemas.StatusError || reason != "request already completed" {
				t.Errorf("late %s: status %s reason %q", res.TaskID, res.Status, reason)
			}
		}
	}
}

func TestIntegrationStrategies(t *testing.T) {
	brokers := processortest.Brokers(t)
	for _, sc := range strategyScenarios() {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			runScenario(t, brokers, sc)
		})
	}
}

// TestIntegrationDuplicateResults injects, while each request is open, a
// second copy of an answer, as a worker re-running a task after a crash
// would: the gather counts it once.
func TestIntegrationDuplicateResults(t *testing.T) {
	brokers := processortest.Brokers(t)
	topo, f := processortest.Topology(t, brokers, `
timeout: 30s
targets: [{name: a}, {name: b}, {name: c}]
consolidate: {type: sum, field: price}
`)
	processortest.CreateTopics(t, topo, f)
	started := make(chan string, 16)
	release := make(chan struct{})
	gate := worker.HandlerFunc(func(ctx context.Context, task *schemas.Task) ([]byte, error) {
		started <- task.RequestID
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return []byte(`{"price": 3}`), nil
	})
	runners, err := kafka.Roles(topo, topo.Flows, kafka.RoleAll, t.TempDir(),
		kafka.WithHandler("a", answer(1)), kafka.WithHandler("b", answer(2)), kafka.WithHandler("c", gate))
	if err != nil {
		t.Fatal(err)
	}
	processortest.Start(t, runners...)
	const n = 4
	processortest.Send(t, topo, requests(f.Name, n)...)

	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for range n {
		// c's task runs only once the manifest is committed: the request is open.
		var id string
		select {
		case id = <-started:
		case <-ctx.Done():
			t.Fatal("tasks of c never started")
		}
		dup := &schemas.Result{RequestID: id, Flow: f.Name, TaskID: id + "/a", Target: "a", Item: -1,
			Status: schemas.StatusOK, Payload: []byte(`{"price": 1, "label": "p1"}`), ContentType: schemas.ContentTypeJSON, Attempts: 1, Worker: "injected"}
		b, err := schemas.Encode(dup)
		if err != nil {
			t.Fatal(err)
		}
		p := scatter.Partition(id, int32(f.Partitions))
		recs := []*kgo.Record{
			{Topic: f.Topics.Results, Partition: p, Key: []byte(id), Value: b},
			{Topic: f.Topics.Results, Partition: p, Key: []byte(id), Value: b},
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	close(release)
	aggs := processortest.Aggregates(t, topo, f, n, time.Minute)
	for id, a := range aggs {
		var sum struct {
			Sum   float64
			Count int
		}
		if err := json.Unmarshal(a.Result, &sum); err != nil {
			t.Fatal(err)
		}
		if a.Outcome != schemas.OutcomeComplete || sum.Sum != 6 || sum.Count != 3 || a.Duplicates != 2 {
			t.Errorf("%s: outcome %s sum %v over %d, duplicates %d; want complete, 6 over 3, 2 duplicates", id, a.Outcome, sum.Sum, sum.Count, a.Duplicates)
		}
	}
}

// TestIntegrationHungTargetDoesNotStallOthers gives a hanging target two
// slots and the whole worker three: its tasks queue behind each other, and
// the other targets keep answering every request.
func TestIntegrationHungTargetDoesNotStallOthers(t *testing.T) {
	brokers := processortest.Brokers(t)
	topo, f := processortest.Topology(t, brokers, `
timeout: 2s
targets: [{name: a}, {name: b}, {name: c, max_in_flight: 2}]
consolidate: {type: min, field: price}
worker: {max_in_flight: 3, deadline_grace: 200ms}
`)
	processortest.CreateTopics(t, topo, f)
	runners, err := kafka.Roles(topo, topo.Flows, kafka.RoleAll, t.TempDir(),
		kafka.WithHandler("a", answer(100)), kafka.WithHandler("b", answer(90)), kafka.WithHandler("c", hanging()))
	if err != nil {
		t.Fatal(err)
	}
	processortest.Start(t, runners...)
	const n = 20
	processortest.Send(t, topo, requests(f.Name, n)...)
	aggs := processortest.Aggregates(t, topo, f, n, 2*time.Minute)
	for id, a := range aggs {
		if names(a.Answered) != "a,b" || a.Outcome != schemas.OutcomeTimeout {
			t.Errorf("%s: outcome %s answered %q failed %q missing %q", id, a.Outcome, names(a.Answered), names(a.Failed), refs(a.Missing))
		}
	}
}
