package worker

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/scattergather/scattergather/processor/topology"
	"github.com/scattergather/scattergather/schemas"
)

// callKey carries, in a call's context, which call of its task it is.
type callKey struct{}

// call is the try of a retry and whether the call is a hedge's backup.
type call struct{ try, backup int }

// withTry returns ctx for try try of a retry.
func withTry(ctx context.Context, try int) context.Context {
	c, _ := ctx.Value(callKey{}).(call)
	c.try = try
	return context.WithValue(ctx, callKey{}, c)
}

// asBackup returns ctx for the backup call of a hedge.
func asBackup(ctx context.Context) context.Context {
	c, _ := ctx.Value(callKey{}).(call)
	c.backup = 1
	return context.WithValue(ctx, callKey{}, c)
}

// Endpoint returns which of n endpoints the call of ctx goes to: try k of
// a retry goes to endpoint k mod n, and the backup call of a hedge to the
// endpoint after its primary's. HTTPCaller picks among http.endpoints
// with it; a Go handler with endpoints of its own may too. n < 1 returns
// 0.
func Endpoint(ctx context.Context, n int) int {
	if n < 1 {
		return 0
	}
	c, _ := ctx.Value(callKey{}).(call)
	return (c.try + c.backup) % n
}

// HedgeEvent is what a hedge tells its observer (see NewHedge).
type HedgeEvent int

// Hedge events.
const (
	// HedgeSent: a call was slower than the quantile; a backup call was
	// sent.
	HedgeSent HedgeEvent = iota + 1
	// HedgeWon: the backup's answer was kept.
	HedgeWon
	// HedgeBudgetExhausted: a call was slower than the quantile, but the
	// budget had no backup left.
	HedgeBudgetExhausted
)

// String returns sent, won or budget_exhausted.
func (e HedgeEvent) String() string {
	switch e {
	case HedgeSent:
		return "sent"
	case HedgeWon:
		return "won"
	case HedgeBudgetExhausted:
		return "budget_exhausted"
	}
	return "unknown"
}

// Hedge sends a backup call for the calls of one target that are slower
// than most: when a call has not answered after the quantile of the
// latencies of the target's recent successful calls (at least the
// minimum delay), and the budget allows, the same task is handed to the
// handler a second time, as the backup call (Endpoint sends it to the next
// endpoint). The first OK answer is kept and the other call cancelled,
// with ErrHedged as its context's cause; if the first to answer failed,
// the other is waited for; if both fail, the primary's error is returned.
//
// The budget earns each call its share of a backup and a backup spends a
// whole one, so that over time at most that share of the calls get one;
// up to max(10, budget × window) backups are saved up. No backup is sent
// before topology.MinHedgeSamples calls have succeeded.
//
// The two calls of a hedge run at once, in their own goroutines, with the
// same task: the handler must not modify it. A call not cut short may
// still be running when the hedge returns. Safe for concurrent use; share
// one Hedge per target.
type Hedge struct {
	quantile  float64
	budget    float64
	minDelay  time.Duration
	maxCredit float64
	every     int // new latencies between two computations of the delay
	notify    func(HedgeEvent)

	mu        sync.Mutex
	ring      []time.Duration // latencies of the last calls, oldest at next once full
	next      int
	filled    int
	fresh     int           // latencies since the delay was computed
	delay     time.Duration // valid when ready
	ready     bool
	computing bool
	credit    float64
}

// NewHedge returns the hedge that cfg describes (with its defaults).
// notify, if not nil, is told every event, from the goroutine of the call.
func NewHedge(cfg topology.Hedge, notify func(HedgeEvent)) *Hedge {
	if notify == nil {
		notify = func(HedgeEvent) {}
	}
	window := max(cfg.Window, topology.MinHedgeSamples)
	return &Hedge{
		quantile:  min(max(cfg.Quantile, 0), 1),
		budget:    cfg.Budget,
		minDelay:  cfg.MinDelay.D,
		maxCredit: max(10, cfg.Budget*float64(window)),
		every:     max(1, window/100),
		notify:    notify,
		ring:      make([]time.Duration, window),
	}
}

// Middleware returns the hedge as a Middleware. Place it inside Retry
// (each try is hedged on its own) and outside the breaker and the rate
// limiter, which a backup call passes like any other.
func (h *Hedge) Middleware() Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, t *schemas.Task) ([]byte, error) {
			delay, ok := h.begin()
			if !ok {
				start := time.Now()
				out, err := next.Handle(ctx, t)
				if err == nil {
					h.observe(time.Since(start))
				}
				return out, err
			}
			return h.hedged(ctx, next, t, delay)
		})
	}
}

// answer is what one call of a hedge came back with.
type answer struct {
	out    []byte
	err    error
	backup bool
	took   time.Duration
}

