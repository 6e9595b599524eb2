package bench

import (
	"bytes"
	"strings"
	"testing"
)

func TestTableShowsKneeAndSaturation(t *testing.T) {
	low := &Step{Rate: 20, Sustainable: true, Latency: Latency{P50: 18, P99: 40}}
	knee := &Step{Rate: 1131, Sustainable: true, Latency: Latency{P50: 30, P99: 95},
		CPU: &CPU{Requests: 5655, Profiled: true, Scatter: 20, Workers: 30, Gather: 50, Other: 40, Process: 150, Broker: 90}}
	sat := &Step{Rate: 4525, Sustainable: true, Latency: Latency{P50: 400, P99: 1500}, CPU: &CPU{Requests: 22625, Process: 120}}
	r := &Report{Scenarios: []*ScenarioResult{
		{Scenario: Scenario{Name: "a"}, Steps: []Step{*low, *knee, *sat}, MaxSustainable: 4525, Knee: 1131, KneeP99Ms: 100, LowLoad: low, AtKnee: knee, Saturation: sat, Efficiency: 0.25},
		{Scenario: Scenario{Name: "b"}, Steps: []Step{*sat}, MaxSustainable: 200, KneeP99Ms: 100, LowLoad: low, Saturation: sat},
		{Scenario: Scenario{Name: "c"}, Steps: []Step{{Rate: 100}}, KneeP99Ms: 100, LowLoad: low},
		{Scenario: Scenario{Name: "low only"}, KneeP99Ms: 100, LowLoad: low},
	}}
	var buf bytes.Buffer
	r.WriteTable(&buf)
	out := buf.String()
	for _, want := range []string{
		"a                                  4525       1131     18.0ms     40.0ms     30.0ms     95.0ms       0.25",
		"b                                   200       none     18.0ms     40.0ms          -          -       0.00",
		"c                                  none       none     18.0ms     40.0ms          -          -       0.00",
		"low only                              -          -     18.0ms     40.0ms          -          -       0.00",
		"a, knee                                      1131      150       20       30       50       40      100       90  20/30/50 %",
		"a, saturation                                4525      120        0        0        0        0        0        0  (no profile)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}
