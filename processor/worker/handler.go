package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/scattergather/scattergather/schemas"
)

// Handler answers one task. It returns the answer's payload, or an error
// that becomes an ERROR result carrying the error's text. The context ends
// at the task's deadline. Handlers run concurrently: they must be safe for
// concurrent use. The returned payload is owned by the caller.
type Handler interface {
	Handle(ctx context.Context, task *schemas.Task) ([]byte, error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, task *schemas.Task) ([]byte, error)

// Handle calls f(ctx, task).
func (f HandlerFunc) Handle(ctx context.Context, task *schemas.Task) ([]byte, error) {
	return f(ctx, task)
}

// Middleware wraps a Handler with behaviour of its own.
type Middleware func(Handler) Handler

// Chain wraps h with mw; the first middleware is the outermost.
func Chain(h Handler, mw ...Middleware) Handler {
	for i := len(mw) - 1; i >= 0; i-- {
		h = mw[i](h)
	}
	return h
}

// Errors of the middleware.
var (
	// ErrCircuitOpen: the target's circuit breaker is open; the provider was
	// not called.
	ErrCircuitOpen = errors.New("worker: circuit open")
	// ErrPanic: the handler panicked; Recover turned it into this error.
	ErrPanic = errors.New("worker: handler panicked")
	// ErrDeadline: the task's deadline passed before it could run.
	ErrDeadline = errors.New("worker: task deadline passed")
	// ErrDecided is the cause of a task's context when the gather has
	// decided its request: the task's answer can no longer change the
	// outcome. Its text, without the package's prefix, is the whole error
	// of the task's ERROR result (see Execute), so that tools can count
	// such results.
	ErrDecided = errors.New("cancelled: request decided")
	// ErrHedged is the cause of the context of a call cut short because
	// the other call of its hedge answered first (see Hedge). The breaker
	// counts such a call neither as a failure nor as a success.
	ErrHedged = errors.New("worker: cancelled: the other call of the hedge answered first")
)

// PermanentError marks an error that retrying will not cure (a 4xx answer,
// a malformed task); Retry gives up at once.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err so that Retry does not retry it.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// countsKey keys a task's call counts in its context.
type countsKey struct{}

// callCounts are what a task's handler reports of its call: the calls made
// to the provider and the time spent waiting rather than calling. One
// value holds both, so that a task adds one value to its context, not two.
type callCounts struct {
	attempts atomic.Int32
	waited   atomic.Int64
}

// withCallCounts returns a context that counts provider calls and adds up
// the time spent waiting.
func withCallCounts(ctx context.Context) (context.Context, *callCounts) {
	n := new(callCounts)
	return context.WithValue(ctx, countsKey{}, n), n
}

func callCountsFrom(ctx context.Context) *callCounts {
	n, _ := ctx.Value(countsKey{}).(*callCounts)
	return n
}

// CountAttempt records one call to the provider; Retry calls it for each
// try, Hedge for each backup call, and the result's attempts field reports
// the total. Handlers outside
// Retry need not call it: no count means one attempt.
func CountAttempt(ctx context.Context) {
	if n := callCountsFrom(ctx); n != nil {
		n.attempts.Add(1)
	}
}

// uncountAttempt takes back a call counted by CountAttempt that did not
// reach the provider.
func uncountAttempt(ctx context.Context) {
	if n := callCountsFrom(ctx); n != nil {
		n.attempts.Add(-1)
	}
}

// addWaited records d spent waiting (for a rate limit's turn, between
// retries), which a Sample leaves out of the provider's latency.
func addWaited(ctx context.Context, d time.Duration) {
	if n := callCountsFrom(ctx); n != nil && d > 0 {
		n.waited.Add(int64(d))
	}
}

// Retry calls the handler up to 1+retries times while it fails with an
// error that is not permanent and the context lives, sleeping backoff
// before the first retry and doubling it up to maxBackoff. A
// RetryAfterError makes it sleep at least what the provider asked for; when
// that ends after the context's deadline, it gives up at once. Each try
// goes to the next endpoint (see Endpoint).
func Retry(retries int, backoff, maxBackoff time.Duration) Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, t *schemas.Task) ([]byte, error) {
			wait := backoff
			for try := 0; ; try++ {
				CountAttempt(ctx)
				tctx := ctx
				if try > 0 {
					tctx = withTry(ctx, try)
				}
				out, err := next.Handle(tctx, t)
				var perm *PermanentError
				if err == nil || try >= retries || errors.As(err, &perm) || errors.Is(err, ErrCircuitOpen) {
					return out, err
				}
				sleep := wait
				if ra, ok := errors.AsType[*RetryAfterError](err); ok {
					sleep = max(sleep, ra.After)
					if d, ok := ctx.Deadline(); ok && time.Until(d) < sleep {
						return out, err
					}
				}
				timer := time.NewTimer(sleep)
				slept := time.Now()
				select {
				case <-ctx.Done():
					timer.Stop()
					addWaited(ctx, time.Since(slept))
					return nil, fmt.Errorf("%w (gave up retrying: %w)", err, context.Cause(ctx))
				case <-timer.C:
				}
				addWaited(ctx, time.Since(slept))
				wait = min(2*wait, maxBackoff)
			}
		})
	}
}

