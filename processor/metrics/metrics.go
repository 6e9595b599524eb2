// Package metrics holds scattergather's Prometheus metrics. Every metric
// is per flow, with low-cardinality labels only (flow, role, target,
// status, outcome, stage, reason kind): never a request id.
//
// A nil *Metrics is valid and records nothing, so the roles call it
// unconditionally.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
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
	inFlight      *prometheus.GaugeVec
	ticks         *prometheus.CounterVec
	roleRestarted *prometheus.CounterVec
	roleReady     *prometheus.GaugeVec
	deadlineLate  *prometheus.HistogramVec
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
	m := &Metrics{
		Registry:      r,
		requests:      f("requests_scattered_total", "Requests the scatter turned into tasks.", "flow"),
		tasks:         f("tasks_scattered_total", "Tasks the scatter wrote, by target.", "flow", "target"),
		results:       f("results_written_total", "Results the workers wrote, by target and status (OK or ERROR).", "flow", "target", "status"),
		folded:        f("results_folded_total", "Results the gather counted for an open request, by target and status (ERROR includes answers it could not consolidate).", "flow", "target", "status"),
		aggregates:    f("aggregates_total", "Aggregates written, by outcome.", "flow", "outcome"),
		open:          g("open_requests", "Requests open in the gather's committed state.", "flow"),
		late:          f("late_results_total", "Results for a completed or unknown request, written to the late topic.", "flow"),
		dead:          f("dead_letters_total", "Records written to the dead-letter topic, by stage and kind of reason.", "flow", "stage", "reason"),
		duplicates:    f("duplicate_results_total", "Results of a task that had already answered, counted once.", "flow"),
		latency:       h("request_latency_seconds", "Log time from a request's manifest to its aggregate.", secs, "flow", "outcome"),
		answer:        h("target_answer_seconds", "Time a worker spent on a task, by target and status.", secs, "flow", "target", "status"),
		lag:           g("consumer_lag_records", "Records between a role's position and the end of its input, summed over its partitions.", "flow", "role"),
		rebuild:       f("state_rebuild_records_total", "Records re-folded silently to rebuild the gather's state.", "flow"),
		rebuilding:    g("state_rebuilding", "Partitions whose state is being rebuilt.", "flow"),
		transactions:  f("transactions_total", "Kafka transactions ended, by role and result (committed or aborted).", "flow", "role", "result"),
		inFlight:      g("worker_tasks_in_flight", "Tasks a worker is running, by target.", "flow", "target"),
		ticks:         f("ticks_total", "Clock records the gather wrote to quiet partitions.", "flow"),
		roleRestarted: f("role_restarts_total", "Times a role was restarted after a transient failure.", "role"),
		roleReady:     g("role_ready", "1 when a role is ready as /readyz reports it (partitions assigned, state rebuilt, caught up), else 0; read at each scrape.", "flow", "role"),
		deadlineLate: h("deadline_lateness_seconds", "How far stream time had passed a request's deadline when the deadline ended it (outcomes timeout and deadline): ticks written late or a quiet partition.",
			[]float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}, "flow"),
	}
	r.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

// RequestScattered counts a request and its tasks by target.
func (m *Metrics) RequestScattered(flow string, targets []string) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(flow).Inc()
	for _, t := range targets {
		m.tasks.WithLabelValues(flow, t).Inc()
	}
}

// ResultWritten counts a worker's result and observes its duration.
func (m *Metrics) ResultWritten(flow, target, status string, seconds float64) {
	if m == nil {
		return
	}
	m.results.WithLabelValues(flow, target, status).Inc()
	m.answer.WithLabelValues(flow, target, status).Observe(seconds)
}

// ResultFolded counts a result the gather counted for an open request.
func (m *Metrics) ResultFolded(flow, target, status string) {
	if m == nil {
		return
	}
	m.folded.WithLabelValues(flow, target, status).Inc()
}

// Aggregate counts an aggregate and observes its log-time latency.
func (m *Metrics) Aggregate(flow, outcome string, seconds float64) {
	if m == nil {
		return
	}
	m.aggregates.WithLabelValues(flow, outcome).Inc()
	m.latency.WithLabelValues(flow, outcome).Observe(seconds)
}

// OpenRequests sets the gather's open requests.
func (m *Metrics) OpenRequests(flow string, n int64) {
	if m == nil {
		return
	}
	m.open.WithLabelValues(flow).Set(float64(n))
}

// Late counts a late result.
func (m *Metrics) Late(flow string) {
	if m == nil {
		return
	}
	m.late.WithLabelValues(flow).Inc()
}

// Duplicate counts a duplicate result.
func (m *Metrics) Duplicate(flow string) {
	if m == nil {
		return
	}
	m.duplicates.WithLabelValues(flow).Inc()
}

// DeadLetter counts a dead-lettered record; reason is a short kind, not the
// message.
func (m *Metrics) DeadLetter(flow, stage, reason string) {
	if m == nil {
		return
	}
	m.dead.WithLabelValues(flow, stage, reason).Inc()
}

// Lag sets a role's consumer lag.
func (m *Metrics) Lag(flow, role string, records int64) {
	if m == nil {
		return
	}
	m.lag.WithLabelValues(flow, role).Set(float64(records))
}

// Rebuilt counts records re-folded to rebuild state.
func (m *Metrics) Rebuilt(flow string, records int) {
	if m == nil {
		return
	}
	m.rebuild.WithLabelValues(flow).Add(float64(records))
}

// Rebuilding adds delta to the partitions being rebuilt.
func (m *Metrics) Rebuilding(flow string, delta float64) {
	if m == nil {
		return
	}
	m.rebuilding.WithLabelValues(flow).Add(delta)
}

// Transaction counts an ended transaction.
func (m *Metrics) Transaction(flow, role string, committed bool) {
	if m == nil {
		return
	}
	result := "committed"
	if !committed {
		result = "aborted"
	}
	m.transactions.WithLabelValues(flow, role, result).Inc()
}

// InFlight adds delta to a target's running tasks.
func (m *Metrics) InFlight(flow, target string, delta float64) {
	if m == nil {
		return
	}
	m.inFlight.WithLabelValues(flow, target).Add(delta)
}

// Tick counts a tick.
func (m *Metrics) Tick(flow string) {
	if m == nil {
		return
	}
	m.ticks.WithLabelValues(flow).Inc()
}

// RoleStarted makes a role's restart count visible at 0 before its first
// restart, so that an alert on its increase sees the first one.
func (m *Metrics) RoleStarted(role string) {
	if m == nil {
		return
	}
	m.roleRestarted.WithLabelValues(role)
}

// RoleReady sets whether a flow's role is ready.
func (m *Metrics) RoleReady(flow, role string, ready bool) {
	if m == nil {
		return
	}
	v := 0.0
	if ready {
		v = 1
	}
	m.roleReady.WithLabelValues(flow, role).Set(v)
}

// DeadlineFired observes how many seconds of stream time past its deadline
// a request was ended by it.
func (m *Metrics) DeadlineFired(flow string, lateSeconds float64) {
	if m == nil {
		return
	}
	m.deadlineLate.WithLabelValues(flow).Observe(lateSeconds)
}

// RoleRestarted counts a supervised restart.
func (m *Metrics) RoleRestarted(role string) {
	if m == nil {
		return
	}
	m.roleRestarted.WithLabelValues(role).Inc()
}
