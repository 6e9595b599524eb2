package gateway

import (
	"sync"
	"time"
)

// Key names a request: its flow and its id.
type Key struct{ Flow, ID string }

// Index is a gateway's bounded, time-limited memory of aggregates and of
// the requests it sent. It reads no clock: every call that ages entries
// takes the time. Safe for concurrent use.
//
// Aggregates are kept as their JSON, the first one of each request (a
// later one is a duplicate and ignored), at most max of them, none older
// than ttl, at most maxBytes of them. Sent requests are kept as long, under the same bounds: a
// request this instance produced, so that a retried POST with the same id
// waits for it instead of producing it again, and a GET of it answers 202
// while it is open.
type Index struct {
	max      int
	maxBytes int
	ttl      time.Duration
	bytes    int // of the aggregates held

	mu      sync.Mutex
	aggs    fifo[[]byte]
	sent    fifo[*Sent]
	waiters map[Key]*waiter
}

type waiter struct {
	ch chan struct{}
	n  int
}

// NewIndex returns an index of at most max aggregates of at most maxBytes
// in all, and max sent requests, each forgotten ttl after it was added.
// max < 1 is taken as 1; maxBytes < 1 as no bound on bytes.
func NewIndex(max, maxBytes int, ttl time.Duration) *Index {
	x := &Index{max: maxOf(max, 1), maxBytes: maxBytes, ttl: ttl, sent: newFIFO[*Sent](),
		waiters: map[Key]*waiter{}}
	x.aggs = newFIFO[[]byte]()
	x.aggs.dropped = func(b []byte) { x.bytes -= len(b) }
	return x
}

func maxOf(a, b int) int {
	if a > b {
		return a
	}
	return b
}

// Put adds the aggregate JSON of request k, read at now, and wakes its
// waiters. It reports false, and keeps the first, when k already has one.
// The index keeps aggJSON: the caller must not modify it.
func (x *Index) Put(k Key, aggJSON []byte, now time.Time) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.expire(now)
	if _, ok := x.aggs.get(k); ok {
		return false
	}
	x.aggs.put(k, aggJSON, now)
	x.bytes += len(aggJSON)
	x.aggs.trim(x.max)
	for x.maxBytes > 0 && x.bytes > x.maxBytes && x.aggs.head < len(x.aggs.q) {
		x.aggs.pop()
	}
	if w, ok := x.waiters[k]; ok {
		close(w.ch)
		delete(x.waiters, k)
	}
	return true
}

// Get returns the aggregate JSON of request k, if the index holds it. The
// caller must not modify it.
func (x *Index) Get(k Key, now time.Time) ([]byte, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.expire(now)
	return x.aggs.get(k)
}

// Await returns the aggregate JSON of k if the index holds it; otherwise a
// channel closed once it is added, and a release function the caller must
// call when it stops waiting.
func (x *Index) Await(k Key, now time.Time) (aggJSON []byte, added <-chan struct{}, release func()) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.expire(now)
	if b, ok := x.aggs.get(k); ok {
		return b, nil, func() {}
	}
	w := x.waiters[k]
	if w == nil {
		w = &waiter{ch: make(chan struct{})}
		x.waiters[k] = w
	}
	w.n++
	var once sync.Once
	return nil, w.ch, func() {
		once.Do(func() {
			x.mu.Lock()
			defer x.mu.Unlock()
			if w.n--; w.n == 0 && x.waiters[k] == w {
				delete(x.waiters, k)
			}
		})
	}
}

// Sent is a request a gateway accepted for production: pending until the
// broker acknowledged it or its production failed.
type Sent struct {
	// Digest identifies what was sent (payload and attributes), so that a
	// retry with the same id but another body can be told apart.
	Digest [32]byte

	done chan struct{}
	err  error
}

// Done is closed once the production's outcome is known (see Err).
func (s *Sent) Done() <-chan struct{} { return s.done }

// Err is the production's error, nil when the broker acknowledged the
// request. Valid once Done is closed.
func (s *Sent) Err() error { return s.err }

// Accept records that request k, whose body has digest, is being sent at
// now. When k is already sent or being sent and that production has not
// failed, it returns that one and fresh false: the caller must not send k
// again. Otherwise it returns a new pending Sent and fresh true: the
// caller sends k and reports the outcome with Settle.
func (x *Index) Accept(k Key, digest [32]byte, now time.Time) (s *Sent, fresh bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.expire(now)
	if s, ok := x.sent.get(k); ok {
		return s, false
	}
	s = &Sent{Digest: digest, done: make(chan struct{})}
	x.sent.put(k, s, now)
	x.sent.trim(x.max)
	return s, true
}

// Settle reports the outcome of sending s, which Accept returned fresh for
// k. A failed production is forgotten, so that a retry sends k again.
func (x *Index) Settle(k Key, s *Sent, err error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	s.err = err
	close(s.done)
	if err != nil {
		if cur, ok := x.sent.get(k); ok && cur == s {
			x.sent.remove(k)
		}
	}
}

// Sent returns request k if this index accepted it and it has not been
// forgotten.
func (x *Index) Sent(k Key, now time.Time) (*Sent, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.expire(now)
	return x.sent.get(k)
}

// Len returns how many aggregates and sent requests the index holds, and
// the bytes of the aggregates.
func (x *Index) Len() (aggregates, sent, bytes int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.aggs.m), len(x.sent.m), x.bytes
}

func (x *Index) expire(now time.Time) {
	x.aggs.expire(now.Add(-x.ttl))
	x.sent.expire(now.Add(-x.ttl))
}

// fifo is a map whose entries leave in the order they came: the oldest
// first, when too old or too many.
type fifo[V any] struct {
	m       map[Key]fifoEntry[V]
	q       []queued
	head    int
	seq     uint64
	dropped func(V) // told each value that leaves; may be nil
}

type fifoEntry[V any] struct {
	v   V
	seq uint64
}

type queued struct {
	k   Key
	at  time.Time
	seq uint64
}

func newFIFO[V any]() fifo[V] { return fifo[V]{m: map[Key]fifoEntry[V]{}} }

func (f *fifo[V]) get(k Key) (V, bool) {
	e, ok := f.m[k]
	return e.v, ok
}

func (f *fifo[V]) put(k Key, v V, at time.Time) {
	f.seq++
	f.m[k] = fifoEntry[V]{v: v, seq: f.seq}
	f.q = append(f.q, queued{k: k, at: at, seq: f.seq})
}

func (f *fifo[V]) remove(k Key) {
	if e, ok := f.m[k]; ok {
		delete(f.m, k)
		if f.dropped != nil {
			f.dropped(e.v)
		}
	}
}

// pop drops the oldest queued entry, and the map's entry if it is still
// that one.
func (f *fifo[V]) pop() {
	q := f.q[f.head]
	f.q[f.head] = queued{}
	f.head++
	if e, ok := f.m[q.k]; ok && e.seq == q.seq {
		f.remove(q.k)
	}
	if f.head > 1024 && f.head > len(f.q)/2 {
		f.q = append([]queued(nil), f.q[f.head:]...)
		f.head = 0
	}
}

// expire drops the entries added before cutoff.
func (f *fifo[V]) expire(cutoff time.Time) {
	for f.head < len(f.q) && f.q[f.head].at.Before(cutoff) {
		f.pop()
	}
}

// trim drops the oldest entries until at most max remain.
func (f *fifo[V]) trim(max int) {
	for len(f.m) > max && f.head < len(f.q) {
		f.pop()
	}
}
