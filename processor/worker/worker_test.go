package worker_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
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

func task(deadline time.Time) *schemas.Task {
	return &schemas.Task{RequestID: "r1", Flow: "f", TaskID: "r1/a/2", Target: "a", Item: 2, Payload: []byte(`{"q":1}`),
		ContentType: schemas.ContentTypeJSON, ResultsPartition: 1, DeadlineMs: deadline.UnixMilli()}
}

// clock returns base, then base+step, base+2*step... at each call.
func clock(base time.Time, step time.Duration) func() time.Time {
	var n atomic.Int64
	return func() time.Time { return base.Add(time.Duration(n.Add(1)-1) * step) }
}

var errTransient = errors.New("transient")

func TestExecute(t *testing.T) {
	base := time.Now().Truncate(time.Millisecond)
	for _, tc := range []struct {
		name      string
		handler   func(calls *atomic.Int32) worker.Handler
		deadline  time.Time
		status    schemas.Status
		payload   string
		errPrefix string
		attempts  int32
		calls     int32
		duration  int64
	}{
		{"ok", func(c *atomic.Int32) worker.Handler {
			return worker.HandlerFunc(func(context.Context, *schemas.Task) ([]byte, error) { c.Add(1); return []byte(`{"ok":true}`), nil })
		}, base.Add(time.Hour), schemas.StatusOK, `{"ok":true}`, "", 1, 1, 7},
		{"ok without payload", func(c *atomic.Int32) worker.Handler {
			return worker.HandlerFunc(func(context.Context, *schemas.Task) ([]byte, error) { c.Add(1); return nil, nil })
		}, base.Add(time.Hour), schemas.StatusOK, ``, "", 1, 1, 7},
		{"handler error", func(c *atomic.Int32) worker.Handler {
			return worker.HandlerFunc(func(context.Context, *schemas.Task) ([]byte, error) {
				c.Add(1)
				return []byte("ignored"), errors.New("provider says no")
			})
		}, base.Add(time.Hour), schemas.StatusError, "", "provider says no", 1, 1, 7},
		{"deadline passed", func(c *atomic.Int32) worker.Handler {
			return worker.HandlerFunc(func(context.Context, *schemas.Task) ([]byte, error) { c.Add(1); return nil, nil })
		}, base.Add(-time.Second), schemas.StatusError, "", "worker: task deadline passed: deadline ", 0, 0, 0},
		{"deadline is now", func(c *atomic.Int32) worker.Handler {
			return worker.HandlerFunc(func(context.Context, *schemas.Task) ([]byte, error) { c.Add(1); return nil, nil })
		}, base, schemas.StatusError, "", "worker: task deadline passed", 0, 0, 0},
		{"panic", func(c *atomic.Int32) worker.Handler {
			return worker.HandlerFunc(func(context.Context, *schemas.Task) ([]byte, error) { c.Add(1); panic("boom") })
		}, base.Add(time.Hour), schemas.StatusError, "", "worker: handler panicked: boom", 1, 1, 7},
		{"attempts counted by Retry", func(c *atomic.Int32) worker.Handler {
			return worker.Chain(worker.HandlerFunc(func(context.Context, *schemas.Task) ([]byte, error) {
				if c.Add(1) < 3 {
					return nil, errTransient
				}
				return []byte(`3`), nil
			}), worker.Retry(5, 0, 0))
		}, base.Add(time.Hour), schemas.StatusOK, `3`, "", 3, 3, 7},
		{"attempts of a failure", func(c *atomic.Int32) worker.Handler {
			return worker.Chain(worker.HandlerFunc(func(context.Context, *schemas.Task) ([]byte, error) { c.Add(1); return nil, errTransient }), worker.Retry(2, 0, 0))
		}, base.Add(time.Hour), schemas.StatusError, "", "transient", 3, 3, 7},
		{"long error truncated", func(c *atomic.Int32) worker.Handler {
			return worker.HandlerFunc(func(context.Context, *schemas.Task) ([]byte, error) {
				c.Add(1)
				return nil, errors.New(strings.Repeat("e", 3000))
			})
		}, base.Add(time.Hour), schemas.StatusError, "", strings.Repeat("e", worker.MaxErrorBytes) + "…", 1, 1, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			tk := task(tc.deadline)
			res := worker.Execute(context.Background(), tc.handler(&calls), tk, "w1", clock(base, 7*time.Millisecond))
			if res == nil {
				t.Fatal("nil result")
			}
			if res.RequestID != "r1" || res.Flow != "f" || res.TaskID != "r1/a/2" || res.Target != "a" || res.Item != 2 ||
				res.Worker != "w1" || res.ContentType != schemas.ContentTypeJSON || res.Payload == nil {
				t.Errorf("result fields %+v", res)
			}
			if res.Status != tc.status || string(res.Payload) != tc.payload || !strings.HasPrefix(res.Error, tc.errPrefix) ||
				(tc.errPrefix == "" && res.Error != "") {
				t.Errorf("status %s payload %q error %q, want %s %q %q", res.Status, res.Payload, res.Error, tc.status, tc.payload, tc.errPrefix)
			}
			if res.Attempts != tc.attempts || calls.Load() != tc.calls || res.DurationMs != tc.duration {
				t.Errorf("attempts %d calls %d duration %d, want %d %d %d", res.Attempts, calls.Load(), res.DurationMs, tc.attempts, tc.calls, tc.duration)
			}
			if tc.status == schemas.StatusError && len(res.Error) > worker.MaxErrorBytes+len("…") {
				t.Errorf("error of %d bytes", len(res.Error))
			}
		})
	}
}

func TestExecuteHandlerSeesTheDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		deadline := time.Now().Add(2 * time.Second)
		var seen time.Time
		h := worker.HandlerFunc(func(ctx context.Context, _ *schemas.Task) ([]byte, error) {
			seen, _ = ctx.Deadline()
			<-ctx.Done() // a provider that hangs
			return nil, ctx.Err()
		})
		start := time.Now()
		res := worker.Execute(t.Context(), h, task(deadline), "w", time.Now)
		if res.Status != schemas.StatusError || res.Error != "context deadline exceeded (task deadline passed)" {
			t.Errorf("status %s error %q", res.Status, res.Error)
		}
		if !seen.Equal(time.UnixMilli(deadline.UnixMilli())) || time.Since(start) != 2*time.Second || res.DurationMs != 2000 {
			t.Errorf("handler deadline %v, returned after %s, duration %d", seen, time.Since(start), res.DurationMs)
		}
	})
}

func TestRetry(t *testing.T) {
	for _, tc := range []struct {
		name        string
		retries     int
		failures    int   // calls that fail before one succeeds; -1 always
		err         error // the failure
		ctxTimeout  time.Duration
		wantCalls   []time.Duration // when each call started
		wantErr     string
		wantPayload string
	}{
		{"no retries", 0, -1, errTransient, 0, []time.Duration{0}, "transient", ""},
		{"backoff doubles up to the max", 4, -1, errTransient, 0, []time.Duration{0, 100 * time.Millisecond, 300 * time.Millisecond, 550 * time.Millisecond, 800 * time.Millisecond}, "transient", ""},
		{"succeeds on the third call", 4, 2, errTransient, 0, []time.Duration{0, 100 * time.Millisecond, 300 * time.Millisecond}, "", "done"},
		{"permanent is not retried", 4, -1, worker.Permanent(errTransient), 0, []time.Duration{0}, "transient", ""},
		{"wrapped permanent is not retried", 4, -1, fmt.Errorf("call: %w", worker.Permanent(errTransient)), 0, []time.Duration{0}, "call: transient", ""},
		{"open circuit is not retried", 4, -1, worker.ErrCircuitOpen, 0, []time.Duration{0}, "worker: circuit open", ""},
		{"context ends during the backoff", 4, -1, errTransient, 150 * time.Millisecond, []time.Duration{0, 100 * time.Millisecond}, "transient (gave up retrying: context deadline exceeded)", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				var calls []time.Duration
				h := worker.Chain(worker.HandlerFunc(func(ctx context.Context, _ *schemas.Task) ([]byte, error) {
					calls = append(calls, time.Since(start))
					if tc.failures < 0 || len(calls) <= tc.failures {
						return nil, tc.err
					}
					return []byte("done"), nil
				}), worker.Retry(tc.retries, 100*time.Millisecond, 250*time.Millisecond))
				ctx := t.Context()
				if tc.ctxTimeout > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, tc.ctxTimeout)
					defer cancel()
				}
				out, err := h.Handle(ctx, task(start.Add(time.Hour)))
				if fmt.Sprint(calls) != fmt.Sprint(tc.wantCalls) {
					t.Errorf("calls at %v, want %v", calls, tc.wantCalls)
				}
				if tc.wantErr == "" {
					if err != nil || string(out) != tc.wantPayload {
						t.Errorf("out %q err %v", out, err)
					}
					return
				}
				if err == nil || err.Error() != tc.wantErr {
					t.Errorf("error %v, want %s", err, tc.wantErr)
				}
				if !errors.Is(err, errors.Unwrap(tc.err)) && !errors.Is(err, tc.err) {
					t.Errorf("error %v does not wrap %v", err, tc.err)
				}
			})
		})
	}
	if worker.Permanent(nil) != nil {
		t.Error("Permanent(nil) is not nil")
	}
}

func TestTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hang := worker.HandlerFunc(func(ctx context.Context, _ *schemas.Task) ([]byte, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		})
		start := time.Now()
		_, err := worker.Timeout(time.Second)(hang).Handle(t.Context(), task(start.Add(time.Hour)))
		if err == nil || err.Error() != "context deadline exceeded: worker: call timed out after 1s" || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("error %v", err)
		}
		if time.Since(start) != time.Second {
			t.Errorf("cut after %s", time.Since(start))
		}

		// A parent deadline earlier than the timeout keeps its own cause.
		parent, cancel := context.WithTimeoutCause(t.Context(), 300*time.Millisecond, worker.ErrDeadline)
		defer cancel()
		_, err = worker.Timeout(time.Second)(hang).Handle(parent, task(start.Add(time.Hour)))
		if !errors.Is(err, worker.ErrDeadline) || strings.Contains(err.Error(), "timed out") {
			t.Errorf("error %v", err)
		}

		// An error before the timeout is left alone.
		quick := worker.HandlerFunc(func(context.Context, *schemas.Task) ([]byte, error) { return nil, errTransient })
		if _, err := worker.Timeout(time.Second)(quick).Handle(t.Context(), nil); err != errTransient {
			t.Errorf("error %v", err)
		}
	})
}

func TestBreaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var (
			evMu   sync.Mutex
			events []string
		)
		record := func(e worker.BreakerEvent) {
			evMu.Lock()
			events = append(events, e.String())
			evMu.Unlock()
		}
		b := worker.NewBreaker(3, 10*time.Second, record)
		var calls int
		var fail atomic.Bool
		release := make(chan struct{})
		var block atomic.Bool
		h := b.Middleware()(worker.HandlerFunc(func(context.Context, *schemas.Task) ([]byte, error) {
			calls++
			if block.Load() {
				<-release
			}
			if fail.Load() {
				return nil, errTransient
			}
			return []byte("ok"), nil
		}))
		call := func() error { _, err := h.Handle(t.Context(), nil); return err }

		// A success resets the count of consecutive failures.
		fail.Store(true)
		call()
		call()
		fail.Store(false)
		call()
		fail.Store(true)
		call()
		call()
		if calls != 5 {
			t.Fatalf("calls %d", calls)
		}
		// The third consecutive failure opens it.
		if err := call(); !errors.Is(err, errTransient) {
			t.Fatalf("third failure: %v", err)
		}
		for range 3 {
			if err := call(); !errors.Is(err, worker.ErrCircuitOpen) {
				t.Fatalf("open breaker: %v", err)
			}
		}
		if calls != 6 {
			t.Fatalf("an open breaker called the provider: %d calls", calls)
		}
		advance(10*time.Second - time.Millisecond)
		if err := call(); !errors.Is(err, worker.ErrCircuitOpen) || calls != 6 {
			t.Fatalf("before the cooldown: %v", err)
		}
		advance(time.Millisecond)

		// Half-open: one probe goes through, others are rejected meanwhile.
		block.Store(true)
		probeErr := make(chan error)
		go func() { probeErr <- call() }()
		synctest.Wait()
		if err := call(); !errors.Is(err, worker.ErrCircuitOpen) {
			t.Fatalf("second call while probing: %v", err)
		}
		close(release)
		if err := <-probeErr; !errors.Is(err, errTransient) {
			t.Fatalf("probe: %v", err)
		}
		block.Store(false)
		// The failed probe opens it for another cooldown.
		if err := call(); !errors.Is(err, worker.ErrCircuitOpen) || calls != 7 {
			t.Fatalf("after a failed probe: %v (%d calls)", err, calls)
		}
		advance(10 * time.Second)
		fail.Store(false)
		if err := call(); err != nil {
			t.Fatalf("successful probe: %v", err)
		}
		// Closed again: failures count from zero.
		fail.Store(true)
		call()
		call()
		fail.Store(false)
		if err := call(); err != nil || calls != 11 {
			t.Fatalf("closed breaker: %v (%d calls)", err, calls)
		}
		// Told once when it opened and once when it closed, and of each
		// refused call.
		want := "opened rejected rejected rejected rejected rejected rejected closed"
		if got := strings.Join(events, " "); got != want {
			t.Errorf("events %q, want %q", got, want)
		}
	})
}

// A probe that panics must not leave the breaker half-open for ever.
func TestBreakerProbePanics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := worker.NewBreaker(1, time.Second, nil)
		var panics atomic.Bool
		inner := b.Middleware()(worker.HandlerFunc(func(context.Context, *schemas.Task) ([]byte, error) {
			if panics.Load() {
				panic("boom")
			}
			return nil, errTransient
		}))
		h := worker.Chain(inner, worker.Recover())
		call := func() error { _, err := h.Handle(t.Context(), nil); return err }
		call() // opens
		advance(time.Second)
		panics.Store(true)
		if err := call(); !errors.Is(err, worker.ErrPanic) {
			t.Fatalf("probe: %v", err)
		}
		panics.Store(false)
		if err := call(); !errors.Is(err, worker.ErrCircuitOpen) {
			t.Fatalf("right after a panicking probe: %v", err)
		}
		advance(time.Second)
		if err := call(); !errors.Is(err, errTransient) {
			t.Fatalf("a cooldown after a panicking probe the breaker lets a probe through; got %v", err)
		}
	})
}

func TestBreakerDisabled(t *testing.T) {
	var calls int
	h := worker.NewBreaker(0, time.Second, nil).Middleware()(worker.HandlerFunc(func(context.Context, *schemas.Task) ([]byte, error) {
		calls++
		return nil, errTransient
	}))
	for range 20 {
		if _, err := h.Handle(context.Background(), nil); !errors.Is(err, errTransient) {
			t.Fatal(err)
		}
	}
	if calls != 20 {
		t.Errorf("calls %d", calls)
	}
}

func TestChainOrder(t *testing.T) {
	var trace []string
	mw := func(name string) worker.Middleware {
		return func(next worker.Handler) worker.Handler {
			return worker.HandlerFunc(func(ctx context.Context, tk *schemas.Task) ([]byte, error) {
				trace = append(trace, name+">")
				out, err := next.Handle(ctx, tk)
				trace = append(trace, "<"+name)
				return out, err
			})
		}
	}
	h := worker.Chain(worker.HandlerFunc(func(context.Context, *schemas.Task) ([]byte, error) {
		trace = append(trace, "h")
		return nil, nil
	}), mw("1"), mw("2"), mw("3"))
	h.Handle(context.Background(), nil)
	if got := strings.Join(trace, " "); got != "1> 2> 3> h <3 <2 <1" {
		t.Errorf("order %s", got)
	}
}

