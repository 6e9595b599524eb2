package gather

import (
	"fmt"

	"github.com/scattergather/scattergather/processor/topology"
	"github.com/scattergather/scattergather/schemas"
)

// Progress is what a strategy decides on: the counts of one request.
type Progress struct {
	Tasks  int // tasks scattered
	OK     int // distinct tasks that answered OK
	Failed int // distinct tasks that answered ERROR or could not be consolidated
	// Deadline is true when stream time has passed the request's deadline:
	// the strategy must then decide.
	Deadline bool
}

// Missing is the number of tasks that have not answered.
func (p Progress) Missing() int { return p.Tasks - p.OK - p.Failed }

// Decision is a strategy's verdict. Done is false while the request should
// wait for more answers.
type Decision struct {
	Done    bool
	Outcome schemas.Outcome
	Reason  string
}

// Strategy decides when a request is complete. Implementations must be
// deterministic functions of Progress and safe for concurrent use.
type Strategy interface {
	Decide(p Progress) Decision
}

// StrategyFunc adapts a function to Strategy.
type StrategyFunc func(Progress) Decision

// Decide calls f(p).
func (f StrategyFunc) Decide(p Progress) Decision { return f(p) }

func wait() Decision { return Decision{} }

func done(o schemas.Outcome, format string, args ...any) Decision {
	return Decision{Done: true, Outcome: o, Reason: fmt.Sprintf(format, args...)}
}

func timedOut(p Progress) Decision {
	return done(schemas.OutcomeTimeout, "%d of %d tasks did not answer before the deadline", p.Missing(), p.Tasks)
}

// allFailed is the decision when every task answered ERROR: failed, for
// every strategy, so that an outcome other than failed or timeout always
// carries at least one OK answer.
func allFailed(p Progress) Decision {
	return done(schemas.OutcomeFailed, "all %d tasks failed", p.Tasks)
}

// All completes when every task answered (OK or ERROR), as failed when
// none answered OK; the deadline is an abnormal end (timeout).
func All() Strategy {
	return StrategyFunc(func(p Progress) Decision {
		switch {
		case p.Tasks > 0 && p.Failed == p.Tasks:
			return allFailed(p)
		case p.Missing() == 0:
			return Decision{Done: true, Outcome: schemas.OutcomeComplete}
		case p.Deadline:
			return timedOut(p)
		}
		return wait()
	})
}

// First completes at the first OK answer, or as failed when every task
// failed.
func First() Strategy {
	return StrategyFunc(func(p Progress) Decision {
		switch {
		case p.OK > 0:
			return Decision{Done: true, Outcome: schemas.OutcomeFirst}
		case p.Failed == p.Tasks:
			return allFailed(p)
		case p.Deadline:
			return done(schemas.OutcomeTimeout, "no OK answer before the deadline (%d of %d tasks did not answer)", p.Missing(), p.Tasks)
		}
		return wait()
	})
}

// Quorum completes when n tasks answered OK, or as failed as soon as n can
// no longer be reached.
func Quorum(n int) Strategy {
	return StrategyFunc(func(p Progress) Decision {
		switch {
		case p.OK >= n:
			return Decision{Done: true, Outcome: schemas.OutcomeQuorum}
		case p.OK+p.Missing() < n:
			return done(schemas.OutcomeFailed, "a quorum of %d OK answers can no longer be reached (%d OK, %d failed of %d)", n, p.OK, p.Failed, p.Tasks)
		case p.Deadline:
			return done(schemas.OutcomeTimeout, "%d of the %d OK answers needed before the deadline", p.OK, n)
		}
		return wait()
	})
}

// Timeout collects until the deadline, its normal end (deadline), and
// completes early only when every task answered; as failed when every task
// failed, and as timeout when the deadline came without an OK answer.
func Timeout() Strategy {
	return StrategyFunc(func(p Progress) Decision {
		switch {
		case p.Tasks > 0 && p.Failed == p.Tasks:
			return allFailed(p)
		case p.Missing() == 0:
			return Decision{Done: true, Outcome: schemas.OutcomeComplete}
		case p.Deadline && p.OK == 0:
			return done(schemas.OutcomeTimeout, "no OK answer before the deadline (%d of %d tasks did not answer)", p.Missing(), p.Tasks)
		case p.Deadline:
			return Decision{Done: true, Outcome: schemas.OutcomeDeadline}
		}
		return wait()
	})
}

// MaxFailures wraps s: the request completes as failed as soon as more than
// max tasks failed. A negative max means no limit.
func MaxFailures(max int, s Strategy) Strategy {
	if max < 0 {
		return s
	}
	return StrategyFunc(func(p Progress) Decision {
		if p.Failed > max {
			return done(schemas.OutcomeFailed, "%d of %d tasks failed, more than max_failures %d", p.Failed, p.Tasks, max)
		}
		return s.Decide(p)
	})
}

// StrategyFor returns the strategy a manifest names, with its quorum and
// max_failures. It fails for an unknown name or a quorum below 1; a quorum
// above the number of tasks is accepted and fails the request at once.
func StrategyFor(name string, quorum, maxFailures, tasks int) (Strategy, error) {
	var s Strategy
	switch name {
	case topology.StrategyAll:
		s = All()
	case topology.StrategyFirst:
		s = First()
	case topology.StrategyQuorum:
		if quorum < 1 {
			return nil, fmt.Errorf("gather: quorum %d: want at least 1", quorum)
		}
		s = Quorum(quorum)
	case topology.StrategyTimeout:
		s = Timeout()
	default:
		return nil, fmt.Errorf("gather: unknown strategy %q", name)
	}
	return MaxFailures(maxFailures, s), nil
}
