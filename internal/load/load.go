package load

import (
	"context"
	"time"
)

// Schedule is a constant-rate send plan. Safe for concurrent use.
type Schedule struct {
	start    time.Time
	interval time.Duration
}

// NewSchedule plans rate requests per second (rate > 0), the first one
// now.
func NewSchedule(rate float64) *Schedule {
	return &Schedule{start: time.Now(), interval: time.Duration(float64(time.Second) / rate)}
}

// Due is when request i (counted from 0) is planned to leave.
func (s *Schedule) Due(i int) time.Time { return s.start.Add(time.Duration(i) * s.interval) }

// Wait returns once request i is due, with how far behind its plan it
// already was when called (0 if it had to wait), or ctx's error if ctx
// ends first.
func (s *Schedule) Wait(ctx context.Context, i int) (behind time.Duration, err error) {
	wait := time.Until(s.Due(i))
	if wait <= 0 {
		return -wait, ctx.Err()
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-timer.C:
		return 0, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}
