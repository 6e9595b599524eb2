package worker_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/scattergather/scattergather/processor/worker"
	"github.com/scattergather/scattergather/schemas"
)

// saturate keeps l full (in flight = limit) and releases n calls of
// latency rtt one at a time, refilling after each: the worker under more
// tasks than the limit. It returns the lowest and the last limit seen.
func saturate(t *testing.T, l *worker.ConcurrencyLimiter, n int, rtt time.Duration) (lowest, last int) {
	t.Helper()
	lowest = l.Limit()
	for range n {
		for l.InFlight() < l.Limit() {
			if err := l.Acquire(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		l.Release(worker.Sample{RTT: rtt, Measured: true})
		lowest = min(lowest, l.Limit())
	}
	return lowest, l.Limit()
}

// drain releases what saturate left in flight, without samples.
func drain(l *worker.ConcurrencyLimiter) {
	for l.InFlight() > 0 {
		l.Release(worker.Sample{})
	}
}

func TestAdaptiveLimiterStartsAtTheInitialLimit(t *testing.T) {
	for _, tc := range []struct{ floor, ceiling, want int }{
		{floor: 8, ceiling: 1024, want: worker.InitialConcurrency},
		{floor: 32, ceiling: 1024, want: 32},
		{floor: 2, ceiling: 5, want: 5},
		{floor: 9, ceiling: 3, want: 3}, // a floor above the ceiling is the ceiling
		{floor: 0, ceiling: 0, want: 1},
	} {
		if got := worker.NewAdaptiveLimiter(tc.floor, tc.ceiling, nil).Limit(); got != tc.want {
			t.Errorf("floor %d ceiling %d: starts at %d, want %d", tc.floor, tc.ceiling, got, tc.want)
		}
	}
	if got := worker.NewFixedLimiter(64).Limit(); got != 64 {
		t.Errorf("fixed 64: limit %d", got)
	}
}

// TestAdaptiveLimiterGrowsUnderSteadyLatency: while a fully used provider
// answers as fast as ever, the limit grows to the ceiling and stays there;
// every change is told, in order.
func TestAdaptiveLimiterGrowsUnderSteadyLatency(t *testing.T) {
	var told []int
	l := worker.NewAdaptiveLimiter(8, 200, func(limit int) { told = append(told, limit) })
	if _, last := saturate(t, l, 2000, 20*time.Millisecond); last != 200 {
		t.Fatalf("limit %d after 2000 calls of 20ms in full use, want the ceiling 200", last)
	}
	prev := worker.InitialConcurrency
	for _, n := range told {
		if n <= prev {
			t.Fatalf("told %v: not rising under steady latency", told)
		}
		prev = n
	}
	if len(told) == 0 || told[len(told)-1] != 200 {
		t.Fatalf("told %v, want the last to be 200", told)
	}
}

// TestAdaptiveLimiterIdle: a limiter that is not in use (one call at a
// time) keeps its limit: nothing shows it is too small.
func TestAdaptiveLimiterIdle(t *testing.T) {
	l := worker.NewAdaptiveLimiter(8, 1024, nil)
	for range 5000 {
		if err := l.Acquire(t.Context()); err != nil {
			t.Fatal(err)
		}
		l.Release(worker.Sample{RTT: 10 * time.Millisecond, Measured: true})
	}
	if got := l.Limit(); got != worker.InitialConcurrency {
		t.Fatalf("limit %d after 5000 calls one at a time, want it left at %d", got, worker.InitialConcurrency)
	}
}

// TestAdaptiveLimiterShrinksAndRecovers: a provider that turns ten times
// slower brings the limit down to the floor; once it is fast again the
// limit climbs back to the ceiling.
func TestAdaptiveLimiterShrinksAndRecovers(t *testing.T) {
	l := worker.NewAdaptiveLimiter(8, 256, nil)
	if _, last := saturate(t, l, 2000, 10*time.Millisecond); last != 256 {
		t.Fatalf("limit %d before the slowdown, want the ceiling", last)
	}
	if lowest, _ := saturate(t, l, 200, 100*time.Millisecond); lowest != 8 {
		t.Fatalf("lowest limit %d within 200 calls ten times slower, want the floor 8", lowest)
	}
	drain(l)
	if _, last := saturate(t, l, 2000, 10*time.Millisecond); last != 256 {
		t.Fatalf("limit %d after the provider recovered, want the ceiling 256 again", last)
	}
}

// TestAdaptiveLimiterIgnoresUnmeasured: samples of tasks that were not
// called move nothing, however fast they were.
func TestAdaptiveLimiterIgnoresUnmeasured(t *testing.T) {
	l := worker.NewAdaptiveLimiter(8, 256, nil)
	saturate(t, l, 300, 100*time.Millisecond)
	before := l.Limit()
	for range 1000 {
		for l.InFlight() < l.Limit() {
			if err := l.Acquire(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		l.Release(worker.Sample{RTT: time.Microsecond})
	}
	if got := l.Limit(); got != before {
		t.Fatalf("limit %d after unmeasured samples, want %d unchanged", got, before)
	}
}

func TestFixedLimiterDoesNotMove(t *testing.T) {
	l := worker.NewFixedLimiter(16)
	saturate(t, l, 500, time.Millisecond)
	if lowest, last := saturate(t, l, 500, time.Second); lowest != 16 || last != 16 {
		t.Fatalf("fixed limiter moved: lowest %d, last %d", lowest, last)
	}
}

// TestConcurrencyLimiterBlocksAtTheLimit: an Acquire past the limit waits
// until a Release, or until its context ends.
func TestConcurrencyLimiterBlocksAtTheLimit(t *testing.T) {
	for _, limiter := range []func() *worker.ConcurrencyLimiter{
		func() *worker.ConcurrencyLimiter { return worker.NewFixedLimiter(2) },
		func() *worker.ConcurrencyLimiter { return worker.NewAdaptiveLimiter(2, 2, nil) },
	} {
		synctest.Test(t, func(t *testing.T) {
			l := limiter() // in the bubble, so that waiting on it is seen as blocked
			for range 2 {
				if err := l.Acquire(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
			got := make(chan error, 2)
			go func() { got <- l.Acquire(t.Context()) }()
			go func() { got <- l.Acquire(t.Context()) }()
			synctest.Wait()
			if len(got) != 0 {
				t.Fatalf("Acquire past the limit returned %v", <-got)
			}
			l.Release(worker.Sample{})
			synctest.Wait()
			if len(got) != 1 {
				t.Fatalf("%d Acquires returned after one Release, want 1", len(got))
			}
			if err := <-got; err != nil {
				t.Fatalf("Acquire after a Release: %v", err)
			}
			l.Release(worker.Sample{RTT: time.Millisecond, Measured: true})
			synctest.Wait()
			if err := <-got; err != nil {
				t.Fatalf("second Acquire after a second Release: %v", err)
			}
			if n := l.InFlight(); n != 2 {
				t.Fatalf("in flight %d, want 2", n)
			}
		})
	}
}

func TestConcurrencyLimiterAcquireCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := worker.NewAdaptiveLimiter(1, 1, nil)
		if err := l.Acquire(t.Context()); err != nil {
			t.Fatal(err)
		}
		stop := errors.New("stopping")
		ctx, cancel := context.WithCancelCause(t.Context())
		got := make(chan error, 1)
		go func() { got <- l.Acquire(ctx) }()
		synctest.Wait()
		if len(got) != 0 {
			t.Fatal("Acquire past the limit returned")
		}
		cancel(stop)
		synctest.Wait()
		if err := <-got; !errors.Is(err, stop) {
			t.Fatalf("Acquire after its context ended: %v, want the cause", err)
		}
		if n := l.InFlight(); n != 1 {
			t.Fatalf("in flight %d after a cancelled Acquire, want 1", n)
		}
		// An ended context gets no place even when there is room.
		l.Release(worker.Sample{})
		if err := l.Acquire(ctx); !errors.Is(err, stop) || l.InFlight() != 0 {
			t.Fatalf("Acquire with an ended context: %v, %d in flight", err, l.InFlight())
		}
	})
}

// TestExecuteMeasured: the sample of a call is its latency less the waits,
// and a task answered without a call, or cut short by its request's
// decision, is not measured.
func TestExecuteMeasured(t *testing.T) {
	sleepy := func(d time.Duration, err error) worker.Handler {
		return worker.HandlerFunc(func(ctx context.Context, _ *schemas.Task) ([]byte, error) {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return nil, context.Cause(ctx)
			}
			return []byte(`{}`), err
		})
	}
	for _, tc := range []struct {
		name     string
		h        func() worker.Handler
		ctx      func(context.Context) context.Context
		deadline time.Duration
		want     worker.Sample
	}{
		{name: "ok", h: func() worker.Handler { return sleepy(30*time.Millisecond, nil) },
			want: worker.Sample{RTT: 30 * time.Millisecond, Measured: true}},
		{name: "error from the provider", h: func() worker.Handler { return sleepy(40*time.Millisecond, errTransient) },
			want: worker.Sample{RTT: 40 * time.Millisecond, Measured: true}},
		{name: "retries leave out the backoff", h: func() worker.Handler {
			return worker.Chain(sleepy(10*time.Millisecond, errTransient), worker.Retry(2, 100*time.Millisecond, time.Second))
		}, want: worker.Sample{RTT: 30 * time.Millisecond, Measured: true}},
		{name: "rate limit wait left out", h: func() worker.Handler {
			lim := worker.NewRateLimiter(1, 1, nil)
			h := worker.Chain(sleepy(20*time.Millisecond, nil), lim.Middleware())
			h.Handle(context.Background(), task(time.Now().Add(time.Hour))) // takes the burst: the next call waits 1s
			return h
		}, want: worker.Sample{RTT: 20 * time.Millisecond, Measured: true}},
		{name: "rate limited without a call", h: func() worker.Handler {
			lim := worker.NewRateLimiter(0.0001, 1, nil) // the next turn is hours away
			h := worker.Chain(sleepy(20*time.Millisecond, nil), lim.Middleware())
			h.Handle(context.Background(), task(time.Now().Add(time.Hour)))
			return h
		}},
		{name: "circuit open", h: func() worker.Handler {
			br := worker.NewBreaker(1, time.Hour, nil)
			h := worker.Chain(sleepy(20*time.Millisecond, errTransient), br.Middleware())
			h.Handle(context.Background(), task(time.Now().Add(time.Hour))) // opens it
			return h
		}},
		{name: "deadline passed", deadline: -time.Second, h: func() worker.Handler { return sleepy(time.Millisecond, nil) }},
		{name: "decided before the call", h: func() worker.Handler { return sleepy(time.Millisecond, nil) },
			ctx: func(ctx context.Context) context.Context {
				ctx, cancel := context.WithCancelCause(ctx)
				cancel(worker.ErrDecided)
				return ctx
			}},
		{name: "decided in flight", h: func() worker.Handler { return sleepy(time.Hour, nil) },
			ctx: func(ctx context.Context) context.Context {
				ctx, cancel := context.WithCancelCause(ctx)
				time.AfterFunc(5*time.Millisecond, func() { cancel(worker.ErrDecided) })
				return ctx
			}},
		{name: "hangs to the deadline", deadline: 2 * time.Second, h: func() worker.Handler { return sleepy(time.Hour, nil) },
			want: worker.Sample{RTT: 2 * time.Second, Measured: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := tc.h()
				ctx := context.Background()
				if tc.ctx != nil {
					ctx = tc.ctx(ctx)
				}
				deadline := tc.deadline
				if deadline == 0 {
					deadline = time.Hour
				}
				_, got := worker.ExecuteMeasured(ctx, h, task(time.Now().Add(deadline)), "w", time.Now)
				if got != tc.want {
					t.Fatalf("sample %+v, want %+v", got, tc.want)
				}
			})
		})
	}
}

// TestAdaptiveLimiterForgetsASlowSpell: after a long slow spell, the
// long-term latency follows a recovered provider down quickly, so that the
// next slowdown, to half what the spell was, shrinks the limit again.
func TestAdaptiveLimiterForgetsASlowSpell(t *testing.T) {
	l := worker.NewAdaptiveLimiter(8, 256, nil)
	saturate(t, l, 3000, 100*time.Millisecond) // the long-term latency learns 100ms
	drain(l)
	_, recovered := saturate(t, l, 200, 10*time.Millisecond)
	drain(l)
	if lowest, _ := saturate(t, l, 100, 50*time.Millisecond); lowest >= recovered/2 {
		t.Fatalf("limit %d after recovery, lowest %d when the provider slowed to 50ms: want it at least halved", recovered, lowest)
	}
}
