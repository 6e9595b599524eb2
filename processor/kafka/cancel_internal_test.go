package kafka

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/scattergather/scattergather/processor/worker"
)

func TestDecisionsCancelRunningAndLaterTasks(t *testing.T) {
	now := time.UnixMilli(1_000_000)
	d := newDecisions(func() time.Time { return now }, time.Second)
	a, doneA := d.track(context.Background(), "r1")
	other, doneOther := d.track(context.Background(), "r2")
	defer doneOther()
	if a.Err() != nil {
		t.Fatal("a task of an undecided request is cancelled")
	}
	d.decide("r1", now.Add(time.Minute).UnixMilli())
	if !errors.Is(context.Cause(a), worker.ErrDecided) {
		t.Errorf("running task of the decided request: cause %v, want ErrDecided", context.Cause(a))
	}
	if other.Err() != nil {
		t.Error("a task of another request was cancelled")
	}
	doneA()
	b, doneB := d.track(context.Background(), "r1")
	defer doneB()
	if !errors.Is(context.Cause(b), worker.ErrDecided) {
		t.Errorf("task started after the decision: cause %v, want ErrDecided", context.Cause(b))
	}
	if n := len(d.running); n != 1 {
		t.Errorf("%d requests with running tasks tracked, want 1 (r2)", n)
	}
}

// TestDecisionsForgetPastTheirDeadline: a decided request is remembered
// until its deadline and the grace have passed, no longer.
func TestDecisionsForgetPastTheirDeadline(t *testing.T) {
	now := time.UnixMilli(1_000_000)
	d := newDecisions(func() time.Time { return now }, time.Second)
	d.decide("old", now.Add(time.Second).UnixMilli())
	d.decide("new", now.Add(time.Hour).UnixMilli())
	now = now.Add(2 * time.Second) // old's deadline+grace not yet passed
	d.decide("x", now.Add(time.Hour).UnixMilli())
	if d.remembered() != 3 {
		t.Fatalf("remembered %d, want 3", d.remembered())
	}
	now = now.Add(1 * time.Second)
	d.decide("y", now.Add(time.Hour).UnixMilli())
	if _, ok := d.decided["old"]; ok || d.remembered() != 3 {
		t.Errorf("remembered %d (old kept %v), want old forgotten and 3 left", d.remembered(), ok)
	}
}
