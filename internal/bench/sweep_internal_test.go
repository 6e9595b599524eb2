package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/scattergather/scattergather/schemas"
)

// fakePipeline answers a step as a pipeline whose p99 stays at 50 ms up
// to knee req/s and goes to 500 ms above, and that keeps up to
// saturation req/s.
func fakePipeline(knee, saturation float64, rates *[]float64) func(float64) (Step, error) {
	return func(rate float64) (Step, error) {
		*rates = append(*rates, rate)
		st := Step{Rate: rate, Sustainable: rate <= saturation, Latency: Latency{P99: 50}}
		if rate > knee {
			st.Latency.P99 = 500
		}
		return st, nil
	}
}

func atKnee100(st Step) bool { return st.Sustainable && st.Latency.P99 <= 100 }

func TestSweepRefinesKneeAndSaturation(t *testing.T) {
	low := Step{Rate: 20, Sustainable: true, Latency: Latency{P99: 30}}
	for _, tc := range []struct {
		name             string
		knee, saturation float64
		start            float64
		refine           int
		wantKnee         float64 // the highest rate measured at or below the true knee
		wantSat          float64
		wantSteps        int
	}{
		// Doubling 100…3200 good, 6400 bad; the knee between 800 and
		// 1600 (1131, 1345, 1467), the saturation between 3200 and 6400
		// (4525, 5381 bad, 4934).
		{"apart", 1500, 5000, 100, 3, 1467, 4934, 13},
		// The knee below the first step: bracketed by the low-load step.
		{"knee below the start", 50, 5000, 100, 3, 45, 4934, 13},
		// Nothing sustainable from the first step: both brackets
		// [20, 100) from the low-load step; the knee's (45, 30 both
		// above it) stays there, the saturation's goes on from
		// [45, 100) (67, 55 both bad).
		{"saturated at once", 10, 50, 100, 2, 20, 45, 5},
		{"no refinement", 1500, 5000, 100, 0, 800, 3200, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rates []float64
			steps, err := sweep(tc.start, tc.refine, []Step{low}, atKnee100, fakePipeline(tc.knee, tc.saturation, &rates))
			if err != nil {
				t.Fatal(err)
			}
			if len(steps) != tc.wantSteps || len(rates) != tc.wantSteps {
				t.Errorf("%d steps (rates %v), want %d", len(steps), rates, tc.wantSteps)
			}
			sorted := slices.Clone(rates)
			slices.Sort(sorted)
			if len(slices.Compact(sorted)) != len(rates) {
				t.Errorf("a rate measured twice: %v", rates)
			}
			all := append([]Step{low}, steps...)
			knee, sat := pick(all, atKnee100), pick(all, func(st Step) bool { return st.Sustainable })
			if knee == nil || knee.Rate != tc.wantKnee {
				t.Errorf("knee %+v, want rate %v (rates %v)", knee, tc.wantKnee, rates)
			}
			if sat == nil || sat.Rate != tc.wantSat {
				t.Errorf("saturation %+v, want rate %v (rates %v)", sat, tc.wantSat, rates)
			}
			if tc.refine == 3 && tc.knee > tc.start && (tc.knee/knee.Rate > 1.1 || tc.saturation/sat.Rate > 1.1) {
				t.Errorf("three refinements leave knee %v of %v, saturation %v of %v: not within 10 %%", knee.Rate, tc.knee, sat.Rate, tc.saturation)
			}
		})
	}
}

func TestSweepStopsRefiningANarrowBracket(t *testing.T) {
	var rates []float64
	// Sustainable up to 3200, where the knee is too: one bracket
	// [3200, 6400) for both, the knee's steps narrowing the saturation's.
	steps, err := sweep(100, 10, nil, atKnee100, fakePipeline(3200, 3200, &rates))
	if err != nil {
		t.Fatal(err)
	}
	good, bad := bracket(steps, atKnee100)
	if good != 3200 || bad/good >= 1.05 || bad/good < 1.02 {
		t.Errorf("knee bracket [%v, %v) after rates %v, want it narrowed to under 5 %% above 3200 and no further than needed", good, bad, rates)
	}
	// The saturation's bracket is the knee's: no step of its own.
	if n := len(rates); n != 7+4 {
		t.Errorf("%d steps (%v), want 7 doubling and 4 narrowing [3200, 6400) to under 5 %%", n, rates)
	}
}

func TestSweepReturnsTheStepError(t *testing.T) {
	boom := errors.New("broker gone")
	n := 0
	steps, err := sweep(100, 3, nil, atKnee100, func(rate float64) (Step, error) {
		n++
		if n == 3 {
			return Step{}, boom
		}
		return Step{Rate: rate, Sustainable: true}, nil
	})
	if !errors.Is(err, boom) || len(steps) != 2 {
		t.Errorf("sweep = %d steps, %v; want the 2 before the error and the error", len(steps), err)
	}
}

func TestBracketTakesTheHighestGoodRate(t *testing.T) {
	// Not monotone (a noisy machine): 200 bad, 400 good again.
	var steps []Step
	for _, r := range []struct {
		rate float64
		ok   bool
	}{{100, true}, {200, false}, {400, true}, {800, false}, {1600, false}} {
		steps = append(steps, Step{Rate: r.rate, Sustainable: r.ok})
	}
	good, bad := bracket(steps, func(st Step) bool { return st.Sustainable })
	if good != 400 || bad != 800 {
		t.Errorf("bracket = [%v, %v), want [400, 800)", good, bad)
	}
	if good, bad := bracket(steps[:1], func(st Step) bool { return st.Sustainable }); good != 100 || bad != 0 {
		t.Errorf("bracket of good steps only = [%v, %v), want [100, 0)", good, bad)
	}
}

func TestSweepEndsOnABacklog(t *testing.T) {
	var rates []float64
	base := fakePipeline(1500, 5000, &rates)
	n := 0
	steps, err := sweep(100, 3, nil, atKnee100, func(rate float64) (Step, error) {
		n++
		if n == 4 {
			return Step{}, errBacklog
		}
		return base(rate)
	})
	if err != nil || len(steps) != 3 || len(rates) != 3 {
		t.Errorf("sweep = %d steps (rates %v), %v; want the 3 before the backlog, no more, and no error", len(steps), rates, err)
	}
}

func TestDrainedWaitsForEveryRequest(t *testing.T) {
	r := &runner{track: newTracker()}
	r.seq.Store(3)
	for i := range 2 {
		r.track.arrived(fmt.Sprint(i), time.Now(), &schemas.Aggregate{})
	}
	if err := r.drained(context.Background(), time.Millisecond); !errors.Is(err, errBacklog) {
		t.Errorf("drained = %v with 2 of 3 aggregated, want errBacklog", err)
	}
	r.track.arrived("2", time.Now(), &schemas.Aggregate{})
	if err := r.drained(context.Background(), time.Millisecond); err != nil {
		t.Errorf("drained = %v once all 3 arrived", err)
	}
	// Waiting, it wakes up on the arrival of the last one.
	r.seq.Store(4)
	done := make(chan error, 1)
	go func() { done <- r.drained(context.Background(), time.Hour) }()
	r.track.arrived("3", time.Now(), &schemas.Aggregate{})
	if err := <-done; err != nil {
		t.Errorf("drained = %v once all 4 arrived", err)
	}
}
