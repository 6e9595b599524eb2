package gather_test

import (
	"strings"
	"testing"

	"github.com/scattergather/scattergather/processor/gather"
	"github.com/scattergather/scattergather/schemas"
)

func TestStrategies(t *testing.T) {
	const wait = schemas.Outcome("") // not done
	type pr = gather.Progress
	for _, tc := range []struct {
		name     string
		strategy gather.Strategy
		p        gather.Progress
		want     schemas.Outcome
		reason   string // a substring of the reason; "" wants none
	}{
		// all
		{"all/nothing yet", gather.All(), pr{Tasks: 3}, wait, ""},
		{"all/some answered", gather.All(), pr{Tasks: 3, OK: 1, Failed: 1}, wait, ""},
		{"all/every task answered", gather.All(), pr{Tasks: 3, OK: 2, Failed: 1}, schemas.OutcomeComplete, ""},
		{"all/all failed is failed", gather.All(), pr{Tasks: 3, Failed: 3}, schemas.OutcomeFailed, "all 3 tasks failed"},
		{"all/deadline with missing", gather.All(), pr{Tasks: 3, OK: 2, Deadline: true}, schemas.OutcomeTimeout, "1 of 3 tasks did not answer before the deadline"},
		{"all/deadline with 0 answers", gather.All(), pr{Tasks: 3, Deadline: true}, schemas.OutcomeTimeout, "3 of 3 tasks did not answer"},
		{"all/deadline but everyone answered", gather.All(), pr{Tasks: 2, OK: 2, Deadline: true}, schemas.OutcomeComplete, ""},

		// first
		{"first/nothing yet", gather.First(), pr{Tasks: 3}, wait, ""},
		{"first/one failed", gather.First(), pr{Tasks: 3, Failed: 1}, wait, ""},
		{"first/one OK", gather.First(), pr{Tasks: 3, OK: 1}, schemas.OutcomeFirst, ""},
		{"first/OK after failures", gather.First(), pr{Tasks: 3, OK: 1, Failed: 2}, schemas.OutcomeFirst, ""},
		{"first/all failed", gather.First(), pr{Tasks: 3, Failed: 3}, schemas.OutcomeFailed, "all 3 tasks failed"},
		{"first/deadline with 0 answers", gather.First(), pr{Tasks: 3, Deadline: true}, schemas.OutcomeTimeout, "no OK answer before the deadline (3 of 3 tasks did not answer)"},
		{"first/deadline after failures", gather.First(), pr{Tasks: 3, Failed: 2, Deadline: true}, schemas.OutcomeTimeout, "(1 of 3 tasks did not answer)"},
		{"first/OK at the deadline", gather.First(), pr{Tasks: 3, OK: 1, Deadline: true}, schemas.OutcomeFirst, ""},

		// quorum
		{"quorum/nothing yet", gather.Quorum(2), pr{Tasks: 3}, wait, ""},
		{"quorum/one short", gather.Quorum(2), pr{Tasks: 3, OK: 1, Failed: 1}, wait, ""},
		{"quorum/reached", gather.Quorum(2), pr{Tasks: 3, OK: 2}, schemas.OutcomeQuorum, ""},
		{"quorum/reached by all", gather.Quorum(3), pr{Tasks: 3, OK: 3}, schemas.OutcomeQuorum, ""},
		{"quorum/unreachable", gather.Quorum(2), pr{Tasks: 3, OK: 0, Failed: 2}, schemas.OutcomeFailed, "a quorum of 2 OK answers can no longer be reached (0 OK, 2 failed of 3)"},
		{"quorum/exactly reachable", gather.Quorum(2), pr{Tasks: 3, OK: 1, Failed: 1}, wait, ""},
		{"quorum/larger than the tasks", gather.Quorum(4), pr{Tasks: 3}, schemas.OutcomeFailed, "a quorum of 4"},
		{"quorum/deadline with 0 answers", gather.Quorum(2), pr{Tasks: 3, Deadline: true}, schemas.OutcomeTimeout, "0 of the 2 OK answers needed before the deadline"},
		{"quorum/deadline one short", gather.Quorum(2), pr{Tasks: 3, OK: 1, Deadline: true}, schemas.OutcomeTimeout, "1 of the 2 OK answers"},
		{"quorum/reached at the deadline", gather.Quorum(2), pr{Tasks: 3, OK: 2, Deadline: true}, schemas.OutcomeQuorum, ""},
		{"quorum/unreachable at the deadline", gather.Quorum(2), pr{Tasks: 3, Failed: 2, Deadline: true}, schemas.OutcomeFailed, "can no longer be reached"},

		// timeout
		{"timeout/nothing yet", gather.Timeout(), pr{Tasks: 3}, wait, ""},
		{"timeout/some answered", gather.Timeout(), pr{Tasks: 3, OK: 2}, wait, ""},
		{"timeout/all answered early", gather.Timeout(), pr{Tasks: 3, OK: 2, Failed: 1}, schemas.OutcomeComplete, ""},
		{"timeout/all failed early is failed", gather.Timeout(), pr{Tasks: 3, Failed: 3}, schemas.OutcomeFailed, "all 3 tasks failed"},
		{"timeout/deadline with 0 answers", gather.Timeout(), pr{Tasks: 3, Deadline: true}, schemas.OutcomeTimeout, "no OK answer before the deadline (3 of 3 tasks did not answer)"},
		{"timeout/deadline with failures only", gather.Timeout(), pr{Tasks: 3, Failed: 2, Deadline: true}, schemas.OutcomeTimeout, "no OK answer before the deadline (1 of 3 tasks did not answer)"},
		{"timeout/deadline with some", gather.Timeout(), pr{Tasks: 3, OK: 1, Failed: 1, Deadline: true}, schemas.OutcomeDeadline, ""},

		// max_failures
		{"max_failures/below", gather.MaxFailures(1, gather.All()), pr{Tasks: 3}, wait, ""},
		{"max_failures/reached exactly", gather.MaxFailures(1, gather.All()), pr{Tasks: 3, Failed: 1}, wait, ""},
		{"max_failures/exceeded", gather.MaxFailures(1, gather.All()), pr{Tasks: 3, Failed: 2}, schemas.OutcomeFailed, "2 of 3 tasks failed, more than max_failures 1"},
		{"max_failures/0 tolerates none", gather.MaxFailures(0, gather.Timeout()), pr{Tasks: 3, OK: 1, Failed: 1}, schemas.OutcomeFailed, "more than max_failures 0"},
		{"max_failures/reached exactly, then the inner rule", gather.MaxFailures(2, gather.All()), pr{Tasks: 3, OK: 1, Failed: 2}, schemas.OutcomeComplete, ""},
		{"max_failures/all failed", gather.MaxFailures(2, gather.All()), pr{Tasks: 3, Failed: 3}, schemas.OutcomeFailed, "3 of 3 tasks failed, more than max_failures 2"},
		{"max_failures/exceeded wins over a first OK", gather.MaxFailures(1, gather.First()), pr{Tasks: 3, OK: 1, Failed: 2}, schemas.OutcomeFailed, "more than max_failures 1"},
		{"max_failures/exceeded at the deadline", gather.MaxFailures(0, gather.Timeout()), pr{Tasks: 3, Failed: 1, Deadline: true}, schemas.OutcomeFailed, "more than max_failures 0"},
		{"max_failures/no limit", gather.MaxFailures(-1, gather.All()), pr{Tasks: 3, Failed: 2}, wait, ""},

		// a custom strategy through StrategyFunc
		{"func", gather.StrategyFunc(func(p gather.Progress) gather.Decision {
			return gather.Decision{Done: p.OK == 1, Outcome: schemas.OutcomeFirst}
		}), pr{Tasks: 3, OK: 1}, schemas.OutcomeFirst, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.strategy.Decide(tc.p)
			if tc.want == wait {
				if d.Done {
					t.Fatalf("done (%s, %q), want to wait", d.Outcome, d.Reason)
				}
				return
			}
			if !d.Done || d.Outcome != tc.want {
				t.Fatalf("decision %+v, want done with %s", d, tc.want)
			}
			if tc.reason == "" && d.Reason != "" || !strings.Contains(d.Reason, tc.reason) {
				t.Errorf("reason %q, want %q", d.Reason, tc.reason)
			}
		})
	}
}

