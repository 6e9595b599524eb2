package worker_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/scattergather/scattergather/processor/topology"
	"github.com/scattergather/scattergather/processor/worker"
	"github.com/scattergather/scattergather/schemas"
)

// TestRateLimiterSpacesCalls: after a burst, calls start one per
// 1/per_second, in order, and a share scales the rate.
func TestRateLimiterSpacesCalls(t *testing.T) {
	for _, tc := range []struct {
		share float64
		want  []time.Duration
	}{
		{share: 1, want: []time.Duration{0, 0, 100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond}},
		{share: 0.5, want: []time.Duration{0, 200 * time.Millisecond, 400 * time.Millisecond, 600 * time.Millisecond, 800 * time.Millisecond}},
	} {
		t.Run(fmt.Sprint(tc.share), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				lim := worker.NewRateLimiter(10, 2, nil)
				lim.SetShare(tc.share)
				start := time.Now()
				var mu sync.Mutex
				var got []time.Duration
				h := lim.Middleware()(worker.HandlerFunc(func(context.Context, *schemas.Task) ([]byte, error) {
					mu.Lock()
					defer mu.Unlock()
					got = append(got, time.Since(start))
					return nil, nil
				}))
				var calls sync.WaitGroup
				for range tc.want {
					// One after the other, so that the turns are handed
					// out in a known order.
					calls.Go(func() { h.Handle(t.Context(), task(start.Add(time.Hour))) })
					synctest.Wait()
				}
				calls.Wait() // the fake clock runs until every turn came
				if fmt.Sprint(got) != fmt.Sprint(tc.want) {
					t.Errorf("calls started at %v, want %v", got, tc.want)
				}
			})
		})
	}
}

// TestRateLimiterRefusesPastTheDeadline: a task whose turn would come
// after its deadline is answered ERROR "rate limited" at once, with no
// call.
func TestRateLimiterRefusesPastTheDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var events []worker.RateLimitEvent
		lim := worker.NewRateLimiter(1, 1, func(ev worker.RateLimitEvent) { events = append(events, ev) })
		calls := 0
		h := worker.Chain(worker.HandlerFunc(func(context.Context, *schemas.Task) ([]byte, error) {
			calls++
			return []byte(`{}`), nil
		}), lim.Middleware())
		start := time.Now()
		first := worker.Execute(t.Context(), h, task(start.Add(500*time.Millisecond)), "w", time.Now)
		second := worker.Execute(t.Context(), h, task(start.Add(500*time.Millisecond)), "w", time.Now)
		if first.Status != schemas.StatusOK || calls != 1 {
			t.Fatalf("first task: %s %q, %d calls", first.Status, first.Error, calls)
		}
		if second.Status != schemas.StatusError || !strings.HasPrefix(second.Error, "rate limited") || second.Attempts != 0 || time.Since(start) != 0 {
			t.Errorf("second task: %s %q after %d attempts and %s, want ERROR \"rate limited…\" at once without a call",
				second.Status, second.Error, second.Attempts, time.Since(start))
		}
		if fmt.Sprint(events) != "[refused]" {
			t.Errorf("events %v, want [refused]", events)
		}
		// A later deadline waits for the turn: refusing took no token.
		third := worker.Execute(t.Context(), h, task(start.Add(5*time.Second)), "w", time.Now)
		if third.Status != schemas.StatusOK || time.Since(start) != time.Second {
			t.Errorf("third task: %s %q after %s, want OK after 1s", third.Status, third.Error, time.Since(start))
		}
	})
}

// TestRateLimiterHonoursRetryAfter: a provider's Retry-After holds every
// call of the target, and Retry waits for it before trying again.
func TestRateLimiterHonoursRetryAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lim := worker.NewRateLimiter(1000, 10, nil)
		start := time.Now()
		var mu sync.Mutex
		var at []time.Duration
		h := worker.Chain(worker.HandlerFunc(func(context.Context, *schemas.Task) ([]byte, error) {
			mu.Lock()
			defer mu.Unlock()
			at = append(at, time.Since(start))
			if len(at) == 1 {
				return nil, &worker.RetryAfterError{Err: errors.New("provider answered 429 Too Many Requests"), After: 3 * time.Second}
			}
			return []byte(`{}`), nil
		}), worker.Retry(1, 10*time.Millisecond, time.Second), lim.Middleware())
		res := worker.Execute(t.Context(), h, task(start.Add(time.Minute)), "w", time.Now)
		other := worker.Execute(t.Context(), h, task(start.Add(time.Minute)), "w", time.Now)
		if res.Status != schemas.StatusOK || res.Attempts != 2 || other.Status != schemas.StatusOK {
			t.Fatalf("got %s %q after %d attempts, other %s", res.Status, res.Error, res.Attempts, other.Status)
		}
		if want := "[0s 3s 3s]"; fmt.Sprint(at) != want {
			t.Errorf("calls at %v, want %s", at, want)
		}
		// A pause past the deadline: Retry gives up at once.
		lim.Pause(0)
		h2 := worker.Chain(worker.HandlerFunc(func(context.Context, *schemas.Task) ([]byte, error) {
			return nil, &worker.RetryAfterError{Err: errors.New("provider answered 429 Too Many Requests"), After: time.Hour}
		}), worker.Retry(3, 10*time.Millisecond, time.Second))
		before := time.Now()
		res = worker.Execute(t.Context(), h2, task(before.Add(time.Minute)), "w", time.Now)
		if res.Status != schemas.StatusError || res.Attempts != 1 || time.Since(before) != 0 {
			t.Errorf("retry after past the deadline: %s after %d attempts and %s, want ERROR at once after 1", res.Status, res.Attempts, time.Since(before))
		}
	})
}

