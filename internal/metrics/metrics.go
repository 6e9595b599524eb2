// Package metrics holds scattergather's Prometheus metrics. Every metric
// is per flow, with low-cardinality labels only (flow, role, target,
// status, outcome, stage, reason kind): never a request id.
//
// The roles report through the hooks of package kafka (kafka.WithHooks),
// which a *Metrics implements; franz-go's own client metrics come in
// through kafka.HookClient.
package metrics

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"

	"github.com/scattergather/scattergather/processor/kafka"
)

// Metrics are the collectors of one process. Safe for concurrent use.
type Metrics struct {
	Registry *prometheus.Registry

	requests      *prometheus.CounterVec
	tasks         *prometheus.CounterVec
	results       *prometheus.CounterVec
	folded        *prometheus.CounterVec
	aggregates    *prometheus.CounterVec
	open          *prometheus.GaugeVec
	late          *prometheus.CounterVec
	dead          *prometheus.CounterVec
	duplicates    *prometheus.CounterVec
	latency       *prometheus.HistogramVec
	answer        *prometheus.HistogramVec
	lag           *prometheus.GaugeVec
	rebuild       *prometheus.CounterVec
	rebuilding    *prometheus.GaugeVec
	transactions  *prometheus.CounterVec
	txnSeconds    *prometheus.HistogramVec
	txnEnd        *prometheus.HistogramVec
	txnRecords    *prometheus.HistogramVec
	inFlight      *prometheus.GaugeVec
	limit         *prometheus.GaugeVec
	ticks         *prometheus.CounterVec
	roleRestarted *prometheus.CounterVec
	deadlineLate  *prometheus.HistogramVec
	rebuildLost   *prometheus.CounterVec
	tickErrors    *prometheus.CounterVec
	breaker       *prometheus.CounterVec
	circuitOpen   *prometheus.GaugeVec
	refused       *prometheus.CounterVec
	rewritten     *prometheus.CounterVec
	cancelled     *prometheus.CounterVec
	decided       *prometheus.GaugeVec
	rateLimit     *prometheus.CounterVec
	hedges        *prometheus.CounterVec
	gw            gatewayMetrics
}