// Timeout bounds each call of the handler to d.
func Timeout(d time.Duration) Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, t *schemas.Task) ([]byte, error) {
			ctx, cancel := context.WithTimeoutCause(ctx, d, fmt.Errorf("worker: call timed out after %s", d))
			defer cancel()
			out, err := next.Handle(ctx, t)
			if cause := context.Cause(ctx); err != nil && ctx.Err() != nil && !errors.Is(err, cause) {
				err = fmt.Errorf("%w: %w", err, cause)
			}
			return out, err
		})
	}
}

// Recover turns a panic in the handler into an ERROR result.
func Recover() Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, t *schemas.Task) (out []byte, err error) {
			defer func() {
				if r := recover(); r != nil {
					err = fmt.Errorf("%w: %v", ErrPanic, r)
				}
			}()
			return next.Handle(ctx, t)
		})
	}
}

// Breaker is a circuit breaker for one target: after Failures consecutive
// failures it opens and fails calls at once with ErrCircuitOpen for
// Cooldown, then lets one call through (half-open) and closes again if it
// succeeds. Safe for concurrent use.
type Breaker struct {
	failures int
	cooldown time.Duration
	now      func() time.Time
	notify   func(BreakerEvent)

	mu        sync.Mutex
	fails     int
	openUntil time.Time
	probing   bool
	open      bool
}

// BreakerEvent is what a breaker tells its observer (see NewBreaker).
type BreakerEvent int

// Breaker events.
const (
	// BreakerOpened: the failures reached the threshold; calls are
	// refused for the cooldown.
	BreakerOpened BreakerEvent = iota + 1
	// BreakerClosed: a probe after the cooldown succeeded; calls flow
	// again.
	BreakerClosed
	// BreakerRejected: a call was refused without calling the provider.
	BreakerRejected
)

// String returns opened, closed or rejected.
func (e BreakerEvent) String() string {
	switch e {
	case BreakerOpened:
		return "opened"
	case BreakerClosed:
		return "closed"
	case BreakerRejected:
		return "rejected"
	}
	return "unknown"
}

// NewBreaker returns a closed breaker. failures < 1 disables it. notify,
// if not nil, is told every event, outside the breaker's lock, from the
// goroutine of the call that caused it.
func NewBreaker(failures int, cooldown time.Duration, notify func(BreakerEvent)) *Breaker {
	if notify == nil {
		notify = func(BreakerEvent) {}
	}
	return &Breaker{failures: failures, cooldown: cooldown, now: time.Now, notify: notify}
}

// Middleware returns the breaker as a Middleware. Share one Breaker per
// target so that all of its calls count.
func (b *Breaker) Middleware() Middleware {
	return func(next Handler) Handler {
		if b.failures < 1 {
			return next
		}
		return HandlerFunc(func(ctx context.Context, t *schemas.Task) ([]byte, error) {
			if err := b.allow(); err != nil {
				b.notify(BreakerRejected)
				return nil, err
			}
			ok := false
			// Deferred, so that a panicking call counts as a failure and a
			// half-open probe never stays pending for ever.
			defer func() {
				if !ok && errors.Is(context.Cause(ctx), ErrHedged) {
					// Cut short because the other call answered: it says
					// nothing of the provider.
					b.release()
					return
				}
				if ev := b.record(ok); ev != 0 {
					b.notify(ev)
				}
			}()
			out, err := next.Handle(ctx, t)
			// A permanent error (a 4xx answer) shows a provider that is up.
			var perm *PermanentError
			ok = err == nil || errors.As(err, &perm)
			return out, err
		})
	}
}

