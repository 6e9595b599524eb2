// Package observe is the operations HTTP server of a scattergather
// process: /metrics for Prometheus, /healthz for liveness and /readyz for
// readiness, the roles' statuses as JSON. It is what an orchestrator's
// probes and a Prometheus scraper reach; it serves nothing to clients of
// the flows.
package observe

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/scattergather/scattergather/processor/kafka"
)

// Handler serves /metrics (the Prometheus metrics of g; none when g is
// nil), /healthz (the process is alive: always 200) and /readyz (200 when
// every role is ready: partitions assigned, state rebuilt, caught up; 503
// otherwise, with each role's status as JSON). Safe for concurrent use.
func Handler(g prometheus.Gatherer, runners []kafka.Runner) http.Handler {
	mux := http.NewServeMux()
	if g != nil {
		mux.Handle("/metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		all := true
		var sts []kafka.Status
		for _, r := range runners {
			if s, ok := r.(kafka.Statuser); ok {
				st := s.Status()
				all = all && st.Ready
				sts = append(sts, st)
			}
		}
		w.Header().Set("Content-Type", "application/json")
		if !all {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(struct {
			Ready bool           `json:"ready"`
			Roles []kafka.Status `json:"roles"`
		}{all, sts})
	})
	return mux
}