func TestTracker(t *testing.T) {
	tp := worker.TopicPartition{Topic: "f.tasks.a", Partition: 0}
	tp2 := worker.TopicPartition{Topic: "f.tasks.a", Partition: 1}
	tr := worker.NewTracker()
	if len(tr.Committable()) != 0 || tr.InFlight() != 0 {
		t.Fatal("a new tracker is not empty")
	}
	type op struct {
		start  bool
		tp     worker.TopicPartition
		offset int64
	}
	for i, s := range []struct {
		op       op
		want     map[worker.TopicPartition]int64
		inFlight int
	}{
		{op{true, tp, 10}, map[worker.TopicPartition]int64{tp: 10}, 1},
		{op{true, tp, 11}, map[worker.TopicPartition]int64{tp: 10}, 2},
		{op{true, tp, 14}, map[worker.TopicPartition]int64{tp: 10}, 3}, // offsets 12, 13 were not tasks
		{op{true, tp2, 3}, map[worker.TopicPartition]int64{tp: 10, tp2: 3}, 4},
		{op{false, tp, 11}, map[worker.TopicPartition]int64{tp: 10, tp2: 3}, 3}, // finished out of order: 10 still holds
		{op{false, tp, 11}, map[worker.TopicPartition]int64{tp: 10, tp2: 3}, 3}, // twice: nothing
		{op{false, tp, 99}, map[worker.TopicPartition]int64{tp: 10, tp2: 3}, 3}, // unknown offset
		{op{false, worker.TopicPartition{Topic: "x"}, 1}, map[worker.TopicPartition]int64{tp: 10, tp2: 3}, 3},
		{op{false, tp, 10}, map[worker.TopicPartition]int64{tp: 14, tp2: 3}, 2},
		{op{false, tp2, 3}, map[worker.TopicPartition]int64{tp: 14, tp2: 4}, 1},
		{op{false, tp, 14}, map[worker.TopicPartition]int64{tp: 15, tp2: 4}, 0},
	} {
		if s.op.start {
			tr.Start(s.op.tp, s.op.offset)
		} else {
			tr.Finish(s.op.tp, s.op.offset)
		}
		if got := tr.Committable(); fmt.Sprint(got) != fmt.Sprint(s.want) || tr.InFlight() != s.inFlight {
			t.Errorf("step %d %+v: committable %v in flight %d, want %v %d", i, s.op, got, tr.InFlight(), s.want, s.inFlight)
		}
	}
	tr.Start(tp, 20)
	tr.Forget(tp, worker.TopicPartition{Topic: "never"})
	if got := tr.Committable(); fmt.Sprint(got) != fmt.Sprint(map[worker.TopicPartition]int64{tp2: 4}) || tr.InFlight() != 0 {
		t.Errorf("after Forget: %v in flight %d", got, tr.InFlight())
	}
	// After Forget a partition starts afresh.
	tr.Start(tp, 30)
	if got := tr.Committable()[tp]; got != 30 {
		t.Errorf("after Forget and Start: %d", got)
	}
}

func TestTrackerConcurrent(t *testing.T) {
	tr := worker.NewTracker()
	var wg sync.WaitGroup
	for p := range int32(4) {
		tp := worker.TopicPartition{Topic: "t", Partition: p}
		done := make(chan int64, 100)
		wg.Go(func() {
			for off := range int64(100) {
				tr.Start(tp, off)
				done <- off
			}
			close(done)
		})
		wg.Go(func() {
			for off := range done {
				tr.Finish(tp, off)
			}
		})
	}
	wg.Wait()
	for tp, off := range tr.Committable() {
		if off != 100 {
			t.Errorf("%v: %d", tp, off)
		}
	}
	if tr.InFlight() != 0 {
		t.Errorf("in flight %d", tr.InFlight())
	}
}

// provider is an httptest server whose behaviour each test sets.
type provider struct {
	*httptest.Server
	hits    atomic.Int32
	mu      sync.Mutex
	last    *http.Request
	body    string
	respond func(w http.ResponseWriter, r *http.Request, hit int32)
}

func newProvider(t *testing.T, respond func(w http.ResponseWriter, r *http.Request, hit int32)) *provider {
	p := &provider{respond: respond}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := p.hits.Add(1)
		b, _ := io.ReadAll(r.Body)
		p.mu.Lock()
		p.last, p.body = r, string(b)
		p.mu.Unlock()
		p.respond(w, r, n)
	}))
	t.Cleanup(p.Close)
	return p
}

func httpTarget(url string) *topology.HTTPTarget {
	return &topology.HTTPTarget{URL: url, Method: http.MethodPost, Timeout: topology.Duration{D: time.Hour},
		Backoff: topology.Duration{D: time.Millisecond}, MaxBackoff: topology.Duration{D: time.Millisecond},
		MaxResponseBytes: 64, Headers: map[string]string{"X-Api-Key": "k1", "Accept": "application/json"},
		Breaker: topology.Breaker{Failures: new(100), Cooldown: topology.Duration{D: time.Second}}}
}

