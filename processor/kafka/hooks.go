package kafka

import (
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scattergather/scattergather/processor/topology"
)

// Hook observes the roles, as franz-go's kgo.Hook observes a client: any
// value that implements one or more of the Hook* interfaces below, each
// called for its event. Hooks are called synchronously from the roles'
// loops, possibly from several goroutines at once: they must be quick and
// safe for concurrent use. The metrics package implements every one for
// Prometheus; a program that embeds the roles can add its own.
type Hook any

// Events of every role. role is "scatter", "gather" or "worker/<target>".
type (
	// HookLag is told a role's consumer lag after each poll: records
	// between its position and the end of its input, summed over its
	// partitions.
	HookLag interface {
		OnLag(flow, role string, records int64)
	}
	// HookTransactionEnd is told each ended transaction of the scatter
	// and the gather.
	HookTransactionEnd interface {
		OnTransactionEnd(flow, role string, committed bool)
	}
	// HookTransactionTimed is told, for each ended transaction of the
	// scatter and the gather, the records of its input it carried, how
	// long it lasted from its begin to the brokers' answer to its end, and
	// how much of that was the end: waiting for its outputs to be
	// acknowledged, adding its offsets and ending it.
	HookTransactionTimed interface {
		OnTransactionTimed(flow, role string, records int, took, end time.Duration)
	}
	// HookDeadLetter is told each record written to the dead-letter
	// topic, with its stage and its kind of reason (schemas' kinds).
	HookDeadLetter interface {
		OnDeadLetter(flow, stage, kind string)
	}
	// HookRecordRewritten is told each record written in another form
	// than the role made it because it could not be written as it was
	// (too large for the producer or for topic, or refused by the broker):
	// how is one of the Rewrite constants. topic is the topic the record
	// was meant for. The scatter and the gather tell it once their
	// transaction committed, the worker once the broker acknowledged.
	HookRecordRewritten interface {
		OnRecordRewritten(flow, role, topic, how string)
	}
	// HookRoleRestart is told when a supervised role starts, and each
	// restart of it after a transient failure.
	HookRoleRestart interface {
		OnRoleStart(flow, role string)
		OnRoleRestart(flow, role string)
	}
	// HookClient gives each Kafka client a role makes its franz-go hooks
	// (client metrics, for instance). client names the client's use
	// ("gather", "worker.<target>", "admin"...).
	HookClient interface {
		ClientHooks(client string) []kgo.Hook
	}
)

// Events of the scatter.
type (
	// HookRequestScattered is told each request scattered, with the
	// target of each of its tasks, once its transaction committed.
	HookRequestScattered interface {
		OnRequestScattered(flow string, targets []string)
	}
)

// Events of the worker.
type (
	// HookResultWritten is told each result a worker wrote, with its
	// status (OK or ERROR) and the time spent on the task.
	HookResultWritten interface {
		OnResultWritten(flow, target, status string, took time.Duration)
	}
	// HookCircuitBreaker is told each event of a target's circuit
	// breaker: "opened", "closed", or "rejected" for a call it refused.
	HookCircuitBreaker interface {
		OnCircuitBreaker(flow, target, event string)
	}
	// HookTaskInFlight is told each task a worker starts (+1) and
	// finishes (-1).
	HookTaskInFlight interface {
		OnTaskInFlight(flow, target string, delta int)
	}
	// HookTaskRefused is told each task a worker answered ERROR without
	// running it, once the result is written (HookResultWritten is told
	// too): a task of the flow for a target its topic does not serve.
	// target is the topic's target; kind is schemas' kind of reason
	// (wrong_target).
	HookTaskRefused interface {
		OnTaskRefused(flow, target, kind string)
	}
	// HookTaskCancelled is told each task answered ERROR "cancelled:
	// request decided" because the gather had decided its request, once
	// the result is written (HookResultWritten is told too). when is
	// CancelledBeforeCall or CancelledInFlight.
	HookTaskCancelled interface {
		OnTaskCancelled(flow, target, when string)
	}
	// HookRateLimit is told each event of a target's rate limiter:
	// "delayed" (a call waited for its turn), "refused" (a task answered
	// ERROR "rate limited" without a call) or "retry_after" (the provider
	// asked for a pause, which holds the target's calls).
	HookRateLimit interface {
		OnRateLimit(flow, target, event string)
	}
	// HookConcurrencyLimit is told the limit of a target's tasks in
	// flight when a worker starts the target, and each change of an
	// adaptive limit (see worker.ConcurrencyLimiter).
	HookConcurrencyLimit interface {
		OnConcurrencyLimit(flow, target string, limit int)
	}
	// HookHedge is told each event of a target's hedge (topology's
	// hedge section): "sent" (a call slower than the quantile got a backup
	// call), "won" (the backup's answer was kept) or "budget_exhausted" (a
	// call slow enough got none, as the budget had none left).
	HookHedge interface {
		OnHedge(flow, target, event string)
	}
	// HookDecidedRequests is told, after each read of the aggregated
	// topic, how many decided requests a worker remembers to cancel their
	// tasks (those within their deadline), with worker.cancel: decided.
	HookDecidedRequests interface {
		OnDecidedRequests(flow string, remembered int)
	}
)

