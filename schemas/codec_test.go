package schemas_test

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/scattergather/scattergather/schemas"
)

func sampleRecords() []any {
	return []any{
		&schemas.Request{RequestID: "r1", Flow: "f", Payload: []byte(`{"a":1}`), ContentType: schemas.ContentTypeJSON, Attributes: map[string]string{"k": "v"}},
		&schemas.Task{RequestID: "r1", Flow: "f", TaskID: "r1/a", Target: "a", Item: -1, Payload: []byte(`{}`), ContentType: schemas.ContentTypeJSON, ResultsPartition: 3, DeadlineMs: 1700000000000, Attributes: map[string]string{}},
		&schemas.Manifest{RequestID: "r1", Flow: "f", Tasks: []schemas.TaskRef{{TaskID: "r1/a", Target: "a", Item: -1}, {TaskID: "r1/b/0", Target: "b", Item: 0}}, Strategy: "quorum", Quorum: 2, MaxFailures: -1, TimeoutMs: 1500, RequestPartition: 1, RequestOffset: 42, Attributes: map[string]string{}},
		&schemas.Result{RequestID: "r1", Flow: "f", TaskID: "r1/a", Target: "a", Item: -1, Status: schemas.StatusOK, Payload: []byte(`{"price":10}`), ContentType: schemas.ContentTypeJSON, Attempts: 2, DurationMs: 12, Worker: "w1"},
		&schemas.Result{RequestID: "r1", Flow: "f", TaskID: "r1/b", Target: "b", Item: -1, Status: schemas.StatusError, Payload: []byte{}, ContentType: "", Error: "boom", Attempts: 1},
		&schemas.Tick{SentMs: 123},
		&schemas.Aggregate{RequestID: "r1", Flow: "f", Outcome: schemas.OutcomeQuorum, Strategy: "quorum", Consolidation: "min", Result: []byte(`{"x":1}`), ContentType: schemas.ContentTypeJSON, Tasks: 2,
			Answered: []schemas.Answer{{TaskID: "r1/a", Target: "a", Item: -1, LatencyMs: 5, Attempts: 1}},
			Failed:   []schemas.Answer{{TaskID: "r1/b", Target: "b", Item: -1, Error: "boom", LatencyMs: 7, Attempts: 1}},
			Missing:  []schemas.TaskRef{{TaskID: "r1/c", Target: "c", Item: -1}},
			OpenedMs: 1, DeadlineMs: 2, CompletedMs: 3, Partition: 4, ManifestOffset: 5, Attributes: map[string]string{"a": "b"}},
	}
}

func TestRoundTrip(t *testing.T) {
	for _, in := range sampleRecords() {
		b, err := schemas.Encode(in)
		if err != nil {
			t.Fatalf("encode %T: %v", in, err)
		}
		if b[0] != 0xC3 || b[1] != 0x01 {
			t.Fatalf("%T: no single-object marker: % x", in, b[:2])
		}
		out, err := schemas.Decode(b)
		if err != nil {
			t.Fatalf("decode %T: %v", in, err)
		}
		if !reflect.DeepEqual(in, out) {
			t.Errorf("round trip of %T:\n in: %+v\nout: %+v", in, in, out)
		}
		again, err := schemas.Encode(out)
		if err != nil || !bytes.Equal(b, again) {
			t.Errorf("%T: re-encoding differs (err %v)", in, err)
		}
	}
}
