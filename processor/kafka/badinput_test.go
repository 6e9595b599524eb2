package kafka_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scattergather/scattergather/internal/processortest"
	"github.com/scattergather/scattergather/processor/kafka"
	"github.com/scattergather/scattergather/processor/worker"
	"github.com/scattergather/scattergather/schemas"
)

// TestIntegrationBadInput sends every kind of bad record between good
// ones: each bad one lands in the dead-letter topic with its original bytes
// and the reason (or, for answers that cannot be consolidated and results
// of unknown requests, becomes a failed answer or a late record), and
// every good request still gets its aggregate.
func TestIntegrationBadInput(t *testing.T) {
	brokers := processortest.Brokers(t)
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
	}
	bads := []bad{
		{f.Topics.Requests, "undecodable request", []byte("not avro at all")},
		{f.Topics.Requests, "unknown schema fingerprint", unknownFP},
		{f.Topics.Requests, "unknown flow", enc(&schemas.Request{RequestID: "x1", Flow: "elsewhere", Payload: []byte(`{}`)})},
		{f.Topics.Requests, "missing request id", enc(&schemas.Request{Flow: f.Name, Payload: []byte(`{}`)})},
		{f.Topics.Requests, "exceeds limits.max_payload_bytes", enc(&schemas.Request{RequestID: "x2", Flow: f.Name, Payload: bytes.Repeat([]byte("x"), 4096)})},
		{f.Target("a").Topic, "which this worker does not serve", enc(&schemas.Task{RequestID: "x3", Flow: f.Name, TaskID: "x3/z", Target: "z", Item: -1, DeadlineMs: time.Now().Add(time.Hour).UnixMilli()})},
		{f.Topics.Results, "undecodable record", []byte{0xC3, 0x01, 1}},
		{f.Topics.Results, "does not belong in the results topic", good("x4")},
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
			if bytes.Equal(d.Value, bd.value) && strings.Contains(kafka.Header(d, kafka.HeaderReason), bd.reason) {
				found = true
				if kafka.Header(d, kafka.HeaderTopic) != bd.topic || kafka.Header(d, kafka.HeaderOffset) == "" {
					t.Errorf("dead letter for %q: source %s@%s, want %s", bd.reason, kafka.Header(d, kafka.HeaderTopic), kafka.Header(d, kafka.HeaderOffset), bd.topic)
				}
			}
		}
		if !found {
			t.Errorf("no dead letter with the original bytes and a reason containing %q", bd.reason)
			for _, d := range dead {
				t.Logf("  dead letter: %q", kafka.Header(d, kafka.HeaderReason))
			}
		}
	}
	late := processortest.Records(t, topo, f.Topics.Late, 1, time.Minute)
	if len(late) != 1 || string(late[0].Key) != "ghost" || !strings.HasPrefix(kafka.Header(late[0], kafka.HeaderReason), "unknown request") {
		t.Errorf("late records %d, want the ghost result with reason unknown request", len(late))
	}
}
