package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/scattergather/scattergather/processor/worker"
	"github.com/scattergather/scattergather/schemas"
)

// BenchmarkExecuteMeasured: one task through ExecuteMeasured with a handler
// that answers at once, under a context its request's decision can cancel,
// as the worker runs it: the cost of the task's contexts and result.
func BenchmarkExecuteMeasured(b *testing.B) {
	h := worker.HandlerFunc(func(context.Context, *schemas.Task) ([]byte, error) {
		return []byte(`{"price":1}`), nil
	})
	tk := task(time.Now().Add(time.Hour))
	b.ReportAllocs()
	for b.Loop() {
		ctx, cancel := context.WithCancelCause(context.Background())
		if res, _ := worker.ExecuteMeasured(ctx, h, tk, "w", time.Now); res.Status != schemas.StatusOK {
			b.Fatalf("status %s: %s", res.Status, res.Error)
		}
		cancel(nil)
	}
}