// TestHTTPCallerRetryAfter: a 429 or 503 with Retry-After (seconds or a
// date) is a RetryAfterError; without the header, a plain error.
func TestHTTPCallerRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		status int
		header string
		want   time.Duration
		ok     bool
	}{
		{status: 429, header: "2", want: 2 * time.Second, ok: true},
		{status: 503, header: "1", want: time.Second, ok: true},
		{status: 429, header: time.Now().Add(time.Hour).UTC().Format(http.TimeFormat), want: time.Hour, ok: true},
		{status: 429, header: "", ok: false},
		{status: 429, header: "soon", ok: false},
		{status: 500, header: "2", ok: false},
	} {
		p := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			if tc.header != "" {
				w.Header().Set("Retry-After", tc.header)
			}
			w.WriteHeader(tc.status)
		}))
		cfg := &topology.HTTPTarget{URL: p.URL, Method: "POST", MaxResponseBytes: 1 << 20}
		_, err := worker.NewHTTPCaller(cfg, p.Client()).Handle(t.Context(), task(time.Now().Add(time.Hour)))
		p.Close()
		ra, ok := errors.AsType[*worker.RetryAfterError](err)
		if ok != tc.ok || ok && (ra.After > tc.want || ra.After < tc.want-2*time.Second) {
			t.Errorf("%d Retry-After %q: %v (retry after: %v), want %v %s", tc.status, tc.header, err, ok, tc.ok, tc.want)
		}
	}
}

// A task waiting for its turn under the rate limit gives its place under
// the concurrency limit back while it waits, and takes one again to call.
func TestRateLimitWaitStepsAsideFromTheConcurrencyLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		conc := worker.NewFixedLimiter(1)
		var calls atomic.Int32
		h := worker.NewRateLimiter(1, 1, nil).Middleware()(worker.HandlerFunc(func(context.Context, *schemas.Task) ([]byte, error) {
			calls.Add(1)
			return []byte("{}"), nil
		}))
		run := func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := conc.Acquire(ctx); err != nil {
				return err
			}
			slot := worker.NewSlot(conc)
			defer slot.Release(worker.Sample{})
			_, err := h.Handle(worker.WithSlot(ctx, slot), &schemas.Task{})
			return err
		}
		if err := run(); err != nil { // the burst's call, at once
			t.Fatal(err)
		}
		errs := make(chan error, 1)
		go func() { errs <- run() }()
		synctest.Wait() // the second call waits for its turn, a second away
		if n := conc.InFlight(); n != 0 {
			t.Errorf("%d places held while the only task waits for its turn, want 0", n)
		}
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		if n := calls.Load(); n != 2 {
			t.Errorf("%d calls, want 2", n)
		}
		if n := conc.InFlight(); n != 0 {
			t.Errorf("%d places held after both tasks, want 0", n)
		}
	})
}

// A turn that leaves the call less than half the time the task has left
// is refused at once: waited for, the answer would come too late.
func TestRateLimitRefusesATurnTooCloseToTheDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := worker.NewRateLimiter(1, 1, nil).Middleware()(worker.HandlerFunc(func(context.Context, *schemas.Task) ([]byte, error) {
			return []byte("{}"), nil
		}))
		call := func(left time.Duration) error {
			ctx, cancel := context.WithTimeout(context.Background(), left)
			defer cancel()
			_, err := h.Handle(ctx, &schemas.Task{})
			return err
		}
		if err := call(1500 * time.Millisecond); err != nil { // the burst's turn, now
			t.Fatal(err)
		}
		start := time.Now()
		// The next turn is a second away: after 0.75 s, half of 1.5 s.
		if err := call(1500 * time.Millisecond); !errors.Is(err, worker.ErrRateLimited) {
			t.Fatalf("err %v, want ErrRateLimited", err)
		}
		if waited := time.Since(start); waited != 0 {
			t.Errorf("refused after %s, want at once", waited)
		}
		// With 3 s left, a turn a second away is worth the wait.
		if err := call(3 * time.Second); err != nil {
			t.Fatal(err)
		}
	})
}
