package kafka

import (
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// Tasks run at once, each on a goroutine of its own, on goroutines kept
// from earlier tasks when they wait for one; the goroutines end when idle
// for long enough, and when closed.
func TestTaskGoroutinesRunTasksOnKeptGoroutines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newTaskGoroutines(10 * time.Second)
		var ran atomic.Int64
		task := func() { ran.Add(1) }
		started := func(want int64) {
			t.Helper()
			synctest.Wait()
			if got := g.started.Load(); got != want {
				t.Fatalf("%d goroutines started; want %d", got, want)
			}
		}

		release := make(chan struct{})
		g.run(func() { <-release; ran.Add(1) })
		g.run(task) // does not wait for the blocked one
		started(2)
		if got := ran.Load(); got != 1 {
			t.Fatalf("%d tasks ran while one blocks; want 1", got)
		}
		close(release)
		started(2)

		// Both wait for a task: the next two run on them.
		g.run(task)
		synctest.Wait()
		g.run(task)
		started(2)
		if got := ran.Load(); got != 4 {
			t.Fatalf("%d tasks ran; want 4", got)
		}

		// Three at once need a third.
		block := make(chan struct{})
		for range 3 {
			g.run(func() { <-block; ran.Add(1) })
		}
		started(3)
		close(block)
		synctest.Wait()

		// Idle for the idle time, they end: the next task starts one.
		time.Sleep(10*time.Second + time.Millisecond)
		g.run(task)
		started(4)

		g.close()
		synctest.Wait()
		if got := ran.Load(); got != 8 {
			t.Fatalf("%d tasks ran; want 8", got)
		}
		// synctest.Test fails if a goroutine of the bubble is left.
	})
}
