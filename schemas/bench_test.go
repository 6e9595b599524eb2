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
