package schemas_test

import (
	"testing"

	"github.com/scattergather/scattergather/schemas"
)

func benchResult() *schemas.Result {
	return &schemas.Result{RequestID: "req-000123", Flow: "flights", TaskID: "req-000123/kayak", Target: "kayak", Item: -1,
		Status: schemas.StatusOK, Payload: []byte(`{"price": 123.45, "currency": "EUR", "offer": "KL641"}`), ContentType: schemas.ContentTypeJSON,
		Attempts: 1, DurationMs: 12, Worker: "w1"}
}

func BenchmarkEncodeResult(b *testing.B) {
	r := benchResult()
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = schemas.Default.Append(buf[:0], r); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkDecodeResult(b *testing.B) {
	data, err := schemas.Encode(benchResult())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		var r schemas.Result
		if err := schemas.DecodeInto(data, &r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeByFingerprint(b *testing.B) {
	data, err := schemas.Encode(benchResult())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := schemas.Decode(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeAggregate encodes an aggregate into a new buffer, as the
// gather does for each one it writes (the record keeps the bytes).
func BenchmarkEncodeAggregate(b *testing.B) {
	a := &schemas.Aggregate{RequestID: "req-000123", Flow: "flights", Outcome: schemas.OutcomeComplete, Strategy: "all",
		Consolidation: "min", ContentType: schemas.ContentTypeJSON, Tasks: 3, Missing: []schemas.TaskRef{},
		Result:     []byte(`{"target":"kayak","task_id":"req-000123/kayak","value":123.45,"answer":{"price": 123.45, "currency": "EUR", "offer": "KL641"}}`),
		Attributes: schemas.Attributes{{Key: "user", Value: "u-42"}}}
	for _, t := range []string{"kayak", "skyscanner", "momondo"} {
		ans := schemas.Answer{TaskID: "req-000123/" + t, Target: t, Item: -1, LatencyMs: 12, Attempts: 1, DurationMs: 10}
		a.Answered = append(a.Answered, ans)
	}
	a.Failed = []schemas.Answer{}
	b.ReportAllocs()
	var n int
	for b.Loop() {
		out, err := schemas.Encode(a)
		if err != nil {
			b.Fatal(err)
		}
		n = len(out)
	}
	b.SetBytes(int64(n))
}