// Events of the gather. The fold's events are told as it folds, including
// in transactions that abort later; the others once a transaction
// committed.
type (
	// HookAggregate is told each aggregate written, with its outcome and
	// its log-time latency from manifest to aggregate.
	HookAggregate interface {
		OnAggregate(flow, outcome string, latency time.Duration)
	}
	// HookDeadlineFired is told, for each aggregate its deadline ended
	// (outcomes timeout and deadline), how far stream time had passed the
	// deadline then: ticks written late, or a partition left quiet.
	HookDeadlineFired interface {
		OnDeadlineFired(flow string, late time.Duration)
	}
	// HookOpenRequests is told the open requests over the gather's
	// partitions after each commit.
	HookOpenRequests interface {
		OnOpenRequests(flow string, open int64)
	}
	// HookLate is told each result written to the late topic.
	HookLate interface {
		OnLate(flow string)
	}
	// HookTick is told each tick the gather wrote to a quiet partition.
	HookTick interface {
		OnTick(flow string)
	}
	// HookTickFailed is told each tick the gather could not write.
	HookTickFailed interface {
		OnTickFailed(flow string)
	}
	// HookRebuild is told the records re-folded while the gather rebuilds
	// state, and the partitions being rebuilt (+1 when one starts, -1 when
	// it ends).
	HookRebuild interface {
		OnRebuilt(flow string, records int)
		OnRebuilding(flow string, delta int)
	}
	// HookRebuildLost is told the offsets a rebuild skipped because the
	// log no longer had them (see LogStartError), when lost requests are
	// allowed.
	HookRebuildLost interface {
		OnRebuildLost(flow string, offsets int64)
	}
	// HookResultFolded is told each result the fold counted for an open
	// request.
	HookResultFolded interface {
		OnResultFolded(flow, target string, ok bool)
	}
	// HookDuplicateResult is told each result of a task that had already
	// answered.
	HookDuplicateResult interface {
		OnDuplicateResult(flow string)
	}
)

// hooks are a role's hooks.
type hooks []Hook

// each calls fn with every hook of hs that implements H.
func each[H any](hs hooks, fn func(H)) {
	for _, h := range hs {
		if h, ok := h.(H); ok {
			fn(h)
		}
	}
}

func (hs hooks) clientHooks(client string) []kgo.Opt {
	var out []kgo.Opt
	each(hs, func(h HookClient) {
		if kh := h.ClientHooks(client); len(kh) > 0 {
			out = append(out, kgo.WithHooks(kh...))
		}
	})
	return out
}

// foldObserver passes the fold's counts (gather.Observer) to the hooks.
type foldObserver struct {
	hs      hooks
	flow    string
	targets map[string]bool // the flow's targets in the topology
}

// OtherTarget is the target hooks are told for a result whose target the
// topology does not name: target names come from the manifest, which any
// writer of the results topic can make up, and must not grow the metrics'
// series without bound.
const OtherTarget = "_other"

func newFoldObserver(hs hooks, f *topology.Flow) foldObserver {
	o := foldObserver{hs: hs, flow: f.Name, targets: map[string]bool{}}
	for _, t := range f.Targets {
		o.targets[t.Name] = true
	}
	return o
}

func (o foldObserver) ResultFolded(target string, ok bool) {
	if !o.targets[target] {
		target = OtherTarget
	}
	each(o.hs, func(h HookResultFolded) { h.OnResultFolded(o.flow, target, ok) })
}

func (o foldObserver) DuplicateResult() {
	each(o.hs, func(h HookDuplicateResult) { h.OnDuplicateResult(o.flow) })
}