// New registers the metrics, with the Go and process collectors, in a new
// registry.
func New() *Metrics {
	r := prometheus.NewRegistry()
	f := func(name, help string, labels ...string) *prometheus.CounterVec {
		v := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "scattergather", Name: name, Help: help}, labels)
		r.MustRegister(v)
		return v
	}
	g := func(name, help string, labels ...string) *prometheus.GaugeVec {
		v := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "scattergather", Name: name, Help: help}, labels)
		r.MustRegister(v)
		return v
	}
	h := func(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
		v := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "scattergather", Name: name, Help: help, Buckets: buckets}, labels)
		r.MustRegister(v)
		return v
	}
	secs := []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
	txnSecs := []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	m := &Metrics{
		Registry:     r,
		requests:     f("requests_scattered_total", "Requests the scatter turned into tasks.", "flow"),
		tasks:        f("tasks_scattered_total", "Tasks the scatter wrote, by target.", "flow", "target"),
		results:      f("results_written_total", "Results the workers wrote, by target and status (OK or ERROR).", "flow", "target", "status"),
		folded:       f("results_folded_total", "Results the gather counted for an open request, by target and status (ERROR includes answers it could not consolidate).", "flow", "target", "status"),
		aggregates:   f("aggregates_total", "Aggregates written, by outcome.", "flow", "outcome"),
		open:         g("open_requests", "Requests open in the gather's committed state.", "flow"),
		late:         f("late_results_total", "Results for a completed or unknown request, written to the late topic.", "flow"),
		dead:         f("dead_letters_total", "Records written to the dead-letter topic, by stage and kind of reason.", "flow", "stage", "reason"),
		duplicates:   f("duplicate_results_total", "Results of a task that had already answered, counted once.", "flow"),
		latency:      h("request_latency_seconds", "Log time from a request's manifest to its aggregate.", secs, "flow", "outcome"),
		answer:       h("target_answer_seconds", "Time a worker spent on a task, by target and status.", secs, "flow", "target", "status"),
		lag:          g("consumer_lag_records", "Records between a role's position and the end of its input, summed over its partitions.", "flow", "role"),
		rebuild:      f("state_rebuild_records_total", "Records re-folded silently to rebuild the gather's state.", "flow"),
		rebuilding:   g("state_rebuilding", "Partitions whose state is being rebuilt.", "flow"),
		transactions: f("transactions_total", "Kafka transactions ended, by role and result (committed or aborted).", "flow", "role", "result"),
		txnSeconds: h("transaction_seconds", "Time a transaction of the scatter or the gather lasted, from its begin to the brokers' answer to its end.",
			txnSecs, "flow", "role"),
		txnEnd: h("transaction_end_seconds", "Time the end of a transaction took: waiting for its outputs to be acknowledged, adding its offsets and ending it.",
			txnSecs, "flow", "role"),
		txnRecords: h("transaction_records", "Records of its input one transaction of the scatter or the gather carried.",
			[]float64{1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000}, "flow", "role"),
		inFlight: g("worker_tasks_in_flight", "Tasks a worker is running, by target.", "flow", "target"),
		limit:    g("worker_concurrency_limit", "The most tasks of a target a worker runs at once: its adaptive limit now, or max_in_flight when fixed.", "flow", "target"),
		ticks:    f("ticks_total", "Clock records the gather wrote to quiet partitions.", "flow"),
		deadlineLate: h("deadline_lateness_seconds", "How far stream time had passed a request's deadline when the deadline ended it (outcomes timeout and deadline): ticks written late or a quiet partition.",
			[]float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}, "flow"),
		tickErrors:    f("tick_errors_total", "Ticks the gather could not write to a quiet partition of the results topic: its deadlines wait until one is written.", "flow"),
		rebuildLost:   f("state_rebuild_lost_offsets_total", "Offsets of the results topic a rebuild skipped because retention had deleted them (run --allow-lost-requests): the requests opened there are given up.", "flow"),
		breaker:       f("circuit_breaker_events_total", "Events of a target's circuit breaker: opened, closed, and rejected (a call refused without calling the provider).", "flow", "target", "event"),
		circuitOpen:   g("circuit_open", "1 while a target's circuit breaker is open, 0 once it closed.", "flow", "target"),
		roleRestarted: f("role_restarts_total", "Times a role was restarted after a transient failure.", "flow", "role"),
		cancelled:     f("tasks_cancelled_total", "Tasks a worker answered ERROR \"cancelled: request decided\" because the gather had decided their request, by when: before_call (the provider was not called) or in_flight (the call was cut short).", "flow", "target", "when"),
		decided:       g("worker_decided_requests", "Decided requests a worker remembers, to cancel their tasks, until their deadline passes.", "flow"),
		rateLimit:     f("rate_limit_events_total", "Events of a target's rate limit: delayed (a call waited for its turn), refused (a task answered ERROR \"rate limited\" without a call), retry_after (the provider asked for a pause).", "flow", "target", "event"),
		hedges:        f("worker_hedges_total", "Events of a target's hedge: sent (a call slower than the quantile got a backup call), won (the backup's answer was kept), budget_exhausted (a call slow enough got none, the budget being spent).", "flow", "target", "event"),
		refused:       f("tasks_refused_total", "Tasks a worker answered ERROR without running them (a target its topic does not serve), by the topic's target and kind of reason.", "flow", "target", "reason"),
		rewritten: f("records_rewritten_total", "Records written in a form that fits because they could not be written as they were (too large or refused), by role, topic meant for and how: truncated, failed_aggregate, error_result, dead_letter.",
			"flow", "role", "topic", "how"),
	}
	m.gw = newGatewayMetrics(r)
	r.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

