package metrics

import (
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// value returns the value of the series of family name with the labels.
func value(t *testing.T, m *Metrics, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, s := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range s.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			if len(got) != len(labels) {
				continue
			}
			for k, v := range labels {
				if got[k] != v {
					continue series
				}
			}
			return metricValue(s), true
		}
	}
	return 0, false
}

func metricValue(s *dto.Metric) float64 {
	switch {
	case s.Counter != nil:
		return s.Counter.GetValue()
	case s.Gauge != nil:
		return s.Gauge.GetValue()
	case s.Histogram != nil:
		return float64(s.Histogram.GetSampleCount())
	}
	return 0
}

func TestHooksRecordPerFlow(t *testing.T) {
	m := New()
	m.OnRoleRestart("flights", "gather")
	m.OnRoleRestart("flights", "gather")
	m.OnResultWritten("flights", "a", "OK", 20*time.Millisecond)
	m.OnResultFolded("flights", "a", false)
	m.OnAggregate("flights", "complete", time.Second)
	m.OnTaskInFlight("flights", "a", 1)
	m.OnTaskInFlight("flights", "a", 1)
	m.OnTaskInFlight("flights", "a", -1)
	m.OnConcurrencyLimit("flights", "a", 20)
	m.OnConcurrencyLimit("flights", "a", 37)
	m.OnCircuitBreaker("flights", "a", "opened")
	m.OnCircuitBreaker("flights", "a", "rejected")
	m.OnCircuitBreaker("flights", "a", "rejected")
	m.OnTaskRefused("flights", "a", "wrong_target")
	m.OnRecordRewritten("flights", "gather", "flights.dlq", "truncated")
	m.OnHedge("flights", "a", "sent")
	m.OnHedge("flights", "a", "sent")
	m.OnHedge("flights", "a", "won")
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"scattergather_role_restarts_total", map[string]string{"flow": "flights", "role": "gather"}, 2},
		{"scattergather_results_written_total", map[string]string{"flow": "flights", "target": "a", "status": "OK"}, 1},
		{"scattergather_target_answer_seconds", map[string]string{"flow": "flights", "target": "a", "status": "OK"}, 1},
		{"scattergather_results_folded_total", map[string]string{"flow": "flights", "target": "a", "status": "ERROR"}, 1},
		{"scattergather_request_latency_seconds", map[string]string{"flow": "flights", "outcome": "complete"}, 1},
		{"scattergather_worker_tasks_in_flight", map[string]string{"flow": "flights", "target": "a"}, 1},
		{"scattergather_worker_concurrency_limit", map[string]string{"flow": "flights", "target": "a"}, 37},
		{"scattergather_circuit_breaker_events_total", map[string]string{"flow": "flights", "target": "a", "event": "rejected"}, 2},
		{"scattergather_circuit_open", map[string]string{"flow": "flights", "target": "a"}, 1},
		{"scattergather_tasks_refused_total", map[string]string{"flow": "flights", "target": "a", "reason": "wrong_target"}, 1},
		{"scattergather_records_rewritten_total", map[string]string{"flow": "flights", "role": "gather", "topic": "flights.dlq", "how": "truncated"}, 1},
		{"scattergather_worker_hedges_total", map[string]string{"flow": "flights", "target": "a", "event": "sent"}, 2},
		{"scattergather_worker_hedges_total", map[string]string{"flow": "flights", "target": "a", "event": "won"}, 1},
	} {
		got, ok := value(t, m, c.name, c.labels)
		if !ok || got != c.want {
			t.Errorf("%s%v = %v (found %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
}

func TestGatewayHooks(t *testing.T) {
	m := New()
	m.OnGatewayResponse("flights", "POST", 200, 30*time.Millisecond)
	m.OnGatewayResponse("flights", "POST", 200, 40*time.Millisecond)
	m.OnGatewayResponse("_other", "POST", 404, 0)
	m.OnGatewayWaiting("flights", 1)
	m.OnGatewayWaiting("flights", 1)
	m.OnGatewayWaiting("flights", -1)
	m.OnGatewayAggregateRead("flights", 700)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"scattergather_gateway_responses_total", map[string]string{"flow": "flights", "method": "POST", "code": "200"}, 2},
		{"scattergather_gateway_responses_total", map[string]string{"flow": "_other", "method": "POST", "code": "404"}, 1},
		{"scattergather_gateway_response_seconds", map[string]string{"flow": "flights", "method": "POST", "code": "200"}, 2},
		{"scattergather_gateway_waiting_requests", map[string]string{"flow": "flights"}, 1},
		{"scattergather_gateway_aggregates_read_total", map[string]string{"flow": "flights"}, 1},
		{"scattergather_gateway_aggregates_read_bytes_total", map[string]string{"flow": "flights"}, 700},
	} {
		got, ok := value(t, m, c.name, c.labels)
		if !ok || got != c.want {
			t.Errorf("%s%v = %v (found %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
}

func TestTransactionTimed(t *testing.T) {
	m := New()
	m.OnTransactionTimed("flights", "gather", 120, 30*time.Millisecond, 12*time.Millisecond)
	m.OnTransactionTimed("flights", "gather", 80, 50*time.Millisecond, 20*time.Millisecond)
	m.OnTransactionTimed("flights", "scatter", 7, 4*time.Millisecond, 3*time.Millisecond)
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sums := map[string]float64{}
	counts := map[string]uint64{}
	for _, mf := range mfs {
		for _, s := range mf.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == "role" && l.GetValue() == "gather" && s.Histogram != nil {
					sums[mf.GetName()] = s.Histogram.GetSampleSum()
					counts[mf.GetName()] = s.Histogram.GetSampleCount()
				}
			}
		}
	}
	for name, want := range map[string]float64{
		"scattergather_transaction_seconds":     0.080,
		"scattergather_transaction_end_seconds": 0.032,
		"scattergather_transaction_records":     200,
	} {
		if counts[name] != 2 || sums[name] < want-1e-9 || sums[name] > want+1e-9 {
			t.Errorf("%s{role=gather}: %d observations summing to %v, want 2 summing to %v", name, counts[name], sums[name], want)
		}
	}
}
