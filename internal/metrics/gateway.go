package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scattergather/scattergather/processor/gateway"
)

// gatewayMetrics are the HTTP gateway's.
type gatewayMetrics struct {
	responses *prometheus.CounterVec
	took      *prometheus.HistogramVec
	waiting   *prometheus.GaugeVec
	read      *prometheus.CounterVec
	readBytes *prometheus.CounterVec
}

func newGatewayMetrics(r *prometheus.Registry) gatewayMetrics {
	g := gatewayMetrics{
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "scattergather", Name: "gateway_responses_total",
			Help: "Responses of the HTTP gateway to flow requests, by method and status code (flow _other: a flow it does not serve)."},
			[]string{"flow", "method", "code"}),
		took: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "scattergather", Name: "gateway_response_seconds",
			Help:    "Time from a flow request's arrival at the gateway to its response, waiting for the aggregate included, by method and status code.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}},
			[]string{"flow", "method", "code"}),
		waiting: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "scattergather", Name: "gateway_waiting_requests",
			Help: "POSTs waiting for their aggregate at the gateway."}, []string{"flow"}),
		read: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "scattergather", Name: "gateway_aggregates_read_total",
			Help: "Aggregates the gateway read into its index (each instance reads every aggregate of its flows)."}, []string{"flow"}),
		readBytes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "scattergather", Name: "gateway_aggregates_read_bytes_total",
			Help: "Bytes of aggregate JSON the gateway read into its index."}, []string{"flow"}),
	}
	r.MustRegister(g.responses, g.took, g.waiting, g.read, g.readBytes)
	return g
}

// The Metrics implement every hook of package gateway.
var (
	_ gateway.HookResponse      = (*Metrics)(nil)
	_ gateway.HookWaiting       = (*Metrics)(nil)
	_ gateway.HookAggregateRead = (*Metrics)(nil)
)

// OnGatewayResponse counts a gateway response and observes its time.
func (m *Metrics) OnGatewayResponse(flow, method string, status int, took time.Duration) {
	code := strconv.Itoa(status)
	m.gw.responses.WithLabelValues(flow, method, code).Inc()
	m.gw.took.WithLabelValues(flow, method, code).Observe(took.Seconds())
}

// OnGatewayWaiting adds delta to the POSTs waiting.
func (m *Metrics) OnGatewayWaiting(flow string, delta int) {
	m.gw.waiting.WithLabelValues(flow).Add(float64(delta))
}

// OnGatewayAggregateRead counts an aggregate read into the index.
func (m *Metrics) OnGatewayAggregateRead(flow string, bytes int) {
	m.gw.read.WithLabelValues(flow).Inc()
	m.gw.readBytes.WithLabelValues(flow).Add(float64(bytes))
}