func TestHTTPCallerRequest(t *testing.T) {
	p := newProvider(t, func(w http.ResponseWriter, _ *http.Request, _ int32) { fmt.Fprint(w, `{"price":1}`) })
	cfg := httpTarget(p.URL + "/quote")
	deadline := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	callCtx, cancelCall := context.WithTimeout(context.Background(), time.Minute)
	defer cancelCall()
	out, err := worker.NewHTTPCaller(cfg, p.Client()).Handle(callCtx, task(deadline))
	if err != nil || string(out) != `{"price":1}` {
		t.Fatalf("out %q err %v", out, err)
	}
	r := p.last
	// The call is cut by its timeout (a minute) before the task's deadline
	// (an hour): X-Timeout-Ms says what is left of the minute.
	if ms, err := strconv.Atoi(r.Header.Get("X-Timeout-Ms")); err != nil || ms <= 0 || ms > 60_000 {
		t.Errorf("X-Timeout-Ms %q, want the call's time left, at most 60000", r.Header.Get("X-Timeout-Ms"))
	}
	if !strings.HasPrefix(r.Header.Get("User-Agent"), "scattergather/") {
		t.Errorf("User-Agent %q", r.Header.Get("User-Agent"))
	}
	for _, h := range []struct{ name, want string }{
		{"Idempotency-Key", "r1/a/2"},
		{"X-Task-Id", "r1/a/2"},
		{"X-Request-Id", "r1"},
		{"X-Flow", "f"},
		{"X-Target", "a"},
		{"X-Item-Index", "2"},
		{"X-Deadline", deadline.UTC().Format("2006-01-02T15:04:05.000Z07:00")},
		{"Content-Type", "application/json"},
		{"X-Api-Key", "k1"},
		{"Accept", "application/json"},
	} {
		if got := r.Header.Get(h.name); got != h.want {
			t.Errorf("header %s: %q, want %q", h.name, got, h.want)
		}
	}
	if r.Method != http.MethodPost || r.URL.Path != "/quote" || p.body != `{"q":1}` {
		t.Errorf("%s %s body %q", r.Method, r.URL.Path, p.body)
	}

	// GET sends no body.
	cfg.Method = http.MethodGet
	if _, err := worker.NewHTTPCaller(cfg, p.Client()).Handle(context.Background(), task(time.Now().Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	if p.last.Method != http.MethodGet || p.body != "" || p.last.Header.Get("Content-Type") != "" || p.last.Header.Get("Idempotency-Key") != "r1/a/2" {
		t.Errorf("GET: %s body %q content type %q", p.last.Method, p.body, p.last.Header.Get("Content-Type"))
	}
}

func TestHTTPCallerStatus(t *testing.T) {
	for _, tc := range []struct {
		status    int
		body      string
		wantErr   string // "" wants the body
		permanent bool
	}{
		{200, `{"a":1}`, "", false},
		{201, `{}`, "", false},
		{204, ``, "", false},
		{400, "bad input\n", "provider answered 400 Bad Request: bad input", true},
		{404, "", "provider answered 404 Not Found: ", true},
		{408, "slow", "provider answered 408 Request Timeout: slow", false},
		{429, "later", "provider answered 429 Too Many Requests: later", false},
		{500, "oops", "provider answered 500 Internal Server Error: oops", false},
		{503, "", "provider answered 503 Service Unavailable: ", false},
		{502, strings.Repeat("x", 60), "provider answered 502 Bad Gateway: " + strings.Repeat("x", 60), false},
		{200, strings.Repeat("y", 64), "", false},
		{200, strings.Repeat("y", 65), "provider answer exceeds max_response_bytes 64", true},
		{500, strings.Repeat("z", 65), "provider answer exceeds max_response_bytes 64", true},
	} {
		t.Run(fmt.Sprintf("%d %d bytes", tc.status, len(tc.body)), func(t *testing.T) {
			p := newProvider(t, func(w http.ResponseWriter, _ *http.Request, _ int32) {
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			})
			out, err := worker.NewHTTPCaller(httpTarget(p.URL), p.Client()).Handle(context.Background(), task(time.Now().Add(time.Hour)))
			if tc.wantErr == "" {
				if err != nil || string(out) != tc.body {
					t.Errorf("out %q err %v", out, err)
				}
				return
			}
			if err == nil || err.Error() != tc.wantErr {
				t.Fatalf("error %v, want %s", err, tc.wantErr)
			}
			var perm *worker.PermanentError
			if errors.As(err, &perm) != tc.permanent {
				t.Errorf("permanent %v, want %v", !tc.permanent, tc.permanent)
			}
		})
	}
}

func TestHTTPCallerLongErrorBody(t *testing.T) {
	p := newProvider(t, func(w http.ResponseWriter, _ *http.Request, _ int32) {
		w.WriteHeader(500)
		io.WriteString(w, strings.Repeat("e", 300))
	})
	cfg := httpTarget(p.URL)
	cfg.MaxResponseBytes = 1 << 10
	_, err := worker.NewHTTPCaller(cfg, p.Client()).Handle(context.Background(), task(time.Now().Add(time.Hour)))
	if want := "provider answered 500 Internal Server Error: " + strings.Repeat("e", 200) + "…"; err == nil || err.Error() != want {
		t.Errorf("error %v", err)
	}
}

func TestHTTPCallerTransport(t *testing.T) {
	p := newProvider(t, func(http.ResponseWriter, *http.Request, int32) {})
	url := p.URL
	p.Close()
	_, err := worker.NewHTTPCaller(httpTarget(url), nil).Handle(context.Background(), task(time.Now().Add(time.Hour)))
	var perm *worker.PermanentError
	if err == nil || !strings.HasPrefix(err.Error(), "provider unreachable: ") || errors.As(err, &perm) {
		t.Errorf("closed server: %v", err)
	}
	_, err = worker.NewHTTPCaller(httpTarget("http://[::1"), nil).Handle(context.Background(), task(time.Now().Add(time.Hour)))
	if err == nil || !strings.HasPrefix(err.Error(), "worker: build request: ") || !errors.As(err, &perm) {
		t.Errorf("bad URL: %v", err)
	}
}

func TestHTTPHandlerRetries(t *testing.T) {
	for _, tc := range []struct {
		name     string
		statuses []int // by hit; the last repeats
		retries  int
		status   schemas.Status
		hits     int32
		attempts int32
	}{
		{"503 retried until OK", []int{503, 503, 200}, 2, schemas.StatusOK, 3, 3},
		{"503 retries exhausted", []int{503}, 2, schemas.StatusError, 3, 3},
		{"429 retried", []int{429, 200}, 2, schemas.StatusOK, 2, 2},
		{"4xx not retried", []int{400, 200}, 2, schemas.StatusError, 1, 1},
		{"no retries", []int{500, 200}, 0, schemas.StatusError, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newProvider(t, func(w http.ResponseWriter, _ *http.Request, hit int32) {
				w.WriteHeader(tc.statuses[min(int(hit), len(tc.statuses))-1])
				io.WriteString(w, `{"ok":1}`)
			})
			cfg := httpTarget(p.URL)
			cfg.Retries = tc.retries
			res := worker.Execute(context.Background(), worker.HTTPHandler(cfg, p.Client(), nil, nil), task(time.Now().Add(time.Hour)), "w", time.Now)
			if res.Status != tc.status || p.hits.Load() != tc.hits || res.Attempts != tc.attempts {
				t.Errorf("status %s (%s) hits %d attempts %d, want %s %d %d", res.Status, res.Error, p.hits.Load(), res.Attempts, tc.status, tc.hits, tc.attempts)
			}
		})
	}
}

func TestHTTPHandlerBreaker(t *testing.T) {
	p := newProvider(t, func(w http.ResponseWriter, _ *http.Request, _ int32) { w.WriteHeader(500) })
	cfg := httpTarget(p.URL)
	cfg.Retries = 5
	cfg.Breaker = topology.Breaker{Failures: new(2), Cooldown: topology.Duration{D: time.Hour}}
	h := worker.HTTPHandler(cfg, p.Client(), nil, nil)
	// The breaker opens after two failures; the open circuit stops the retries.
	res := worker.Execute(context.Background(), h, task(time.Now().Add(time.Hour)), "w", time.Now)
	if res.Status != schemas.StatusError || !strings.HasPrefix(res.Error, "worker: circuit open: 2 calls in a row failed") || p.hits.Load() != 2 || res.Attempts != 3 {
		t.Errorf("error %q hits %d attempts %d", res.Error, p.hits.Load(), res.Attempts)
	}
	res = worker.Execute(context.Background(), h, task(time.Now().Add(time.Hour)), "w", time.Now)
	if !strings.HasPrefix(res.Error, "worker: circuit open:") || p.hits.Load() != 2 {
		t.Errorf("error %q hits %d", res.Error, p.hits.Load())
	}
}

func TestHTTPHangingProvider(t *testing.T) {
	for _, tc := range []struct {
		name     string
		timeout  time.Duration // per call
		deadline time.Duration // of the task
		want     string
	}{
		{"cut by the task deadline", time.Hour, 200 * time.Millisecond, "provider timed out: worker: task deadline passed"},
		{"cut by the call timeout", 200 * time.Millisecond, time.Hour, "provider timed out: worker: call timed out after 200ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			called := make(chan struct{}, 1)
			p := newProvider(t, func(w http.ResponseWriter, r *http.Request, _ int32) {
				called <- struct{}{}
				<-r.Context().Done() // hangs until the client gives up
			})
			cfg := httpTarget(p.URL)
			cfg.Timeout.D = tc.timeout
			res := worker.Execute(context.Background(), worker.HTTPHandler(cfg, p.Client(), nil, nil), task(time.Now().Add(tc.deadline)), "w", time.Now)
			if res.Status != schemas.StatusError || res.Error != tc.want {
				t.Errorf("status %s error %q", res.Status, res.Error)
			}
			select {
			case <-called:
			default:
				t.Error("the provider was not called")
			}
		})
	}
}

