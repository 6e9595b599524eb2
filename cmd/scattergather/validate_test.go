package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/scattergather/scattergather/processor/gather"
	"github.com/scattergather/scattergather/processor/topology"
)

// join_labels is a consolidation registered for these tests, as a program
// with its own consolidations would: field is the separator, one character.
func init() {
	gather.Register("join_labels", func(c topology.Consolidate) (gather.Consolidator, error) {
		if len(c.Field) != 1 {
			return nil, fmt.Errorf("join_labels: field must be one separator character, have %q", c.Field)
		}
		return gather.ConsolidatorFunc(func(in []gather.Input) (json.RawMessage, error) {
			return json.RawMessage(`""`), nil
		}), nil
	})
}

// TestValidateRefusesWhatRunRefuses: validate exits 1 and names the YAML
// path, with its line and column, of every consolidation that the gather
// would refuse at start.
func TestValidateRefusesWhatRunRefuses(t *testing.T) {
	const known = "(one of collect, min, max, vote, merge, sum, join_labels; others are registered in Go with gather.Register)"
	for _, tc := range []struct {
		name        string
		consolidate string
		code        int
		stderr      string
	}{
		{"typo", "{type: mni}", exitFail, `:6:25: flows[0].consolidate.type: unknown consolidation "mni" ` + known},
		{"upper case", "{type: MIN, field: price}", exitFail, `:6:25: flows[0].consolidate.type: unknown consolidation "MIN"`},
		{"not built in nor registered", "{type: median, field: price}", exitFail, `:6:25: flows[0].consolidate.type: unknown consolidation "median"`},
		{"trailing space", `{type: "vote ", field: label}`, exitFail, `:6:25: flows[0].consolidate.type: unknown consolidation "vote "`},
		{"registered, refused by its builder", "{type: join_labels, field: ', '}", exitFail,
			`:6:18: flows[0].consolidate: join_labels: field must be one separator character, have ", "`},
		{"registered, accepted by its builder", "{type: join_labels, field: ','}", exitOK, ""},
		{"built in", "{type: min, field: price}", exitOK, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := writeFile(t, "topology.yaml", `
flows:
  - name: f
    timeout: 1s
    targets: [{name: a}]
    consolidate: `+tc.consolidate+`
`)
			r := runCmd(context.Background(), "", "validate", "--topology", file)
			if r.code != tc.code {
				t.Errorf("exit code %d, want %d\nstdout: %s\nstderr: %s", r.code, tc.code, r.stdout, r.stderr)
			}
			if tc.code == exitOK {
				if !strings.Contains(r.stdout, "OK (1 flow(s): f)") || r.stderr != "" {
					t.Errorf("stdout %q stderr %q, want OK", r.stdout, r.stderr)
				}
				return
			}
			if want := file + tc.stderr; !strings.Contains(r.stderr, want) {
				t.Errorf("stderr %q does not contain %q", r.stderr, want)
			}
			if !strings.Contains(r.stderr, "1 problem(s)") {
				t.Errorf("stderr %q does not count 1 problem", r.stderr)
			}
		})
	}
}

// TestValidateListsEveryFlow: the problems of every flow are listed at once.
func TestValidateListsEveryFlow(t *testing.T) {
	file := writeFile(t, "topology.yaml", `
flows:
  - {name: f1, timeout: 1s, targets: [{name: a}], consolidate: {type: mni, field: price}}
  - {name: f2, timeout: 1s, targets: [{name: a}], consolidate: {type: min, field: price}}
  - {name: f3, timeout: 1s, targets: [{name: a}], consolidate: {type: join_labels}}
`)
	r := runCmd(context.Background(), "", "validate", "--topology", file)
	for _, want := range []string{
		`flows[0].consolidate.type: unknown consolidation "mni"`,
		`flows[2].consolidate: join_labels: field must be one separator character, have ""`,
		"2 problem(s)",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr %q does not contain %q", r.stderr, want)
		}
	}
	if r.code != exitFail || strings.Contains(r.stderr, "flows[1]") {
		t.Errorf("exit code %d, stderr %q", r.code, r.stderr)
	}
}

// TestBuildFlows: what the gather and the scatter refuse in a topology that
// did not go through Parse's checks is a problem at the flow's path.
func TestBuildFlows(t *testing.T) {
	timeout, limits := topology.Duration{D: 2 * time.Second}, topology.Limits{MaxTimeout: topology.Duration{D: time.Hour}}
	ok := &topology.Flow{Name: "ok", Partitions: 1, Timeout: timeout, Limits: limits, Consolidate: topology.Consolidate{Type: "collect"}}
	badCons := &topology.Flow{Name: "bad", Partitions: 1, Timeout: timeout, Limits: limits, Consolidate: topology.Consolidate{Type: "mni"}}
	noParts := &topology.Flow{Name: "np", Partitions: 0, Timeout: timeout, Limits: limits, Consolidate: topology.Consolidate{Type: "collect"}}
	err := buildFlows(&topology.Topology{File: "t.yaml", Flows: []*topology.Flow{ok, badCons, noParts}})
	var te *topology.Error
	if !errors.As(err, &te) {
		t.Fatalf("error %v, want a *topology.Error", err)
	}
	want := `t.yaml: flows[1]: gather: unknown consolidation "mni": register it with gather.Register` + "\n" +
		`t.yaml: flows[2]: scatter: results topic  has 0 partitions`
	if err.Error() != want {
		t.Errorf("error\n%s\nwant\n%s", err, want)
	}
	if err := buildFlows(&topology.Topology{Flows: []*topology.Flow{ok}}); err != nil {
		t.Errorf("valid flow: %v", err)
	}
}
