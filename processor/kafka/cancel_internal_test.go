package kafka

import (
	"context"
	"errors"
	"fmt"
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

// Tasks of one request end one by one: a decision cancels those still
// running, and the request is forgotten once its last task has finished.
func TestDecisionsTrackSeveralTasksOfARequest(t *testing.T) {
	now := time.UnixMilli(1_000_000)
	d := newDecisions(func() time.Time { return now }, time.Second)
	a, doneA := d.track(context.Background(), "r1")
	b, doneB := d.track(context.Background(), "r1")
	c, doneC := d.track(context.Background(), "r1")
	doneB()
	if n := len(d.running["r1"]); n != 2 {
		t.Fatalf("%d running tasks of r1 tracked after one finished, want 2", n)
	}
	if !errors.Is(context.Cause(b), context.Canceled) || errors.Is(context.Cause(b), worker.ErrDecided) {
		t.Errorf("finished task: cause %v, want context.Canceled", context.Cause(b))
	}
	doneA()
	if a.Err() == nil || c.Err() != nil {
		t.Fatalf("after a finished: a %v, c %v; want a ended and c running", a.Err(), c.Err())
	}
	d.decide("r1", now.Add(time.Minute).UnixMilli())
	if !errors.Is(context.Cause(c), worker.ErrDecided) {
		t.Errorf("running task of the decided request: cause %v, want ErrDecided", context.Cause(c))
	}
	doneC()
	if n := len(d.running); n != 0 {
		t.Errorf("%d requests with running tasks tracked after all finished, want 0", n)
	}
	e, doneE := d.track(context.Background(), "r2")
	doneE()
	if e.Err() == nil || len(d.running) != 0 {
		t.Errorf("a task that finished: err %v, %d requests tracked; want ended and none", e.Err(), len(d.running))
	}
}

// BenchmarkDecisionsTrack tracks the three tasks of a request, as a
// worker serving three targets does, and finishes them.
func BenchmarkDecisionsTrack(b *testing.B) {
	d := newDecisions(time.Now, time.Second)
	ids := make([]string, 1024)
	for i := range ids {
		ids[i] = fmt.Sprintf("request-%d", i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		id := ids[i%len(ids)]
		i++
		_, done1 := d.track(context.Background(), id)
		_, done2 := d.track(context.Background(), id)
		_, done3 := d.track(context.Background(), id)
		done2()
		done1()
		done3()
	}
}
