package topology_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/scattergather/scattergather/processor/topology"
)

// percentile is a consolidation registered for the tests: field is
// path@percent, the percent from 1 to 99.
func init() {
	topology.RegisterConsolidation("percentile", func(c topology.Consolidate) error {
		_, p, ok := strings.Cut(c.Field, "@")
		if n, err := strconv.Atoi(p); !ok || err != nil || n < 1 || n > 99 {
			return fmt.Errorf("percentile: field must be path@percent with a percent from 1 to 99, have %q", c.Field)
		}
		return nil
	})
	topology.RegisterConsolidation("unchecked", nil)
}

func TestRegisteredConsolidations(t *testing.T) {
	for _, tc := range []struct {
		consolidate string
		want        string // "" for valid
	}{
		{"{type: percentile, field: price@50}", ""},
		{"{type: unchecked}", ""},
		{"{type: unchecked, field: anything}", ""},
		{"{type: percentile, field: price}", `t.yaml:1:67: flows[0].consolidate: percentile: field must be path@percent with a percent from 1 to 99, have "price"`},
		{"{type: mni}", `t.yaml:1:74: flows[0].consolidate.type: unknown consolidation "mni" (one of collect, min, max, vote, merge, sum, percentile, unchecked; others are registered in Go with gather.Register)`},
		{"{type: unchecked, top: 3}", `t.yaml:1:90: flows[0].consolidate.top: not used with type: unchecked`},
	} {
		_, err := parse(t, "flows: [{name: f, timeout: 1s, targets: [{name: a}], consolidate: "+tc.consolidate+"}]", nil)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.consolidate, got, tc.want)
		}
	}
}

func TestRegisterConsolidationPanics(t *testing.T) {
	for _, name := range []string{"collect", "min", "max", "vote", "merge", "sum", "percentile"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("RegisterConsolidation(%q) did not panic", name)
				}
			}()
			topology.RegisterConsolidation(name, nil)
		}()
	}
}

// Problem locates a path of a parsed topology as Parse does: at the key, or
// at its nearest written parent.
func TestProblem(t *testing.T) {
	topo := mustParse(t, "flows:\n  - name: f\n    timeout: 1s\n    targets: [{name: a}]\n    consolidate: {type: min, field: p}\n")
	for _, tc := range []struct{ path, want string }{
		{"flows[0].consolidate.type", "t.yaml:5:25: flows[0].consolidate.type: m 1"},
		{"flows[0].consolidate", "t.yaml:5:18: flows[0].consolidate: m 1"},
		{"flows[0].strategy", "t.yaml:2:5: flows[0].strategy: m 1"},
		{"", "t.yaml:1:1: m 1"},
	} {
		p := topo.Problem(tc.path, "m %d", 1)
		if got := p.Error(); got != tc.want {
			t.Errorf("Problem(%q) = %q, want %q", tc.path, got, tc.want)
		}
	}
	// Without Parse: the path alone.
	var bare topology.Topology
	if got := bare.Problem("flows[0]", "m").Error(); got != "flows[0]: m" {
		t.Errorf("unparsed: %q", got)
	}
}
