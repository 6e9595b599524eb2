package kafka_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scattergather/scattergather/internal/processortest"
	"github.com/scattergather/scattergather/processor/kafka"
	"github.com/scattergather/scattergather/processor/worker"
	"github.com/scattergather/scattergather/schemas"
)

// TestMeasureCancelCalls measures provider calls per request for first
// and quorum 2 of 5, with providers of 20-400 ms, with and without
// worker.cancel, against the broker of SG_KAFKA_BROKERS. It runs only
// with SG_MEASURE=1 and logs the figures.
func TestMeasureCancelCalls(t *testing.T) {
	if os.Getenv("SG_MEASURE") == "" {
		t.Skip("set SG_MEASURE=1 to measure")
	}
	brokers := processortest.Brokers(t)
	for _, strategy := range []string{"{type: first}", "{type: quorum, quorum: 2}"} {
		for _, cancel := range []string{"never", "decided"} {
			t.Run(strategy+" cancel "+cancel, func(t *testing.T) {
				topo, f := processortest.Topology(t, brokers, fmt.Sprintf(`
timeout: 20s
targets: [{name: a}, {name: b}, {name: c}, {name: d}, {name: e}]
strategy: %s
worker: {max_in_flight_per_target: 8, cancel: %s}
`, strategy, cancel))
				processortest.CreateTopics(t, topo, f)
				var started, finished, busyMs atomic.Int64
				h := worker.HandlerFunc(func(ctx context.Context, _ *schemas.Task) ([]byte, error) {
					started.Add(1)
					begin := time.Now()
					defer func() { busyMs.Add(time.Since(begin).Milliseconds()) }()
					timer := time.NewTimer(time.Duration(20+rand.IntN(381)) * time.Millisecond)
					defer timer.Stop()
					select {
					case <-ctx.Done():
						return nil, context.Cause(ctx)
					case <-timer.C:
						finished.Add(1)
						return []byte(`{"price": 1}`), nil
					}
				})
				opts := []kafka.RoleOpt{}
				for _, n := range []string{"a", "b", "c", "d", "e"} {
					opts = append(opts, kafka.WithHandler(n, h))
				}
				runners, err := kafka.Roles(topo, topo.Flows, kafka.RoleAll, t.TempDir(), opts...)
				if err != nil {
					t.Fatal(err)
				}
				processortest.Start(t, runners...)
				const n = 200
				processortest.Send(t, topo, requests(f.Name, n)...)
				processortest.Aggregates(t, topo, f, n, 2*time.Minute)
				// The results topic holds the manifests too.
				processortest.Records(t, topo, f.Topics.Results, 6*n, 2*time.Minute)
				t.Logf("MEASURE %s cancel=%s: %d requests, provider calls started %.2f/request, run to the end %.2f/request, provider time %.0f ms/request",
					strategy, cancel, n, float64(started.Load())/n, float64(finished.Load())/n, float64(busyMs.Load())/n)
			})
		}
	}
}