// hedged makes the primary call and, if it has not answered after delay,
// a backup call.
func (h *Hedge) hedged(ctx context.Context, next Handler, t *schemas.Task, delay time.Duration) ([]byte, error) {
	answers := make(chan answer, 2) // never blocks a call the hedge no longer waits for
	start := time.Now()
	primaryCtx, cancelPrimary := context.WithCancelCause(ctx)
	defer cancelPrimary(nil)
	go h.run(primaryCtx, next, t, false, answers)

	timer := time.NewTimer(delay)
	defer timer.Stop()
	select {
	case a := <-answers:
		return h.alone(a)
	case <-ctx.Done():
		return h.alone(<-answers)
	case <-timer.C:
	}
	if !h.spend() {
		h.notify(HedgeBudgetExhausted)
		return h.alone(<-answers)
	}
	h.notify(HedgeSent)
	countBackup(ctx)
	backupCtx, cancelBackup := context.WithCancelCause(asBackup(ctx))
	defer cancelBackup(nil)
	bt := *t // the backup's own copy of the fields, should a handler set one
	go h.run(backupCtx, next, &bt, true, answers)

	first := <-answers
	if first.err == nil {
		h.observe(first.took)
		if first.backup {
			cancelPrimary(ErrHedged)
			// The primary had not answered in all that time: its latency
			// counts as at least that, so that the slow calls the hedge
			// cuts short still weigh on the quantile.
			h.observe(time.Since(start))
			h.notify(HedgeWon)
		} else {
			cancelBackup(ErrHedged)
		}
		return first.out, nil
	}
	second := <-answers
	if second.err == nil {
		h.observe(second.took)
		if second.backup {
			h.notify(HedgeWon)
		}
		return second.out, nil
	}
	if first.backup {
		return second.out, second.err
	}
	return first.out, first.err
}

// alone returns the answer of a primary call that had no backup.
func (h *Hedge) alone(a answer) ([]byte, error) {
	if a.err == nil {
		h.observe(a.took)
	}
	return a.out, a.err
}

// run makes one call of a hedge and sends its answer, a panic turned into
// an error (it runs in a goroutine of its own, out of Recover's reach).
func (h *Hedge) run(ctx context.Context, next Handler, t *schemas.Task, backup bool, answers chan<- answer) {
	start := time.Now()
	a := answer{backup: backup}
	defer func() {
		if r := recover(); r != nil {
			a.out, a.err = nil, fmt.Errorf("%w: %v", ErrPanic, r)
		}
		a.took = time.Since(start)
		answers <- a
	}()
	a.out, a.err = next.Handle(ctx, t)
}

// countBackup counts the backup call of a hedge, and its primary too when
// nothing counted it (no Retry outside the hedge), so that the result's
// attempts say 2.
func countBackup(ctx context.Context) {
	if n := callCountsFrom(ctx); n != nil && !n.attempts.CompareAndSwap(0, 2) {
		n.attempts.Add(1)
	}
}

// begin earns a call its share of the budget and returns the delay after
// which it gets a backup; ok is false while too few calls have succeeded.
func (h *Hedge) begin() (delay time.Duration, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.credit = min(h.credit+h.budget, h.maxCredit)
	return h.delay, h.ready
}

// creditEpsilon absorbs the rounding of adding up budgets (20 × 0.05 is
// a little under 1 in floating point).
const creditEpsilon = 1e-9

// spend takes a backup from the budget; false when none is left.
func (h *Hedge) spend() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.credit < 1-creditEpsilon {
		return false
	}
	h.credit = max(h.credit-1, 0)
	return true
}

// observe records the latency of a successful call, and computes the
// delay again once enough new latencies came in: the first time when
// MinHedgeSamples are in, then every 1% of the window. The sort runs
// outside the lock, on a copy.
func (h *Hedge) observe(d time.Duration) {
	h.mu.Lock()
	h.ring[h.next] = d
	h.next = (h.next + 1) % len(h.ring)
	h.filled = min(h.filled+1, len(h.ring))
	h.fresh++
	due := h.filled >= topology.MinHedgeSamples && !h.computing && (!h.ready || h.fresh >= h.every)
	var snap []time.Duration
	if due {
		h.computing, h.fresh = true, 0
		snap = slices.Clone(h.ring[:h.filled])
	}
	h.mu.Unlock()
	if !due {
		return
	}
	slices.Sort(snap)
	i := min(max(int(math.Ceil(h.quantile*float64(len(snap))))-1, 0), len(snap)-1)
	delay := max(snap[i], h.minDelay)
	h.mu.Lock()
	h.delay, h.ready, h.computing = delay, true, false
	h.mu.Unlock()
}
