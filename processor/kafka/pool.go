package kafka

import (
	"sync"
	"sync/atomic"
	"time"
)

// taskPool runs functions on long-lived goroutines: a function starts on a
// goroutine of the pool that waits for work if there is one, on a new one
// otherwise, so the pool grows to the concurrency the caller allows and no
// further. A goroutine idle for the pool's idle time ends. Reusing
// goroutines keeps the stacks they grew while decoding, calling and
// encoding, which a fresh goroutine per task grows again, copying it each
// time it doubles.
type taskPool struct {
	work    chan func()
	quit    chan struct{}
	idle    time.Duration
	wg      sync.WaitGroup
	started atomic.Int64 // goroutines started, for tests
	once    sync.Once
}

func newTaskPool(idle time.Duration) *taskPool {
	return &taskPool{work: make(chan func()), quit: make(chan struct{}), idle: idle}
}

// Go runs f on a goroutine of the pool.
func (p *taskPool) Go(f func()) {
	select {
	case p.work <- f:
	default:
		p.wg.Add(1)
		p.started.Add(1)
		go p.loop(f)
	}
}

func (p *taskPool) loop(f func()) {
	defer p.wg.Done()
	t := time.NewTimer(p.idle)
	defer t.Stop()
	for {
		f()
		t.Reset(p.idle)
		select {
		case f = <-p.work:
		case <-t.C:
			return
		case <-p.quit:
			return
		}
	}
}

// Close ends the pool's goroutines once their functions return and waits
// for them. Go must not be called after Close.
func (p *taskPool) Close() {
	p.once.Do(func() { close(p.quit) })
	p.wg.Wait()
}
