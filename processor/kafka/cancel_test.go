package kafka_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scattergather/scattergather/internal/processortest"
	"github.com/scattergather/scattergather/processor/kafka"
	"github.com/scattergather/scattergather/processor/worker"
	"github.com/scattergather/scattergather/schemas"
)

// cancelHook records the worker's cancellations and the decided requests
// it remembers.
type cancelHook struct {
	mu        sync.Mutex
	when      map[string]int
	remembers atomic.Int64
}

func (h *cancelHook) OnTaskCancelled(_, target, when string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.when[target+"/"+when]++
}

func (h *cancelHook) OnDecidedRequests(_ string, n int) { h.remembers.Store(int64(n)) }

func (h *cancelHook) count(key string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.when[key]
}

// runCancelDecided: with strategy first, the slow target's task in flight
// is cut short once the fast target decided its request, and its queued
// tasks are answered without a call; each still gets an ERROR result,
// which reaches the gather after the aggregate, as late.
func runCancelDecided(t *testing.T, brokers []string) {
	topo, f := processortest.Topology(t, brokers, `
timeout: 60s
targets: [{name: fast}, {name: slow, max_in_flight: 1}]
strategy: {type: first}
consolidate: {type: min, field: price}
`)
	processortest.CreateTopics(t, topo, f)
	var calls atomic.Int32
	cutShort := make(chan error, 1)
	release := make(chan struct{})
	// The first call hangs until its request is decided, then holds the
	// target's only slot until released, so that the other tasks wait.
	slow := worker.HandlerFunc(func(ctx context.Context, _ *schemas.Task) ([]byte, error) {
		if calls.Add(1) == 1 {
			<-ctx.Done()
			cutShort <- context.Cause(ctx)
			<-release
		}
		return nil, errors.New("provider call failed: " + ctx.Err().Error())
	})
	hook := &cancelHook{when: map[string]int{}}
	runners, err := kafka.Roles(topo, topo.Flows, kafka.RoleAll, t.TempDir(), kafka.WithHooks(hook),
		kafka.WithHandler("fast", answer(10)), kafka.WithHandler("slow", slow))
	if err != nil {
		t.Fatal(err)
	}
	processortest.Start(t, runners...)
	const n = 8
	processortest.Send(t, topo, requests(f.Name, n)...)
	for id, a := range processortest.Aggregates(t, topo, f, n, 2*time.Minute) {
		if a.Outcome != schemas.OutcomeFirst || names(a.Answered) != "fast" || refs(a.Missing) != "slow" {
			t.Errorf("%s: outcome %s answered %q missing %q, want first by fast, slow missing", id, a.Outcome, names(a.Answered), refs(a.Missing))
		}
	}
	if cause := <-cutShort; !errors.Is(cause, worker.ErrDecided) {
		t.Errorf("the call in flight ended with %v, want its request decided", cause)
	}
	processortest.Eventually(t, time.Minute, "the worker to know every request decided", func() bool { return hook.remembers.Load() >= n })
	close(release)
	late := processortest.Records(t, topo, f.Topics.Late, n, time.Minute)
	for _, r := range late {
		var res schemas.Result
		if err := schemas.DecodeInto(r.Value, &res); err != nil {
			t.Fatalf("late record: %v", err)
		}
		if reason := kafka.Header(r, schemas.HeaderReason); res.Target != "slow" || res.Status != schemas.StatusError ||
			res.Error != "cancelled: request decided" || reason != "request already completed" {
			t.Errorf("late %s: %s %q, reason %q; want slow's ERROR \"cancelled: request decided\", request already completed",
				res.TaskID, res.Status, res.Error, reason)
		}
	}
	if got := calls.Load(); got != 1 {
		t.Errorf("slow called %d times for %d requests decided without it, want 1 (the call in flight)", got, n)
	}
	processortest.Eventually(t, time.Minute, "the cancellations counted", func() bool {
		return hook.count("slow/"+kafka.CancelledInFlight) == 1 && hook.count("slow/"+kafka.CancelledBeforeCall) == n-1
	})
}

func TestCancelDecidedFake(t *testing.T) { runCancelDecided(t, processortest.Fake(t)) }

func TestIntegrationCancelDecided(t *testing.T) { runCancelDecided(t, processortest.Brokers(t)) }
