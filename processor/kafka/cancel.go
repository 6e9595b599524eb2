package kafka

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scattergather/scattergather/processor/topology"
	"github.com/scattergather/scattergather/processor/worker"
	"github.com/scattergather/scattergather/schemas"
)

// decisions knows which requests of a flow the gather has decided, as the
// flow's aggregated topic says (read_committed), and cancels the contexts
// of the tasks of those requests: the worker learns it from the log the
// gather writes, so it never disagrees with the gather.
//
// It remembers a decided request until its deadline plus the worker's
// deadline grace has passed: later, every task of it is answered ERROR by
// its deadline anyway. Safe for concurrent use.
type decisions struct {
	now   func() time.Time
	grace time.Duration

	mu      sync.Mutex
	decided map[string]int64                      // request id → forget after, Unix ms
	running map[string][]*context.CancelCauseFunc // request id → its running tasks (a few: one a target at most, mostly)
	swept   time.Time
}

func newDecisions(now func() time.Time, grace time.Duration) *decisions {
	return &decisions{now: now, grace: grace, decided: map[string]int64{},
		running: map[string][]*context.CancelCauseFunc{}}
}

// track returns the context a task of request id runs in: it ends with
// cause worker.ErrDecided once the request is decided, at once when it
// already is. Call done when the task has finished.
func (d *decisions) track(ctx context.Context, id string) (_ context.Context, done func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.decided[id]; ok {
		cancel(worker.ErrDecided)
		return ctx, func() {}
	}
	key := &cancel
	d.running[id] = append(d.running[id], key)
	return ctx, func() {
		d.mu.Lock()
		// Not there when the request was decided meanwhile.
		s := d.running[id]
		if i := slices.Index(s, key); i >= 0 {
			if s = slices.Delete(s, i, i+1); len(s) == 0 {
				delete(d.running, id)
			} else {
				d.running[id] = s
			}
		}
		d.mu.Unlock()
		cancel(nil)
	}
}

// decide records that request id is decided, with the request's
// deadline, and cancels its running tasks.
func (d *decisions) decide(id string, deadlineMs int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.decided[id] = deadlineMs + d.grace.Milliseconds()
	for _, c := range d.running[id] {
		(*c)(worker.ErrDecided)
	}
	delete(d.running, id)
	d.sweep()
}

// sweep forgets, at most once a second, the decided requests whose
// tasks are past their deadline. d.mu is held.
func (d *decisions) sweep() {
	now := d.now()
	if now.Sub(d.swept) < time.Second {
		return
	}
	d.swept = now
	ms := now.UnixMilli()
	for id, until := range d.decided {
		if until < ms {
			delete(d.decided, id)
		}
	}
}

// cancelled tells how a task's context ended by its request's decision:
// CancelledBeforeCall when the provider was not called, CancelledInFlight
// when the call was cut short, "" when it was not cancelled.
func cancelled(res *schemas.Result) string {
	if res.Status != schemas.StatusError || res.Error != worker.ErrDecided.Error() {
		return ""
	}
	if res.Attempts == 0 {
		return CancelledBeforeCall
	}
	return CancelledInFlight
}

// Values of HookTaskCancelled's when.
const (
	// CancelledBeforeCall: the task's request was decided before the
	// provider was called; it was not.
	CancelledBeforeCall = "before_call"
	// CancelledInFlight: the call was cut short.
	CancelledInFlight = "in_flight"
)

// remembered returns how many decided requests d remembers.
func (d *decisions) remembered() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.decided)
}

// follow reads the flow's aggregated topic read_committed from the start
// of the open window (now less the flow's limits.max_timeout and deadline
// grace) until ctx ends, and records each aggregate's request as decided.
// Cancelling is an optimisation: when the topic cannot be read (no ACL,
// say), it logs why and the worker calls every task.
func (d *decisions) follow(ctx context.Context, t *topology.Topology, f *topology.Flow, o *options, log *slog.Logger) {
	from := d.now().Add(-f.Limits.MaxTimeout.D - d.grace).UnixMilli()
	cl, err := kgo.NewClient(append(baseOpts(t, o, "worker.decisions"),
		kgo.ConsumeTopics(f.Topics.Aggregated),
		kgo.ConsumeResetOffset(kgo.NewOffset().AfterMilli(from)),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
	)...)
	if err != nil {
		log.Warn("decided requests are not followed: every task is called", "err", err)
		return
	}
	defer cl.Close()
	var warned bool
	for {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if !warned {
				log.Warn("cannot read the aggregated topic: tasks of decided requests are called", "topic", topic, "partition", p, "err", err)
				warned = true
			}
		})
		fetches.EachRecord(func(r *kgo.Record) {
			var a schemas.Aggregate
			if err := o.codec.DecodeInto(r.Value, &a); err != nil || a.RequestID == "" {
				return // not an aggregate: the gather's consumers deal with it
			}
			d.decide(a.RequestID, a.DeadlineMs)
		})
		n := d.remembered()
		each(o.hooks, func(h HookDecidedRequests) { h.OnDecidedRequests(f.Name, n) })
	}
}