func ExampleChain() {
	echo := worker.HandlerFunc(func(ctx context.Context, t *schemas.Task) ([]byte, error) {
		return []byte(`{"echo":` + string(t.Payload) + `}`), nil
	})
	h := worker.Chain(echo, worker.Retry(2, 10*time.Millisecond, 100*time.Millisecond), worker.Timeout(time.Second))
	t := &schemas.Task{RequestID: "r1", Flow: "f", TaskID: "r1/a", Target: "a", Item: -1, Payload: []byte(`{"q":1}`),
		DeadlineMs: time.Now().Add(time.Minute).UnixMilli()}
	res := worker.Execute(context.Background(), h, t, "worker-1", time.Now)
	fmt.Println(res.Status, string(res.Payload), res.Attempts)
	// Output:
	// OK {"echo":{"q":1}} 1
}

func ExampleHandlerFunc() {
	calls := 0
	flaky := worker.HandlerFunc(func(ctx context.Context, t *schemas.Task) ([]byte, error) {
		calls++
		if calls == 1 {
			return nil, errors.New("connection reset")
		}
		if t.Payload == nil {
			return nil, worker.Permanent(errors.New("empty task"))
		}
		return []byte(`"ok"`), nil
	})
	h := worker.Chain(flaky, worker.Retry(3, time.Millisecond, time.Millisecond))
	deadline := time.Now().Add(time.Minute).UnixMilli()

	res := worker.Execute(context.Background(), h, &schemas.Task{TaskID: "t1", Payload: []byte(`{}`), DeadlineMs: deadline}, "w", time.Now)
	fmt.Println(res.Status, string(res.Payload), res.Attempts)
	res = worker.Execute(context.Background(), h, &schemas.Task{TaskID: "t2", DeadlineMs: deadline}, "w", time.Now)
	fmt.Println(res.Status, res.Error, res.Attempts)
	// Output:
	// OK "ok" 2
	// ERROR empty task 1
}

// Configured headers cannot replace the task's identity, and an empty
// content type is sent as JSON.
func TestHTTPCallerIdentityHeadersWin(t *testing.T) {
	p := newProvider(t, func(w http.ResponseWriter, _ *http.Request, _ int32) { fmt.Fprint(w, `{}`) })
	cfg := httpTarget(p.URL)
	cfg.Headers = map[string]string{"Idempotency-Key": "spoofed", "X-Request-Id": "spoofed"}
	tk := task(time.Now().Add(time.Hour))
	tk.ContentType = ""
	if _, err := worker.NewHTTPCaller(cfg, p.Client()).Handle(context.Background(), tk); err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if got := p.last.Header.Get("Idempotency-Key"); got != tk.TaskID {
		t.Errorf("Idempotency-Key %q, want the task id %q", got, tk.TaskID)
	}
	if got := p.last.Header.Get("X-Request-Id"); got != tk.RequestID {
		t.Errorf("X-Request-Id %q, want %q", got, tk.RequestID)
	}
	if got := p.last.Header.Get("Content-Type"); got != schemas.ContentTypeJSON {
		t.Errorf("Content-Type %q", got)
	}
}

