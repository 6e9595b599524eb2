package worker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/scattergather/scattergather/schemas"
)

// ErrRateLimited: the target's rate limit would let the call start only
// too close to the task's deadline to answer in time (after half the time
// the task had left); the provider was not called. The text of the
// ERROR results it makes starts with "rate limited".
var ErrRateLimited = errors.New("rate limited")

// RetryAfterError is a provider's answer that asked for a pause (429 or
// 503 with a Retry-After header): Retry waits at least After before the
// next try, and a RateLimiter holds every call of the target for After.
type RetryAfterError struct {
	Err   error
	After time.Duration
}

func (e *RetryAfterError) Error() string { return e.Err.Error() }
func (e *RetryAfterError) Unwrap() error { return e.Err }

// retryAfter reads a Retry-After header: delay-seconds or an HTTP date
// (RFC 9110 10.2.3). ok is false when it is absent or malformed.
func retryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	v := h.Get("Retry-After")
	if v == "" {
		return 0, false
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s < 0 {
			return 0, false
		}
		return time.Duration(min(s, int64(24*time.Hour/time.Second))) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// RateLimitEvent is what a RateLimiter tells its observer.
type RateLimitEvent int

// Rate limiter events.
const (
	// RateDelayed: a call waited for its turn under the limit.
	RateDelayed RateLimitEvent = iota + 1
	// RateRefused: a task was answered ERROR "rate limited" without a
	// call, as its turn came after its deadline.
	RateRefused
	// RateRetryAfter: the provider asked for a pause (Retry-After); the
	// target's calls wait for it.
	RateRetryAfter
)

// String returns delayed, refused or retry_after.
func (e RateLimitEvent) String() string {
	switch e {
	case RateDelayed:
		return "delayed"
	case RateRefused:
		return "refused"
	case RateRetryAfter:
		return "retry_after"
	}
	return "unknown"
}

// RateLimiter is a token bucket for the calls of one target: perSecond
// calls a second times the share, in bursts of up to burst. A call takes
// its turn at once (turns are handed out in order, as reservations), waits
// for it, or, when the turn comes after half the time the task has left
// before its deadline (too late to answer in time), is refused
// with ErrRateLimited without waiting. A provider's Retry-After pauses
// every call until it ends and moves the turns handed out by as much.
// Safe for concurrent use.
type RateLimiter struct {
	perSecond float64
	burst     float64
	now       func() time.Time
	notify    func(RateLimitEvent)

	mu     sync.Mutex
	share  float64
	tat    time.Time     // theoretical arrival time of the next call (GCRA)
	paused time.Time     // no call starts before
	shift  time.Duration // total of the pauses, which move the turns handed out
}

// NewRateLimiter returns a full bucket with share 1. notify, if not nil,
// is told every event, from the goroutine of the call.
func NewRateLimiter(perSecond float64, burst int, notify func(RateLimitEvent)) *RateLimiter {
	if notify == nil {
		notify = func(RateLimitEvent) {}
	}
	return &RateLimiter{perSecond: perSecond, burst: float64(max(burst, 1)), now: time.Now, notify: notify, share: 1}
}

// SetShare sets the share of the limit this limiter has (0 to 1): the
// worker sets it to the share of the task topic's partitions it owns, so
// that the instances of a worker group together stay within the limit.
// The burst is shared the same way, at least one call.
func (l *RateLimiter) SetShare(share float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.share = min(max(share, 0), 1)
}

// interval is the time between two calls, and tolerance how far ahead of
// it a burst may go. l.mu is held; ok is false when the share is 0.
func (l *RateLimiter) interval() (interval, tolerance time.Duration, ok bool) {
	r := l.perSecond * l.share
	if !(r > 0) {
		return 0, 0, false
	}
	interval = time.Duration(float64(time.Second) / r)
	return interval, time.Duration(max(1, l.burst*l.share)-1) * interval, true
}

// reserve takes the next turn and returns it, and the pauses so far; ok is
// false, and nothing is taken, when the turn comes after deadline (zero:
// none).
func (l *RateLimiter) reserve(deadline time.Time) (turn time.Time, shift time.Duration, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	interval, tolerance, ok := l.interval()
	if !ok {
		return time.Time{}, 0, false
	}
	tat := l.tat
	if tat.Before(now) {
		tat = now
	}
	turn = tat.Add(-tolerance)
	if turn.Before(l.paused) {
		turn = l.paused
	}
	if turn.Before(now) {
		turn = now
	}
	if !deadline.IsZero() && turn.After(deadline) {
		return turn, 0, false
	}
	l.tat = tat.Add(interval)
	return turn, l.shift, true
}

// wait returns how long a call whose turn was turn, given when the pauses
// added up to shift, has still to wait.
func (l *RateLimiter) wait(turn time.Time, shift time.Duration) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return turn.Add(l.shift - shift).Sub(l.now())
}

// Pause holds every call that has not started for d from now, and moves
// the turns handed out by as much as the pause grew.
func (l *RateLimiter) Pause(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	until := now.Add(d)
	from := now
	if l.paused.After(now) {
		from = l.paused
	}
	if !until.After(from) {
		return
	}
	grow := until.Sub(from)
	l.paused = until
	l.shift += grow
	if l.tat.After(now) {
		l.tat = l.tat.Add(grow)
	}
}

// Middleware returns the limiter as a Middleware: each call through it
// takes a turn (place it inside Retry, so that each try is counted).
// Share one RateLimiter per target.
func (l *RateLimiter) Middleware() Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, t *schemas.Task) ([]byte, error) {
			// A turn is worth taking only if it leaves the call time to
			// answer before the deadline: half of what the task has left.
			// Under a demand above the limit, a task that waited until its
			// deadline would answer too late for the gather, and its turn
			// would be lost to the tasks behind it.
			latest, _ := ctx.Deadline()
			if !latest.IsZero() {
				now := l.now()
				latest = now.Add(latest.Sub(now) / 2)
			}
			turn, shift, ok := l.reserve(latest)
			if !ok {
				uncountAttempt(ctx)
				l.notify(RateRefused)
				return nil, Permanent(fmt.Errorf("%w: the target's rate_limit gives the next call a turn at %s, too close to the task's deadline to answer in time",
					ErrRateLimited, turn.UTC().Format(time.RFC3339Nano)))
			}
			wait := l.wait(turn, shift)
			if wait > 0 {
				l.notify(RateDelayed)
			}
			// A pause asked for while this call waited holds it too. The
			// task steps aside from its target's concurrency limit while
			// it waits (see Slot).
			waitStart := time.Now()
			slot := slotFrom(ctx)
			if wait > 0 && slot != nil {
				slot.stepAside()
			}
			for ; wait > 0; wait = l.wait(turn, shift) {
				timer := time.NewTimer(wait)
				select {
				case <-ctx.Done():
					timer.Stop()
					uncountAttempt(ctx)
					return nil, fmt.Errorf("%w: waited for a turn under the target's rate_limit: %w", ErrRateLimited, context.Cause(ctx))
				case <-timer.C:
				}
			}
			if slot != nil {
				if err := slot.retake(ctx); err != nil {
					uncountAttempt(ctx)
					return nil, fmt.Errorf("%w: waited for a place under the target's concurrency limit: %w", ErrRateLimited, err)
				}
			}
			addWaited(ctx, time.Since(waitStart))
			out, err := next.Handle(ctx, t)
			if ra, ok := errors.AsType[*RetryAfterError](err); ok {
				l.Pause(ra.After)
				l.notify(RateRetryAfter)
			}
			return out, err
		})
	}
}
