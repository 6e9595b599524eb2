package worker_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scattergather/scattergather/processor/worker"
	"github.com/scattergather/scattergather/schemas"
)

// TestExecuteDecidedBeforeCall: a task whose context ended before it ran
// is answered with the cause, and the provider is not called.
func TestExecuteDecidedBeforeCall(t *testing.T) {
	var calls atomic.Int32
	h := worker.HandlerFunc(func(context.Context, *schemas.Task) ([]byte, error) {
		calls.Add(1)
		return []byte(`{}`), nil
	})
	ctx, cancel := context.WithCancelCause(t.Context())
	cancel(worker.ErrDecided)
	res := worker.Execute(ctx, h, task(time.Now().Add(time.Hour)), "w", time.Now)
	if res.Status != schemas.StatusError || res.Error != "cancelled: request decided" || res.Attempts != 0 || calls.Load() != 0 {
		t.Fatalf("got %s %q after %d attempts and %d calls, want ERROR \"cancelled: request decided\" without a call",
			res.Status, res.Error, res.Attempts, calls.Load())
	}
}

// TestExecuteDecidedInFlight: a call cut short by the decision is
// answered "cancelled: request decided", whatever error the handler made
// of it; a handler that answered anyway keeps its answer.
func TestExecuteDecidedInFlight(t *testing.T) {
	for _, tc := range []struct {
		name     string
		answer   bool
		status   schemas.Status
		errorTxt string
	}{
		{name: "cut short", status: schemas.StatusError, errorTxt: "cancelled: request decided"},
		{name: "answered anyway", answer: true, status: schemas.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancelCause(t.Context())
			started := make(chan struct{})
			h := worker.HandlerFunc(func(ctx context.Context, _ *schemas.Task) ([]byte, error) {
				close(started)
				<-ctx.Done()
				if tc.answer {
					return []byte(`{"late":true}`), nil
				}
				return nil, errors.New("provider call failed: context canceled")
			})
			go func() {
				<-started
				cancel(worker.ErrDecided)
			}()
			res := worker.Execute(ctx, worker.Chain(h, worker.Retry(3, time.Millisecond, time.Millisecond)), task(time.Now().Add(time.Hour)), "w", time.Now)
			if res.Status != tc.status || res.Error != tc.errorTxt || res.Attempts != 1 {
				t.Fatalf("got %s %q after %d attempts, want %s %q after 1", res.Status, res.Error, res.Attempts, tc.status, tc.errorTxt)
			}
		})
	}
}