func (b *Breaker) allow() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fails < b.failures {
		return nil
	}
	if now := b.now(); now.Before(b.openUntil) || b.probing {
		return fmt.Errorf("%w: %d calls in a row failed; the provider is not called until %s",
			ErrCircuitOpen, b.fails, b.openUntil.UTC().Format(time.RFC3339))
	}
	b.probing = true // half-open: one call decides
	return nil
}

// release ends a call that counts neither way, such as a half-open probe
// cut short by its hedge: the next call probes.
func (b *Breaker) release() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.probing = false
}

// record counts a call's end and returns the event it causes, or 0.
func (b *Breaker) record(ok bool) BreakerEvent {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.probing = false
	if ok {
		b.fails = 0
		if b.open {
			b.open = false
			return BreakerClosed
		}
		return 0
	}
	b.fails++
	if b.fails >= b.failures {
		b.openUntil = b.now().Add(b.cooldown)
		if !b.open {
			b.open = true
			return BreakerOpened
		}
	}
	return 0
}

// Execute runs task through h and returns its result: OK with the payload,
// or ERROR with the reason. A task whose deadline (by the now function) has
// passed is answered ERROR without calling h. Execute never returns nil.
func Execute(ctx context.Context, h Handler, task *schemas.Task, worker string, now func() time.Time) *schemas.Result {
	res, _ := ExecuteMeasured(ctx, h, task, worker, now)
	return res
}

// ExecuteMeasured is Execute that also returns the sample of the call for
// the target's ConcurrencyLimiter: its latency by the now function, less
// the waits for a rate limit's turn and between retries, and whether it
// measured the provider.
func ExecuteMeasured(ctx context.Context, h Handler, task *schemas.Task, worker string, now func() time.Time) (*schemas.Result, Sample) {
	start := now()
	res := &schemas.Result{
		RequestID:   task.RequestID,
		Flow:        task.Flow,
		TaskID:      task.TaskID,
		Target:      task.Target,
		Item:        task.Item,
		Payload:     []byte{},
		ContentType: schemas.ContentTypeJSON,
		Worker:      worker,
	}
	deadline := time.UnixMilli(task.DeadlineMs)
	if !start.Before(deadline) {
		res.Status = schemas.StatusError
		res.Error = fmt.Sprintf("%v: deadline %s, now %s", ErrDeadline, deadline.UTC().Format(time.RFC3339Nano), start.UTC().Format(time.RFC3339Nano))
		res.Attempts = 0
		return res, Sample{}
	}
	if ctx.Err() != nil {
		// Ended before it began (its request decided, say): not called.
		res.Status = schemas.StatusError
		res.Error = truncate(causeText(ctx), MaxErrorBytes)
		return res, Sample{}
	}
	ctx, cancel := context.WithDeadlineCause(ctx, deadline, ErrDeadline)
	defer cancel()
	ctx, calls := withCallCounts(ctx)
	out, err := Recover()(h).Handle(ctx, task)
	took := now().Sub(start)
	res.DurationMs = took.Milliseconds()
	res.Attempts = max(calls.attempts.Load(), 1)
	sample := Sample{RTT: max(took-time.Duration(calls.waited.Load()), 0), Measured: true}
	if errors.Is(err, ErrRateLimited) {
		// Refused or cut while waiting for its turn: the calls made, if any.
		res.Attempts = max(calls.attempts.Load(), 0)
		sample.Measured = res.Attempts > 0
	}
	if errors.Is(err, ErrCircuitOpen) {
		sample.Measured = false // refused without a call, the last time at least
	}
	if err != nil {
		res.Status = schemas.StatusError
		res.Error = truncate(err.Error(), MaxErrorBytes)
		if errors.Is(context.Cause(ctx), ErrDecided) {
			// Whatever the call said on its way out, this is why it ended:
			// cut short, its latency says nothing of the provider's.
			res.Error = ErrDecided.Error()
			return res, Sample{}
		}
		if ctx.Err() != nil && !errors.Is(err, ErrDeadline) && errors.Is(context.Cause(ctx), ErrDeadline) {
			res.Error += " (task deadline passed)"
		}
		return res, sample
	}
	res.Status = schemas.StatusOK
	if out != nil {
		res.Payload = out
	}
	return res, sample
}

// causeText is why ctx ended.
func causeText(ctx context.Context) string {
	if c := context.Cause(ctx); c != nil {
		return c.Error()
	}
	return ctx.Err().Error()
}

// MaxErrorBytes bounds the error text a result carries.
const MaxErrorBytes = 2048

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
