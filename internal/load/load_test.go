package load_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/scattergather/scattergather/internal/load"
)

func TestSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		s := load.NewSchedule(10) // one request every 100ms
		start := time.Now()
		if got := s.Due(3).Sub(start); got != 300*time.Millisecond {
			t.Fatalf("request 3 due after %s, want 300ms", got)
		}
		if behind, err := s.Wait(ctx, 0); behind != 0 || err != nil {
			t.Fatalf("request 0: behind %s, %v", behind, err)
		}
		if behind, err := s.Wait(ctx, 2); behind != 0 || err != nil || time.Since(start) != 200*time.Millisecond {
			t.Fatalf("request 2: behind %s, %v, left after %s", behind, err, time.Since(start))
		}
		advance(time.Second) // the sender stalls: later requests are behind their plan
		if behind, err := s.Wait(ctx, 5); behind != 700*time.Millisecond || err != nil {
			t.Fatalf("request 5: behind %s, %v; want 700ms", behind, err)
		}
		cctx, cancel := context.WithCancel(ctx)
		go func() { advance(50 * time.Millisecond); cancel() }()
		if _, err := s.Wait(cctx, 100); err != context.Canceled {
			t.Fatalf("request 100 after cancel: %v", err)
		}
		if time.Since(start) != 1250*time.Millisecond {
			t.Fatalf("wait ended %s after start, want at the cancel (1.25s)", time.Since(start))
		}
	})
}

// advance lets the fake clock of a synctest bubble move on by d: the
// bubble's goroutines run until all wait, then time jumps.
func advance(d time.Duration) { <-time.After(d) }
