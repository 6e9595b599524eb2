package kafka

import (
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

func TestTaskPoolReusesIdleGoroutines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newTaskPool(time.Minute)
		var ran atomic.Int64
		for range 5 {
			p.Go(func() { ran.Add(1) })
			synctest.Wait() // the function returned; its goroutine waits for work
		}
		if got := p.started.Load(); got != 1 {
			t.Errorf("%d goroutines started for 5 functions in a row, want 1", got)
		}
		// Functions that overlap each get a goroutine.
		release := make(chan struct{})
		for range 3 {
			p.Go(func() { <-release; ran.Add(1) })
		}
		if got := p.started.Load(); got != 3 {
			t.Errorf("%d goroutines started for 3 overlapping functions after one idle, want 3", got)
		}
		close(release)
		p.Close()
		if got := ran.Load(); got != 8 {
			t.Errorf("%d functions ran, want 8", got)
		}
	})
}

func TestTaskPoolIdleGoroutinesEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newTaskPool(time.Second)
		p.Go(func() {})
		done := make(chan struct{})
		go func() { p.wg.Wait(); close(done) }()
		// With fake time, the idle timer fires once every goroutine of
		// the bubble blocks: the pool's goroutine ends by itself.
		<-done
		p.Go(func() {})
		if got := p.started.Load(); got != 2 {
			t.Errorf("%d goroutines started, want 2 (the first ended when idle)", got)
		}
		p.Close()
	})
}

// deepWork grows a goroutine's stack as encoding a record does (a few
// KiB of frames), then returns.
//
//go:noinline
func deepWork(n int) int {
	var buf [256]byte
	buf[n%256] = byte(n)
	if n == 0 {
		return int(buf[0])
	}
	return deepWork(n-1) + int(buf[n%256])
}

// BenchmarkTasks compares a goroutine per task with the pool's reused
// goroutines, for tasks that grow their stacks to about 16 KiB and run 64
// at a time.
func BenchmarkTasks(b *testing.B) {
	run := func(b *testing.B, spawn func(func())) {
		sem := make(chan struct{}, 64)
		var wg sync.WaitGroup
		for i := 0; b.Loop(); i++ {
			sem <- struct{}{}
			wg.Add(1)
			spawn(func() {
				deepWork(48)
				<-sem
				wg.Done()
			})
		}
		wg.Wait()
	}
	b.Run("goroutine per task", func(b *testing.B) { run(b, func(f func()) { go f() }) })
	b.Run("pool", func(b *testing.B) {
		p := newTaskPool(30 * time.Second)
		defer p.Close()
		run(b, p.Go)
	})
}