// A 4xx answer is permanent: it shows a provider that is up, so it does not
// open the breaker.
func TestBreakerIgnoresPermanentErrors(t *testing.T) {
	p := newProvider(t, func(w http.ResponseWriter, _ *http.Request, _ int32) { w.WriteHeader(http.StatusBadRequest) })
	cfg := httpTarget(p.URL)
	cfg.Breaker = topology.Breaker{Failures: new(2), Cooldown: topology.Duration{D: time.Hour}}
	h := worker.HTTPHandler(cfg, p.Client(), nil, nil)
	for i := range 5 {
		res := worker.Execute(context.Background(), h, task(time.Now().Add(time.Hour)), "w", time.Now)
		if res.Status != schemas.StatusError || !strings.Contains(res.Error, "400") {
			t.Fatalf("call %d: %s %q, want the provider's 400", i, res.Status, res.Error)
		}
	}
	if hits := p.hits.Load(); hits != 5 {
		t.Errorf("provider called %d times, want 5: the breaker opened on 4xx answers", hits)
	}
}

// advance lets the fake clock of a synctest bubble move on by d: the
// bubble's goroutines run until all wait, then time jumps.
func advance(d time.Duration) { <-time.After(d) }

// A provider's redirect is not followed by default: the configured headers
// (API keys), the method and the body would go to wherever it points, even
// over plain http. The 3xx answer is a permanent error naming the host.
func TestHTTPCallerRedirectsNotFollowed(t *testing.T) {
	var stolen atomic.Int32
	elsewhere := newProvider(t, func(w http.ResponseWriter, r *http.Request, _ int32) {
		if r.Header.Get("X-Api-Key") != "" {
			stolen.Add(1)
		}
		fmt.Fprint(w, `{"price":0}`)
	})
	for _, tc := range []struct {
		status   int
		location string
		want     string
	}{
		{http.StatusFound, elsewhere.URL + "/steal?api_key=k1", "provider redirected (302 Found) to " + elsewhere.URL + ": redirects are not followed"},
		{http.StatusSeeOther, elsewhere.URL + "/steal", "provider redirected (303 See Other) to " + elsewhere.URL + ": "},
		{http.StatusMovedPermanently, "/v2/quote?api_key=k1", "provider redirected (301 Moved Permanently) to http://127.0.0.1:"},
		{http.StatusTemporaryRedirect, "/v2/quote", "provider redirected (307 Temporary Redirect) to http://127.0.0.1:"},
		{http.StatusPermanentRedirect, elsewhere.URL, "provider redirected (308 Permanent Redirect) to " + elsewhere.URL + ": "},
		{http.StatusMultipleChoices, "", "provider redirected (300 Multiple Choices) to no location: "},
	} {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			p := newProvider(t, func(w http.ResponseWriter, _ *http.Request, _ int32) {
				if tc.location != "" {
					w.Header().Set("Location", tc.location)
				}
				w.WriteHeader(tc.status)
			})
			cfg := httpTarget(p.URL + "/quote")
			cfg.Retries = 3
			res := worker.Execute(context.Background(), worker.HTTPHandler(cfg, p.Client(), nil, nil), task(time.Now().Add(time.Hour)), "w", time.Now)
			if res.Status != schemas.StatusError || !strings.HasPrefix(res.Error, tc.want) {
				t.Errorf("%s %q, want an error starting %q", res.Status, res.Error, tc.want)
			}
			if strings.Contains(res.Error, "steal") || strings.Contains(res.Error, "api_key") || strings.Contains(res.Error, "v2") {
				t.Errorf("error %q shows the location's path or query", res.Error)
			}
			if p.hits.Load() != 1 || res.Attempts != 1 {
				t.Errorf("provider called %d times in %d attempts, want 1: a redirect is permanent", p.hits.Load(), res.Attempts)
			}
		})
	}
	if n := elsewhere.hits.Load(); n != 0 {
		t.Errorf("the redirect was followed %d times (%d with the API key)", n, stolen.Load())
	}
}

