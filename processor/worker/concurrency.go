package worker

import (
	"context"
	"math"
	"sync"
	"time"
)

// InitialConcurrency is where an adaptive ConcurrencyLimiter starts, within
// its floor and ceiling: enough for a provider of a few milliseconds to be
// busy from the start, few enough not to flood a slow one before the first
// answers come back.
const InitialConcurrency = 20

// Constants of the gradient algorithm (see ConcurrencyLimiter).
const (
	gradientTolerance = 1.5  // how much slower than usual the calls may get before the limit shrinks
	gradientSmoothing = 0.2  // weight of each new estimate of the limit
	shortRTTSamples   = 10   // window of the short-term average latency
	longRTTSamples    = 600  // window of the long-term average latency
	longRTTDecay      = 0.95 // pulls the long-term latency down toward a recovered short-term one
)

// Sample is what a finished task tells a ConcurrencyLimiter.
type Sample struct {
	// RTT is how long the provider took to answer the task, waits for a
	// rate limit's turn and between retries left out.
	RTT time.Duration
	// Measured says whether RTT measured the provider. It is false for a
	// task answered without a call (rate limited, circuit open, deadline
	// passed, cancelled before it started), and for a call cut short
	// because its request was decided: they say nothing of the
	// provider's latency.
	Measured bool
}

// ConcurrencyLimiter bounds the tasks of one target that a worker runs at
// once. Fixed (NewFixedLimiter), the limit never moves. Adaptive
// (NewAdaptiveLimiter), it follows the provider's latency with the
// gradient algorithm of Netflix's concurrency-limits library (Gradient2):
// after each measured call it updates a short-term average of the calls'
// latency (an exponential moving average over about 10 samples) and a
// long-term one (about 600), then sets
//
//	gradient = clamp(1.5 × long ÷ short, 0.5, 1)
//	limit    = 0.8 × limit + 0.2 × (limit × gradient + √limit)
//
// within the floor and the ceiling. While the provider answers as fast as
// it used to, the gradient is 1 and the limit grows by about √limit ÷ 5 a
// call; once calls queue at the provider and get slower than 1.5 times the
// long-term latency, the limit shrinks, by at most a tenth a call. The
// limit moves only while the limiter is in use (at least half the limit in
// flight): nothing else shows that the limit is too small, and it would
// grow without bound. When the long-term latency is more than twice the
// short-term one, it decays by 5% a call, so that a provider that has
// recovered from a slow spell is not held to it for hundreds of calls.
//
// Safe for concurrent use.
type ConcurrencyLimiter struct {
	adaptive       bool
	floor, ceiling float64
	notify         func(limit int)

	mu          sync.Mutex
	limit       float64
	inFlight    int
	short, long float64 // average latencies, in nanoseconds; 0 before the first sample
	freed       chan struct{}
}

// NewAdaptiveLimiter returns an adaptive limiter between floor and ceiling
// (at least 1; a floor above the ceiling is taken as the ceiling), which
// starts at InitialConcurrency within them. notify, if not nil, is told
// the limit each time its integer value changes; it is called with the
// limiter's lock held, so it must be quick and must not call the limiter.
func NewAdaptiveLimiter(floor, ceiling int, notify func(limit int)) *ConcurrencyLimiter {
	ceiling = max(ceiling, 1)
	floor = min(max(floor, 1), ceiling)
	l := newLimiter(max(min(InitialConcurrency, ceiling), floor), notify)
	l.adaptive, l.floor, l.ceiling = true, float64(floor), float64(ceiling)
	return l
}

// NewFixedLimiter returns a limiter whose limit is n (at least 1).
func NewFixedLimiter(n int) *ConcurrencyLimiter {
	n = max(n, 1)
	l := newLimiter(n, nil)
	l.floor, l.ceiling = float64(n), float64(n)
	return l
}

func newLimiter(limit int, notify func(int)) *ConcurrencyLimiter {
	if notify == nil {
		notify = func(int) {}
	}
	return &ConcurrencyLimiter{limit: float64(limit), notify: notify, freed: make(chan struct{})}
}

// Limit returns the limit now.
func (l *ConcurrencyLimiter) Limit() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return int(l.limit)
}