// The Metrics implement every hook of package kafka.
var (
	_ kafka.HookLag              = (*Metrics)(nil)
	_ kafka.HookTransactionEnd   = (*Metrics)(nil)
	_ kafka.HookTransactionTimed = (*Metrics)(nil)
	_ kafka.HookDeadLetter       = (*Metrics)(nil)
	_ kafka.HookRoleRestart      = (*Metrics)(nil)
	_ kafka.HookClient           = (*Metrics)(nil)
	_ kafka.HookRequestScattered = (*Metrics)(nil)
	_ kafka.HookResultWritten    = (*Metrics)(nil)
	_ kafka.HookTaskInFlight     = (*Metrics)(nil)
	_ kafka.HookConcurrencyLimit = (*Metrics)(nil)
	_ kafka.HookTaskRefused      = (*Metrics)(nil)
	_ kafka.HookTaskCancelled    = (*Metrics)(nil)
	_ kafka.HookDecidedRequests  = (*Metrics)(nil)
	_ kafka.HookRateLimit        = (*Metrics)(nil)
	_ kafka.HookHedge            = (*Metrics)(nil)
	_ kafka.HookCircuitBreaker   = (*Metrics)(nil)
	_ kafka.HookAggregate        = (*Metrics)(nil)
	_ kafka.HookOpenRequests     = (*Metrics)(nil)
	_ kafka.HookDeadlineFired    = (*Metrics)(nil)
	_ kafka.HookLate             = (*Metrics)(nil)
	_ kafka.HookTick             = (*Metrics)(nil)
	_ kafka.HookTickFailed       = (*Metrics)(nil)
	_ kafka.HookRebuild          = (*Metrics)(nil)
	_ kafka.HookRebuildLost      = (*Metrics)(nil)
	_ kafka.HookResultFolded     = (*Metrics)(nil)
	_ kafka.HookDuplicateResult  = (*Metrics)(nil)
	_ kafka.HookRecordRewritten  = (*Metrics)(nil)
)

// OnRecordRewritten counts a record written in another form than the role
// made it, so that it could be written at all.
func (m *Metrics) OnRecordRewritten(flow, role, topic, how string) {
	m.rewritten.WithLabelValues(flow, role, topic, how).Inc()
}

// OnRequestScattered counts a request and its tasks by target.
func (m *Metrics) OnRequestScattered(flow string, targets []string) {
	m.requests.WithLabelValues(flow).Inc()
	for _, t := range targets {
		m.tasks.WithLabelValues(flow, t).Inc()
	}
}

// OnResultWritten counts a worker's result and observes its duration.
func (m *Metrics) OnResultWritten(flow, target, status string, took time.Duration) {
	m.results.WithLabelValues(flow, target, status).Inc()
	m.answer.WithLabelValues(flow, target, status).Observe(took.Seconds())
}

// OnResultFolded counts a result the gather counted for an open request.
func (m *Metrics) OnResultFolded(flow, target string, ok bool) {
	status := "OK"
	if !ok {
		status = "ERROR"
	}
	m.folded.WithLabelValues(flow, target, status).Inc()
}

// OnAggregate counts an aggregate and observes its log-time latency.
func (m *Metrics) OnAggregate(flow, outcome string, latency time.Duration) {
	m.aggregates.WithLabelValues(flow, outcome).Inc()
	m.latency.WithLabelValues(flow, outcome).Observe(latency.Seconds())
}

// OnOpenRequests sets the gather's open requests.
func (m *Metrics) OnOpenRequests(flow string, n int64) {
	m.open.WithLabelValues(flow).Set(float64(n))
}

// OnLate counts a late result.
func (m *Metrics) OnLate(flow string) { m.late.WithLabelValues(flow).Inc() }

// OnDuplicateResult counts a duplicate result.
func (m *Metrics) OnDuplicateResult(flow string) { m.duplicates.WithLabelValues(flow).Inc() }

// OnTaskCancelled counts a task cancelled because its request was
// decided.
func (m *Metrics) OnTaskCancelled(flow, target, when string) {
	m.cancelled.WithLabelValues(flow, target, when).Inc()
}

// OnDecidedRequests sets the decided requests a worker remembers.
func (m *Metrics) OnDecidedRequests(flow string, remembered int) {
	m.decided.WithLabelValues(flow).Set(float64(remembered))
}

// OnRateLimit counts an event of a target's rate limit.
func (m *Metrics) OnRateLimit(flow, target, event string) {
	m.rateLimit.WithLabelValues(flow, target, event).Inc()
}

// OnHedge counts an event of a target's hedge.
func (m *Metrics) OnHedge(flow, target, event string) {
	m.hedges.WithLabelValues(flow, target, event).Inc()
}

// OnTaskRefused counts a task answered ERROR without running; kind is a
// short kind of reason.
func (m *Metrics) OnTaskRefused(flow, target, kind string) {
	m.refused.WithLabelValues(flow, target, kind).Inc()
}

