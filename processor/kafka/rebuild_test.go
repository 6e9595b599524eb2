package kafka_test

import (
	"context"
	"testing"
	"time"

	"github.com/scattergather/scattergather/internal/processortest"
	"github.com/scattergather/scattergather/processor/kafka"
	"github.com/scattergather/scattergather/processor/worker"
	"github.com/scattergather/scattergather/schemas"
)

// TestIntegrationGatherRestart stops the gather while requests are open
// and starts another instance with the same identity, on the same state
// directory (the local state is current: resumed as is) or on an empty one
// (the state is rebuilt from the log, from the oldest open manifest). Every
// request still yields exactly one complete aggregate.
func TestIntegrationGatherRestart(t *testing.T) {
	brokers := processortest.Brokers(t)
	for _, tc := range []struct {
		name        string
		sameState   bool
		wantRebuild bool
	}{
		{"same-state", true, false},
		{"empty-state", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			topo, f := processortest.Topology(t, brokers, `
timeout: 60s
targets: [{name: a}, {name: b}, {name: c}]
consolidate: {type: min, field: price}
`)
			processortest.CreateTopics(t, topo, f)
			started := make(chan string, 64)
			release := make(chan struct{})
			gate := worker.HandlerFunc(func(ctx context.Context, task *schemas.Task) ([]byte, error) {
				started <- task.RequestID
				select {
				case <-release:
					return []byte(`{"price": 50}`), nil
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			})
			startGather := startWithoutGather(t, topo, f, kafka.WithHandler("a", answer(100)), kafka.WithHandler("b", answer(90)), kafka.WithHandler("c", gate))
			dir1 := t.TempDir()
			g1, stop1 := startGather("g", dir1)
			const n = 6
			processortest.Send(t, topo, requests(f.Name, n)...)
			for range n {
				<-started
			}
			// Wait until the gather has committed the manifests and a's and
			// b's answers: the requests are open in its committed state.
			processortest.Eventually(t, time.Minute, "open requests committed", func() bool {
				return g1.Stats().Open == n && g1.Stats().Aggregates == 0
			})
			stop1()

			dir2 := dir1
			if !tc.sameState {
				dir2 = t.TempDir()
			}
			g2, _ := startGather("g", dir2)
			close(release)
			aggs := processortest.Aggregates(t, topo, f, n, time.Minute)
			for id, a := range aggs {
				if a.Outcome != schemas.OutcomeComplete || names(a.Answered) != "a,b,c" || a.Duplicates != 0 {
					t.Errorf("%s: outcome %s answered %s duplicates %d", id, a.Outcome, names(a.Answered), a.Duplicates)
				}
			}
			if rebuilt := g2.Stats().Rebuilt > 0; rebuilt != tc.wantRebuild {
				t.Errorf("rebuilt %d records, want a rebuild: %v", g2.Stats().Rebuilt, tc.wantRebuild)
			}
		})
	}
}

// TestIntegrationDeadlinesFireOnQuietPartitions restarts the gather while
// requests wait for a target that no worker serves, and sends nothing
// more: only the gather's ticks move stream time past the deadlines, on
// partitions whose state was rebuilt at assignment.
func TestIntegrationDeadlinesFireOnQuietPartitions(t *testing.T) {
	brokers := processortest.Brokers(t)
	topo, f := processortest.Topology(t, brokers, `
timeout: 2s
targets: [{name: a}, {name: b}, {name: c}]
consolidate: {type: min, field: price}
gather: {tick_interval: 100ms}
`)
	processortest.CreateTopics(t, topo, f)
	startGather := startWithoutGather(t, topo, f, kafka.WithHandler("a", answer(100)), kafka.WithHandler("b", answer(90)), kafka.WithTargets("a", "b"))
	g1, stop1 := startGather("g", t.TempDir())
	const n = 5
	processortest.Send(t, topo, requests(f.Name, n)...)
	processortest.Eventually(t, time.Minute, "open requests committed", func() bool { return g1.Stats().Open == n })
	stop1()

	g2, _ := startGather("g", t.TempDir())
	aggs := processortest.Aggregates(t, topo, f, n, time.Minute)
	for id, a := range aggs {
		if a.Outcome != schemas.OutcomeTimeout || refs(a.Missing) != "c" || a.CompletedMs <= a.DeadlineMs {
			t.Errorf("%s: outcome %s missing %q completed %d deadline %d", id, a.Outcome, refs(a.Missing), a.CompletedMs, a.DeadlineMs)
		}
	}
	if g2.Stats().Ticks == 0 {
		t.Error("no tick written, yet the deadlines fired")
	}
}
