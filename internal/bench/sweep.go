package bench

import (
	"errors"
	"math"
)

// maxSweepRate ends the doubling even when every step is sustainable.
const maxSweepRate = 1e6

// bracket returns the highest rate of steps that passes ok (0 when none)
// and the lowest rate above it that does not (0 when none): the figure
// ok defines lies in [good, bad).
func bracket(steps []Step, ok func(Step) bool) (good, bad float64) {
	for _, st := range steps {
		if ok(st) {
			good = max(good, st.Rate)
		}
	}
	for _, st := range steps {
		if !ok(st) && st.Rate > good && (bad == 0 || st.Rate < bad) {
			bad = st.Rate
		}
	}
	return good, bad
}

// sweep measures steps with run: doubling from start until a step is not
// sustainable, then refine steps in each bracket, the knee's (atKnee)
// and the saturation's (Sustainable), each at the geometric mean of the
// bracket's ends, which halves the bracket's ratio (three steps narrow a
// doubling to 9 %). known are steps measured before (the low-load step):
// they count for the brackets but are not returned. A bracket already
// within 5 % is not refined further. A step that cannot start because the
// pipeline did not work off the steps before (errBacklog) ends the sweep
// with the steps measured.
func sweep(start float64, refine int, known []Step, atKnee func(Step) bool, run func(rate float64) (Step, error)) ([]Step, error) {
	var steps []Step
	all := func() []Step { return append(append([]Step(nil), known...), steps...) }
	for rate := start; ; rate *= 2 {
		st, err := run(rate)
		if errors.Is(err, errBacklog) {
			return steps, nil
		}
		if err != nil {
			return steps, err
		}
		steps = append(steps, st)
		if !st.Sustainable || rate > maxSweepRate {
			break
		}
	}
	sustainable := func(st Step) bool { return st.Sustainable }
	for _, ok := range []func(Step) bool{atKnee, sustainable} {
		for range refine {
			good, bad := bracket(all(), ok)
			if good == 0 || bad == 0 || bad/good < 1.05 {
				break
			}
			st, err := run(math.Round(math.Sqrt(good * bad)))
			if errors.Is(err, errBacklog) {
				return steps, nil
			}
			if err != nil {
				return steps, err
			}
			steps = append(steps, st)
		}
	}
	return steps, nil
}

// pick returns the step of the highest rate that passes ok, or nil.
func pick(steps []Step, ok func(Step) bool) *Step {
	var out *Step
	for i := range steps {
		if ok(steps[i]) && (out == nil || steps[i].Rate > out.Rate) {
			st := steps[i]
			out = &st
		}
	}
	return out
}
