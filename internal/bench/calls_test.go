package bench

import (
	"testing"
	"time"
)

func TestCallCountsCountTheWindowOnly(t *testing.T) {
	c := newCallCounts(2)
	c.start(0, "r1")(true) // before any window: not counted
	c.begin(10)
	c.start(0, "r10")(true) // sent before the window began
	c.start(0, "r11")(true)
	c.start(1, "r11")(false) // cut by a cancellation
	c.start(1, "r12")(true)
	c.start(0, "not-a-bench-id")(true)
	res := c.result(Scenario{Fanout: 2}, Step{Sent: 2})
	if res.Tasks != 4 {
		t.Errorf("tasks %d, want 4", res.Tasks)
	}
	if res.Started != 1.5 || res.Finished != 1 {
		t.Errorf("started %.2f finished %.2f per request, want 1.50 and 1.00", res.Started, res.Finished)
	}
	if res.Extra != -0.25 {
		t.Errorf("extra %.2f, want -0.25 (3 calls for 4 tasks)", res.Extra)
	}
	if res.PeakPerSecond != 1 {
		t.Errorf("t0 peak %.0f calls/s, want 1", res.PeakPerSecond)
	}
}

func TestCallScenariosAreWellFormed(t *testing.T) {
	for _, sc := range CallScenarios() {
		if sc.Calls == nil || sc.Calls.Rate <= 0 || sc.Fanout < 1 {
			t.Errorf("%s: want a rate and a fan-out, have %+v", sc.Name, sc)
		}
		if sc.Calls.Stragglers > 0 && sc.Calls.StragglerLatency < time.Second {
			t.Errorf("%s: stragglers of %s do not straggle", sc.Name, sc.Calls.StragglerLatency)
		}
	}
}