// follow_redirects: same_host follows 307 and 308 to the same host over
// https, with the method, the body and the headers; nothing else.
func TestHTTPCallerRedirectsSameHost(t *testing.T) {
	type hit struct{ method, path, body, key string }
	newTLS := func(t *testing.T, respond func(w http.ResponseWriter, r *http.Request)) (*httptest.Server, func() []hit) {
		var mu sync.Mutex
		var hits []hit
		s := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			mu.Lock()
			hits = append(hits, hit{r.Method, r.URL.Path, string(b), r.Header.Get("X-Api-Key")})
			mu.Unlock()
			respond(w, r)
		}))
		t.Cleanup(s.Close)
		return s, func() []hit { mu.Lock(); defer mu.Unlock(); return slices.Clone(hits) }
	}
	elsewhere, elsewhereHits := newTLS(t, func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, `{}`) })
	plain := newProvider(t, func(w http.ResponseWriter, _ *http.Request, _ int32) { fmt.Fprint(w, `{}`) })
	for _, tc := range []struct {
		name     string
		status   int
		location func(self string) string
		want     string // "" wants the answer of /v2
	}{
		{"307 same host", http.StatusTemporaryRedirect, func(string) string { return "/v2" }, ""},
		{"308 same host absolute", http.StatusPermanentRedirect, func(self string) string { return self + "/v2" }, ""},
		{"302 same host", http.StatusFound, func(string) string { return "/v2" }, "provider redirected (302 Found) to https://127.0.0.1:"},
		{"303 same host", http.StatusSeeOther, func(string) string { return "/v2" }, "provider redirected (303 See Other) to https://127.0.0.1:"},
		{"301 same host", http.StatusMovedPermanently, func(string) string { return "/v2" }, "provider redirected (301 Moved Permanently) to https://127.0.0.1:"},
		{"307 other host", http.StatusTemporaryRedirect, func(string) string { return elsewhere.URL + "/v2" }, "provider redirected (307 Temporary Redirect) to " + elsewhere.URL + ": follow_redirects: same_host follows only 307 and 308 to the same host over https"},
		{"307 to plain http", http.StatusTemporaryRedirect, func(string) string { return plain.URL + "/v2" }, "provider redirected (307 Temporary Redirect) to " + plain.URL + ": "},
		{"307 loop", http.StatusTemporaryRedirect, func(string) string { return "/loop" }, "provider redirected (307 Temporary Redirect) to https://127.0.0.1:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var self string
			p, hits := newTLS(t, func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/v2" {
					fmt.Fprint(w, `{"v":2}`)
					return
				}
				w.Header().Set("Location", tc.location(self))
				w.WriteHeader(tc.status)
			})
			self = p.URL
			cfg := httpTarget(p.URL + "/quote")
			cfg.FollowRedirects = topology.RedirectsSameHost
			out, err := worker.NewHTTPCaller(cfg, p.Client()).Handle(context.Background(), task(time.Now().Add(time.Hour)))
			got := hits()
			if tc.want == "" {
				if err != nil || string(out) != `{"v":2}` {
					t.Fatalf("out %q err %v, want the answer of /v2", out, err)
				}
				want := []hit{{"POST", "/quote", `{"q":1}`, "k1"}, {"POST", "/v2", `{"q":1}`, "k1"}}
				if !slices.Equal(got, want) {
					t.Errorf("calls %+v, want %+v", got, want)
				}
				return
			}
			var perm *worker.PermanentError
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) || !errors.As(err, &perm) {
				t.Fatalf("error %v, want a permanent error starting %q", err, tc.want)
			}
			if tc.name == "307 loop" {
				if !strings.HasSuffix(err.Error(), "gave up after 10 redirects") || len(got) != 10 {
					t.Errorf("error %v after %d calls", err, len(got))
				}
			} else if len(got) != 1 {
				t.Errorf("calls %+v, want 1", got)
			}
		})
	}
	if n := len(elsewhereHits()) + int(plain.hits.Load()); n != 0 {
		t.Errorf("%d redirects to another host or to http followed", n)
	}
}

// A secret in the provider URL never shows in a result's error, however the
// call fails: Go's HTTP client quotes the whole URL in its errors.
func TestHTTPCallerRedactsURL(t *testing.T) {
	const secret = "s3cret"
	closed := newProvider(t, nil)
	closedURL := closed.URL
	closed.Close()
	hang := newProvider(t, func(_ http.ResponseWriter, r *http.Request, _ int32) { <-r.Context().Done() })
	hangup := newProvider(t, func(w http.ResponseWriter, _ *http.Request, _ int32) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	})
	untrusted := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	untrusted.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshake the client refuses
	untrusted.StartTLS()
	t.Cleanup(untrusted.Close)
	for _, tc := range []struct {
		name    string
		url     string
		client  *http.Client
		timeout time.Duration
		want    string
	}{
		{"connection refused", closedURL, nil, time.Hour, "provider unreachable: "},
		{"call timeout", hang.URL, nil, 50 * time.Millisecond, "provider timed out: worker: call timed out after 50ms"},
		{"client timeout", hang.URL, &http.Client{Timeout: 50 * time.Millisecond}, time.Hour, `provider timed out: Post "` + hang.URL + `/price?REDACTED": `},
		{"connection closed", hangup.URL, nil, time.Hour, `provider call failed: Post "` + hangup.URL + `/price?REDACTED": `},
		{"untrusted certificate", untrusted.URL, nil, time.Hour, `provider call failed: Post "` + untrusted.URL + `/price?REDACTED": `},
		{"password", strings.Replace(hangup.URL, "://", "://user:"+secret+"@", 1), nil, time.Hour, `provider call failed: Post "http://REDACTED@`},
		{"bad URL", "http://[::1", nil, time.Hour, `worker: build request: parse "http://[::1/price?REDACTED": `},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := httpTarget(tc.url + "/price?api_key=" + secret)
			cfg.Timeout.D = tc.timeout
			res := worker.Execute(context.Background(), worker.HTTPHandler(cfg, tc.client, nil, nil), task(time.Now().Add(time.Hour)), "w", time.Now)
			if res.Status != schemas.StatusError || strings.Contains(res.Error, secret) || !strings.HasPrefix(res.Error, tc.want) {
				t.Errorf("%s %q, want an error starting %q without the secret", res.Status, res.Error, tc.want)
			}
		})
	}
}

// A task that cannot be decoded because the schema registry does not
// answer is not rejected (no dead letter, no answer): it waits.
func TestDecodeWaitsForTheRegistry(t *testing.T) {
	codec := schemas.NewCodec()
	codec.SetSchemaSource(schemas.SchemaSourceFunc(func(context.Context, uint32) (string, error) {
		return "", errors.New("connection refused") // a registry that does not answer
	}), 0)
	d := worker.NewDecoder(&topology.Flow{Name: "f", Partitions: 1}, "a", codec)
	_, err := d.Decode([]byte{0, 0, 0, 0, 42, 2, 'x'})
	var rej *worker.RejectError
	if !errors.Is(err, schemas.ErrRegistryUnavailable) || errors.As(err, &rej) {
		t.Fatalf("Decode = %v; want ErrRegistryUnavailable, not a rejection", err)
	}
}
