package kafka_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scattergather/scattergather/internal/processortest"
	"github.com/scattergather/scattergather/processor/kafka"
	"github.com/scattergather/scattergather/processor/worker"
	"github.com/scattergather/scattergather/schemas"
)

// TestBadInputFake and TestIntegrationBadInput send every kind of bad
// record between good ones: each bad one lands in the dead-letter topic
// with its original bytes and the reason (or, for answers that cannot be
// consolidated and results of unknown requests, becomes a failed answer or
// a late record), and every good request still gets its aggregate.
func TestBadInputFake(t *testing.T) { testBadInput(t, processortest.Fake(t)) }

func TestIntegrationBadInput(t *testing.T) { testBadInput(t, processortest.Brokers(t)) }

func testBadInput(t *testing.T, brokers []string) {
	topo, f := processortest.Topology(t, brokers, `
timeout: 10s
targets: [{name: a}, {name: b}]
consolidate: {type: min, field: price}
limits: {max_payload_bytes: 2KiB}
`)
	processortest.CreateTopics(t, topo, f)
	// b answers garbage for request good-1 and no price for good-2.
	b := worker.HandlerFunc(func(_ context.Context, t *schemas.Task) ([]byte, error) {
		switch t.RequestID {
		case "good-1":
			return []byte("<html>oops</html>"), nil
		case "good-2":
			return []byte(`{"cost": 3}`), nil
		}
		return []byte(`{"price": 7}`), nil
	})
	runners, err := kafka.Roles(topo, topo.Flows, kafka.RoleAll, t.TempDir(), kafka.WithHandler("a", answer(10)), kafka.WithHandler("b", b))
	if err != nil {
		t.Fatal(err)
	}
	processortest.Start(t, runners...)

	enc := func(v any) []byte {
		b, err := schemas.Encode(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good := func(id string) []byte {
		return enc(&schemas.Request{RequestID: id, Flow: f.Name, Payload: []byte(`{"q":1}`), ContentType: schemas.ContentTypeJSON})
	}
	unknownFP := append([]byte{0xC3, 0x01}, binary.LittleEndian.AppendUint64(nil, 0xDEADBEEF)...)
	unknownFP = append(unknownFP, 1, 2, 3)
	type bad struct {
		topic, reason string
		value         []byte
		stage, kind   string
	}
	bads := []bad{
		{f.Topics.Requests, "undecodable request", []byte("not avro at all"), schemas.StageScatter, schemas.KindUndecodable},
		{f.Topics.Requests, "unknown schema fingerprint", unknownFP, schemas.StageScatter, schemas.KindUndecodable},
		{f.Topics.Requests, "unknown flow", enc(&schemas.Request{RequestID: "x1", Flow: "elsewhere", Payload: []byte(`{}`)}), schemas.StageScatter, schemas.KindUnknownFlow},
		{f.Topics.Requests, "missing request id", enc(&schemas.Request{Flow: f.Name, Payload: []byte(`{}`)}), schemas.StageScatter, schemas.KindMissingRequestID},
		{f.Topics.Requests, "exceeds limits.max_payload_bytes", enc(&schemas.Request{RequestID: "x2", Flow: f.Name, Payload: bytes.Repeat([]byte("x"), 4096)}), schemas.StageScatter, schemas.KindOversize},
		{f.Topics.Requests, "request id has control character U+000D", enc(&schemas.Request{RequestID: "x5\r\nX-Injected: 1", Flow: f.Name, Payload: []byte(`{}`)}), schemas.StageScatter, schemas.KindInvalidRequestID},
		{f.Topics.Requests, "request id begins or ends with white space", enc(&schemas.Request{RequestID: "x6 ", Flow: f.Name, Payload: []byte(`{}`)}), schemas.StageScatter, schemas.KindInvalidRequestID},
		{f.Target("a").Topic, "task of flow \"elsewhere\"", enc(&schemas.Task{RequestID: "x3", Flow: "elsewhere", TaskID: "x3/a", Target: "a", Item: -1, DeadlineMs: time.Now().Add(time.Hour).UnixMilli()}), schemas.StageWorker, schemas.KindUnknownFlow},
		{f.Target("a").Topic, "task names results partition 99", enc(&schemas.Task{RequestID: "x7", Flow: f.Name, TaskID: "x7/z", Target: "z", Item: -1, ResultsPartition: 99, DeadlineMs: time.Now().Add(time.Hour).UnixMilli()}), schemas.StageWorker, schemas.KindInvalidTask},
		{f.Topics.Results, "exceeds limits.max_timeout", enc(&schemas.Manifest{RequestID: "x8", Flow: f.Name, Strategy: "all", MaxFailures: -1, TimeoutMs: math.MaxInt64,
			Tasks: []schemas.TaskRef{{TaskID: "x8/a", Target: "a", Item: -1}}}), schemas.StageGather, schemas.KindInvalidManifest},
		{f.Topics.Results, "request id has control character U+000A", enc(&schemas.Manifest{RequestID: "x9\n", Flow: f.Name, Strategy: "all", MaxFailures: -1, TimeoutMs: 1000,
			Tasks: []schemas.TaskRef{{TaskID: "x9/a", Target: "a", Item: -1}}}), schemas.StageGather, schemas.KindInvalidManifest},
		{f.Topics.Results, "undecodable record", []byte{0xC3, 0x01, 1}, schemas.StageGather, schemas.KindUndecodable},
		{f.Topics.Results, "does not belong in the results topic", good("x4"), schemas.StageGather, schemas.KindUnexpectedRecord},
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(f.Topics.Requests))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const goods = 6
	var recs []*kgo.Record
	for i := range goods {
		recs = append(recs, &kgo.Record{Topic: f.Topics.Requests, Key: fmt.Appendf(nil, "good-%d", i), Value: good(fmt.Sprintf("good-%d", i))})
		if i < len(bads) {
			recs = append(recs, &kgo.Record{Topic: bads[i].topic, Key: fmt.Appendf(nil, "bad-%d", i), Value: bads[i].value})
		}
	}
	for _, bd := range bads[goods:] {
		recs = append(recs, &kgo.Record{Topic: bd.topic, Key: []byte("bad-late"), Value: bd.value})
	}
	// A result of a request that never was: late, not dead.
	recs = append(recs, &kgo.Record{Topic: f.Topics.Results, Key: []byte("ghost"), Value: enc(&schemas.Result{
		RequestID: "ghost", Flow: f.Name, TaskID: "ghost/a", Target: "a", Item: -1, Status: schemas.StatusOK, Payload: []byte(`{}`)})})
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	aggs := processortest.Aggregates(t, topo, f, goods, time.Minute)
	for i := range goods {
		id := fmt.Sprintf("good-%d", i)
		a := aggs[id]
		if a == nil {
			t.Errorf("good request %s has no aggregate", id)
			continue
		}
		wantAnswered, wantFailed := "a,b", ""
		if i == 1 || i == 2 {
			wantAnswered, wantFailed = "a", "b"
		}
		if a.Outcome != schemas.OutcomeComplete || names(a.Answered) != wantAnswered || names(a.Failed) != wantFailed {
			t.Errorf("%s: outcome %s answered %q failed %q", id, a.Outcome, names(a.Answered), names(a.Failed))
		}
		if i == 1 || i == 2 {
			if !strings.HasPrefix(a.Failed[0].Error, "cannot consolidate: ") {
				t.Errorf("%s: b's failure %q, want the consolidation's reason", id, a.Failed[0].Error)
			}
		}
	}
	dead := processortest.Records(t, topo, f.Topics.DeadLetter, len(bads), time.Minute)
	if len(dead) != len(bads) {
		t.Errorf("%d dead letters, want %d", len(dead), len(bads))
	}
	for _, bd := range bads {
		var found bool
		for _, d := range dead {
			if bytes.Equal(d.Value, bd.value) && strings.Contains(kafka.Header(d, schemas.HeaderReason), bd.reason) {
				found = true
				if kafka.Header(d, schemas.HeaderTopic) != bd.topic || kafka.Header(d, schemas.HeaderOffset) == "" {
					t.Errorf("dead letter for %q: source %s@%s, want %s", bd.reason, kafka.Header(d, schemas.HeaderTopic), kafka.Header(d, schemas.HeaderOffset), bd.topic)
				}
				if got := headers(d, schemas.HeaderStage, schemas.HeaderReasonKind, schemas.HeaderFlow); got != bd.stage+" "+bd.kind+" "+f.Name {
					t.Errorf("dead letter for %q: stage, kind and flow %q, want %s %s %s", bd.reason, got, bd.stage, bd.kind, f.Name)
				}
			}
		}
		if !found {
			t.Errorf("no dead letter with the original bytes and a reason containing %q", bd.reason)
			for _, d := range dead {
				t.Logf("  dead letter: %q", kafka.Header(d, schemas.HeaderReason))
			}
		}
	}
	late := processortest.Records(t, topo, f.Topics.Late, 1, time.Minute)
	if len(late) != 1 || string(late[0].Key) != "ghost" || !strings.HasPrefix(kafka.Header(late[0], schemas.HeaderReason), "unknown request") {
		t.Errorf("late records %d, want the ghost result with reason unknown request", len(late))
	}
	// A late record carries the headers of a dead letter.
	for _, l := range late {
		want := fmt.Sprintf("%s %s %s %s", schemas.StageGather, schemas.KindUnknownRequest, f.Name, f.Topics.Results)
		if got := headers(l, schemas.HeaderStage, schemas.HeaderReasonKind, schemas.HeaderFlow, schemas.HeaderTopic); got != want {
			t.Errorf("late record: stage, kind, flow and source topic %q, want %q", got, want)
		}
		if _, err := strconv.Atoi(kafka.Header(l, schemas.HeaderPartition)); err != nil {
			t.Errorf("late record: source partition %q", kafka.Header(l, schemas.HeaderPartition))
		}
		if _, err := strconv.ParseInt(kafka.Header(l, schemas.HeaderOffset), 10, 64); err != nil {
			t.Errorf("late record: source offset %q", kafka.Header(l, schemas.HeaderOffset))
		}
	}
}

// headers returns the values of r's headers keys, space-separated.
func headers(r *kgo.Record, keys ...string) string {
	var vals []string
	for _, k := range keys {
		vals = append(vals, kafka.Header(r, k))
	}
	return strings.Join(vals, " ")
}

// TestWrongTargetAnsweredFake and TestIntegrationWrongTargetAnswered: a
// task of the flow in the topic of another target is answered ERROR, so
// the gather reports that target failed at once, not missing at the
// deadline.
func TestWrongTargetAnsweredFake(t *testing.T) { testWrongTargetAnswered(t, processortest.Fake(t)) }

func TestIntegrationWrongTargetAnswered(t *testing.T) {
	testWrongTargetAnswered(t, processortest.Brokers(t))
}

func testWrongTargetAnswered(t *testing.T, brokers []string) {
	// Nothing serves target b (no handler): only the copy of its task in
	// a's topic can answer it before the deadline.
	topo, f := processortest.Topology(t, brokers, `
timeout: 1h
targets: [{name: a}, {name: b}]
`)
	processortest.CreateTopics(t, topo, f)
	rec := &refusals{}
	runners, err := kafka.Roles(topo, topo.Flows, kafka.RoleAll, t.TempDir(), kafka.WithHandler("a", answer(10)), kafka.WithHooks(rec))
	if err != nil {
		t.Fatal(err)
	}
	processortest.Start(t, runners...)
	processortest.Send(t, topo, &schemas.Request{RequestID: "w1", Flow: f.Name, Payload: []byte(`{}`)})
	// The scatter's transaction committed: the manifest is in the results
	// topic before the copy can be answered.
	tasks := processortest.Records(t, topo, f.Target("b").Topic, 1, time.Minute)
	if len(tasks) != 1 {
		t.Fatalf("%d tasks for b, want 1", len(tasks))
	}
	processortest.SendRaw(t, topo, f.Target("a").Topic, tasks[0].Key, tasks[0].Value)

	a := processortest.Aggregates(t, topo, f, 1, time.Minute)["w1"]
	if a == nil {
		t.Fatal("no aggregate for w1")
	}
	if a.Outcome != schemas.OutcomeComplete || names(a.Answered) != "a" || names(a.Failed) != "b" || len(a.Missing) != 0 {
		t.Fatalf("outcome %s answered %q failed %q missing %d, want complete, a, b, 0", a.Outcome, names(a.Answered), names(a.Failed), len(a.Missing))
	}
	want := `worker: task for target "b", which this worker does not serve here (topic of target "a")`
	if a.Failed[0].Error != want || a.Failed[0].TaskID != "w1/b" {
		t.Errorf("b's failure %s %q, want w1/b %q", a.Failed[0].TaskID, a.Failed[0].Error, want)
	}
	processortest.Eventually(t, time.Minute, "the refused task counted", func() bool { return rec.n.Load() == 1 })
}

// refusals counts the tasks the worker of target a refused as wrong_target.
type refusals struct{ n atomic.Int64 }

func (r *refusals) OnTaskRefused(_, target, kind string) {
	if target == "a" && kind == schemas.KindWrongTarget {
		r.n.Add(1)
	}
}
