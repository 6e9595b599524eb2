package kafka

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"

	"github.com/scattergather/scattergather/processor/metrics"
)

// WithMetrics makes the roles record their metrics, and their Kafka
// clients franz-go's (kprom), in m. Default: none.
func WithMetrics(m *metrics.Metrics) Option { return func(o *options) { o.metrics = m } }

var clientSeq atomic.Int64

// clientMetrics hooks franz-go's client metrics into m's registry. Each
// client gets its own collectors, labelled with its role and a sequence
// number, registered while it lives.
func clientMetrics(m *metrics.Metrics, role string) []kgo.Opt {
	if m == nil {
		return nil
	}
	label := fmt.Sprintf("%s#%d", role, clientSeq.Add(1))
	kp := kprom.NewMetrics("scattergather_kafka",
		kprom.Registerer(m.Registry), kprom.Gatherer(m.Registry),
		kprom.WithStaticLabel(prometheus.Labels{"client": label}))
	return []kgo.Opt{kgo.WithHooks(kp)}
}

// Status is a role's readiness as /readyz reports it.
type Status struct {
	Role   string `json:"role"`
	Flow   string `json:"flow"`
	Ready  bool   `json:"ready"`
	Detail string `json:"detail,omitempty"`
}

// Statuser is implemented by the roles: their readiness.
type Statuser interface {
	Status() Status
}

// HTTPHandler serves /metrics (Prometheus, with each role's readiness as
// scattergather_role_ready), /healthz (the process is alive: always 200)
// and /readyz (200 when every role is ready: partitions assigned, state
// rebuilt, caught up; 503 otherwise, with each role's status as JSON).
func HTTPHandler(m *metrics.Metrics, runners []Runner) http.Handler {
	mux := http.NewServeMux()
	if m != nil {
		prom := promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
		mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
			// A flow's role is ready when all its runners are.
			ready := map[[2]string]bool{}
			for _, rn := range runners {
				if s, ok := rn.(Statuser); ok {
					st := s.Status()
					k := [2]string{st.Flow, st.Role}
					if prev, seen := ready[k]; !seen || prev {
						ready[k] = st.Ready
					}
				}
			}
			for k, ok := range ready {
				m.RoleReady(k[0], k[1], ok)
			}
			prom.ServeHTTP(w, r)
		})
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		all := true
		var sts []Status
		for _, r := range runners {
			if s, ok := r.(Statuser); ok {
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
			Ready bool     `json:"ready"`
			Roles []Status `json:"roles"`
		}{all, sts})
	})
	return mux
}

// lag follows a consumer's lag per partition: the high watermark minus the
// position after the last record polled, as of the last poll that returned
// records for the partition. On a topic written in transactions the
// markers after the last record count too (a record or two). Not safe for
// concurrent use.
type lag map[int32]int64

// observe updates the lag from a poll and returns the sum over the
// partitions for which owned is true (nil: all).
func (l lag) observe(fs kgo.Fetches, owned func(int32) bool) int64 {
	fs.EachPartition(func(fp kgo.FetchTopicPartition) {
		if n := len(fp.Records); n > 0 {
			l[fp.Partition] = max(fp.HighWatermark-fp.Records[n-1].Offset-1, 0)
		}
	})
	var sum int64
	for p, v := range l {
		if owned == nil || owned(p) {
			sum += v
		}
	}
	return sum
}
