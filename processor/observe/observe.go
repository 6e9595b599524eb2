// Package observe is the operations HTTP server of a scattergather
// process: /metrics for Prometheus, /healthz for liveness and /readyz for
// readiness, the roles' statuses as JSON. It is what an orchestrator's
// probes and a Prometheus scraper reach; it serves nothing to clients of
// the flows.
package observe

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/scattergather/scattergather/processor/kafka"
)

// Handler serves /metrics (the Prometheus metrics of reg, with each role's
// readiness as scattergather_role_ready; none when reg is nil), /healthz
// (the process is alive: always 200) and /readyz (200 when every role is
// ready: partitions assigned, state rebuilt, caught up; 503 otherwise, with
// each role's status as JSON). Safe for concurrent use.
func Handler(reg *prometheus.Registry, runners []kafka.Runner) http.Handler {
	mux := http.NewServeMux()
	if reg != nil {
		if err := reg.Register(readyCollector(runners)); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				panic(err) // a constant description: a programming error
			}
		}
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
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

var readyDesc = prometheus.NewDesc("scattergather_role_ready",
	"1 when a role is ready as /readyz reports it (partitions assigned, state rebuilt, caught up), else 0; read at each scrape.",
	[]string{"flow", "role"}, nil)

// readyCollector reports the roles' readiness at each scrape: a flow's
// role is ready when all its runners are.
type readyCollector []kafka.Runner

func (c readyCollector) Describe(ch chan<- *prometheus.Desc) { ch <- readyDesc }

func (c readyCollector) Collect(ch chan<- prometheus.Metric) {
	type key struct{ flow, role string }
	ready := map[key]bool{}
	var order []key
	for _, r := range c {
		s, ok := r.(kafka.Statuser)
		if !ok {
			continue
		}
		st := s.Status()
		k := key{st.Flow, st.Role}
		prev, seen := ready[k]
		if !seen {
			order = append(order, k)
		}
		ready[k] = st.Ready && (!seen || prev)
	}
	for _, k := range order {
		v := 0.0
		if ready[k] {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(readyDesc, prometheus.GaugeValue, v, k.flow, k.role)
	}
}