// InFlight returns the tasks acquired and not yet released.
func (l *ConcurrencyLimiter) InFlight() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.inFlight
}

// Acquire takes a place for one task, waiting while the limit's worth are
// in flight. It returns the context's cause, without a place, when ctx
// ends first (or has ended). Each Acquire that returns nil needs one
// Release.
func (l *ConcurrencyLimiter) Acquire(ctx context.Context) error {
	for {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		l.mu.Lock()
		if l.inFlight < int(l.limit) {
			l.inFlight++
			l.mu.Unlock()
			return nil
		}
		freed := l.freed
		l.mu.Unlock()
		select {
		case <-freed:
		case <-ctx.Done():
		}
	}
}

// Release gives back the place of a finished task, and with a measured
// sample updates an adaptive limit.
func (l *ConcurrencyLimiter) Release(s Sample) {
	l.mu.Lock()
	defer l.mu.Unlock()
	before := int(l.limit)
	if s.Measured && l.adaptive {
		l.update(float64(max(s.RTT, 1)), l.inFlight)
	}
	l.inFlight = max(l.inFlight-1, 0)
	// Wake every waiter: one takes the place freed, and more when the
	// limit grew.
	close(l.freed)
	l.freed = make(chan struct{})
	if after := int(l.limit); after != before {
		l.notify(after)
	}
}

// update folds in the latency rtt (nanoseconds) of a call that finished
// with inFlight tasks in flight, itself included. l.mu is held.
func (l *ConcurrencyLimiter) update(rtt float64, inFlight int) {
	if l.short == 0 {
		l.short, l.long = rtt, rtt
	} else {
		l.short += (rtt - l.short) * 2 / (shortRTTSamples + 1)
		l.long += (rtt - l.long) * 2 / (longRTTSamples + 1)
	}
	if l.long > 2*l.short {
		l.long *= longRTTDecay
	}
	if float64(inFlight) < l.limit/2 {
		return // not in use: no sign the limit is too small
	}
	gradient := min(max(gradientTolerance*l.long/l.short, 0.5), 1)
	next := l.limit*gradient + math.Sqrt(l.limit)
	l.limit = min(max(l.limit*(1-gradientSmoothing)+next*gradientSmoothing, l.floor), l.ceiling)
}

// Slot is the place one task holds under its target's ConcurrencyLimiter.
// A task that waits for its turn under the target's rate limit steps aside
// while it waits (the RateLimiter's middleware does it, through the
// task's context: see WithSlot): it gives its place back and takes one
// again before it calls, so that tasks waiting for turns, which may wait
// up to their deadlines, do not keep the target's other tasks from being
// answered (refused at once, when their turn would come too late). Safe
// for concurrent use.
type Slot struct {
	l    *ConcurrencyLimiter
	mu   sync.Mutex
	held bool
	done bool // released for good: a late retake gives its place back
}

// NewSlot returns the slot of a place already acquired from l.
func NewSlot(l *ConcurrencyLimiter) *Slot { return &Slot{l: l, held: true} }

// Release gives the place back for good, if the slot holds it, with the
// task's sample.
func (s *Slot) Release(sample Sample) { s.giveBack(sample, true) }

// stepAside gives the place back, without a sample, while the task waits.
func (s *Slot) stepAside() { s.giveBack(Sample{}, false) }

func (s *Slot) giveBack(sample Sample, done bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done = s.done || done
	if s.held {
		s.held = false
		s.l.Release(sample)
	}
}

// retake takes a place again after stepAside; it fails with the context's
// cause when ctx ends first.
func (s *Slot) retake(ctx context.Context) error {
	s.mu.Lock()
	held := s.held
	s.mu.Unlock()
	if held {
		return nil
	}
	if err := s.l.Acquire(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held || s.done {
		// Another call of the task took it back first, or the task ended.
		s.l.Release(Sample{})
		return nil
	}
	s.held = true
	return nil
}

type slotKey struct{}

// WithSlot returns ctx carrying the task's slot, for the middleware that
// waits (RateLimiter) to step aside.
func WithSlot(ctx context.Context, s *Slot) context.Context {
	return context.WithValue(ctx, slotKey{}, s)
}

func slotFrom(ctx context.Context) *Slot {
	s, _ := ctx.Value(slotKey{}).(*Slot)
	return s
}