// OnDeadLetter counts a dead-lettered record; kind is a short kind of
// reason, not the message.
func (m *Metrics) OnDeadLetter(flow, stage, kind string) {
	m.dead.WithLabelValues(flow, stage, kind).Inc()
}

// OnLag sets a role's consumer lag.
func (m *Metrics) OnLag(flow, role string, records int64) {
	m.lag.WithLabelValues(flow, role).Set(float64(records))
}

// OnRebuilt counts records re-folded to rebuild state.
func (m *Metrics) OnRebuilt(flow string, records int) {
	m.rebuild.WithLabelValues(flow).Add(float64(records))
}

// OnRebuilding adds delta to the partitions being rebuilt.
func (m *Metrics) OnRebuilding(flow string, delta int) {
	m.rebuilding.WithLabelValues(flow).Add(float64(delta))
}

// OnRebuildLost counts the offsets a rebuild skipped.
func (m *Metrics) OnRebuildLost(flow string, offsets int64) {
	m.rebuildLost.WithLabelValues(flow).Add(float64(offsets))
}

// OnTransactionEnd counts an ended transaction.
func (m *Metrics) OnTransactionEnd(flow, role string, committed bool) {
	result := "committed"
	if !committed {
		result = "aborted"
	}
	m.transactions.WithLabelValues(flow, role, result).Inc()
}

// OnTransactionTimed observes an ended transaction's length, its end's and
// its records.
func (m *Metrics) OnTransactionTimed(flow, role string, records int, took, end time.Duration) {
	m.txnSeconds.WithLabelValues(flow, role).Observe(took.Seconds())
	m.txnEnd.WithLabelValues(flow, role).Observe(end.Seconds())
	m.txnRecords.WithLabelValues(flow, role).Observe(float64(records))
}

// OnTaskInFlight adds delta to a target's running tasks.
func (m *Metrics) OnTaskInFlight(flow, target string, delta int) {
	m.inFlight.WithLabelValues(flow, target).Add(float64(delta))
}

// OnConcurrencyLimit sets a target's limit of tasks in flight.
func (m *Metrics) OnConcurrencyLimit(flow, target string, limit int) {
	m.limit.WithLabelValues(flow, target).Set(float64(limit))
}

// OnCircuitBreaker counts a circuit breaker's event and follows its state.
func (m *Metrics) OnCircuitBreaker(flow, target, event string) {
	m.breaker.WithLabelValues(flow, target, event).Inc()
	switch event {
	case "opened":
		m.circuitOpen.WithLabelValues(flow, target).Set(1)
	case "closed":
		m.circuitOpen.WithLabelValues(flow, target).Set(0)
	}
}

// OnTickFailed counts a tick not written.
func (m *Metrics) OnTickFailed(flow string) { m.tickErrors.WithLabelValues(flow).Inc() }

// OnTick counts a tick.
func (m *Metrics) OnTick(flow string) { m.ticks.WithLabelValues(flow).Inc() }

// OnDeadlineFired observes how far past its deadline a request was ended
// by it.
func (m *Metrics) OnDeadlineFired(flow string, late time.Duration) {
	m.deadlineLate.WithLabelValues(flow).Observe(late.Seconds())
}

// OnRoleStart makes a role's restart count visible at 0 before its first
// restart, so that an alert on its increase sees the first one.
func (m *Metrics) OnRoleStart(flow, role string) {
	m.roleRestarted.WithLabelValues(flow, role)
}

// OnRoleRestart counts a supervised restart.
func (m *Metrics) OnRoleRestart(flow, role string) {
	m.roleRestarted.WithLabelValues(flow, role).Inc()
}

var clientSeq atomic.Int64

// ClientHooks hooks franz-go's client metrics (kprom) into the registry.
// Each client gets its own collectors, labelled with its use and a
// sequence number, registered while it lives.
func (m *Metrics) ClientHooks(client string) []kgo.Hook {
	label := fmt.Sprintf("%s#%d", client, clientSeq.Add(1))
	return []kgo.Hook{kprom.NewMetrics("scattergather_kafka",
		kprom.Registerer(m.Registry), kprom.Gatherer(m.Registry),
		kprom.WithStaticLabel(prometheus.Labels{"client": label}))}
}
