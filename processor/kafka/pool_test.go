package kafka

import (
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