func TestProgressMissing(t *testing.T) {
	if got := (gather.Progress{Tasks: 5, OK: 2, Failed: 1}).Missing(); got != 2 {
		t.Errorf("missing %d, want 2", got)
	}
}

func TestStrategyFor(t *testing.T) {
	for _, tc := range []struct {
		name                       string
		quorum, maxFailures, tasks int
		p                          gather.Progress
		want                       schemas.Outcome // "" = wait
		wantErr                    string
	}{
		{"all", 0, -1, 2, gather.Progress{Tasks: 2, OK: 2}, schemas.OutcomeComplete, ""},
		{"all", 0, 0, 2, gather.Progress{Tasks: 2, Failed: 1}, schemas.OutcomeFailed, ""},
		{"first", 0, -1, 2, gather.Progress{Tasks: 2, OK: 1}, schemas.OutcomeFirst, ""},
		{"quorum", 2, -1, 3, gather.Progress{Tasks: 3, OK: 2}, schemas.OutcomeQuorum, ""},
		{"quorum", 2, 1, 3, gather.Progress{Tasks: 3, OK: 1, Failed: 1}, "", ""},
		{"quorum", 3, 5, 3, gather.Progress{Tasks: 3, OK: 2, Failed: 1}, schemas.OutcomeFailed, ""},
		// A quorum larger than the tasks is accepted and fails at once.
		{"quorum", 5, -1, 3, gather.Progress{Tasks: 3}, schemas.OutcomeFailed, ""},
		{"timeout", 0, -1, 2, gather.Progress{Tasks: 2, OK: 1, Deadline: true}, schemas.OutcomeDeadline, ""},
		{"timeout", 0, -1, 2, gather.Progress{Tasks: 2, Deadline: true}, schemas.OutcomeTimeout, ""},
		{"quorum", 0, -1, 3, gather.Progress{}, "", `gather: quorum 0: want at least 1`},
		{"quorum", -1, -1, 3, gather.Progress{}, "", `gather: quorum -1: want at least 1`},
		{"fastest", 0, -1, 3, gather.Progress{}, "", `gather: unknown strategy "fastest"`},
		{"", 0, -1, 3, gather.Progress{}, "", `gather: unknown strategy ""`},
		{"ALL", 0, -1, 3, gather.Progress{}, "", `gather: unknown strategy "ALL"`},
	} {
		s, err := gather.StrategyFor(tc.name, tc.quorum, tc.maxFailures, tc.tasks)
		if tc.wantErr != "" {
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("StrategyFor(%q, %d): error %v, want %s", tc.name, tc.quorum, err, tc.wantErr)
			}
			if s != nil {
				t.Errorf("StrategyFor(%q, %d): a strategy with the error", tc.name, tc.quorum)
			}
			continue
		}
		if err != nil {
			t.Errorf("StrategyFor(%q, %d, %d): %v", tc.name, tc.quorum, tc.maxFailures, err)
			continue
		}
		d := s.Decide(tc.p)
		if d.Done != (tc.want != "") || d.Outcome != tc.want {
			t.Errorf("StrategyFor(%q, %d, %d).Decide(%+v) = %+v, want %q", tc.name, tc.quorum, tc.maxFailures, tc.p, d, tc.want)
		}
	}
}
