package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scattergather/scattergather/internal/processortest"
	"github.com/scattergather/scattergather/processor/kafka"
	"github.com/scattergather/scattergather/processor/topology"
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
// partitions whose state was rebuilt at assignment. The timeout leaves the
// served targets' workers time to join their groups and answer on a busy
// machine (2 s was missed once in some 30 runs under -race).
func TestIntegrationDeadlinesFireOnQuietPartitions(t *testing.T) {
	brokers := processortest.Brokers(t)
	topo, f := processortest.Topology(t, brokers, `
timeout: 6s
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

// openRequests leaves n requests open in the committed state of a stopped
// gather (identity "g") of a one-partition flow: a answered, b's answers
// held until release is closed.
func openRequests(t *testing.T, n int) (*topology.Topology, *topology.Flow, chan struct{}) {
	t.Helper()
	topo, f := processortest.Topology(t, processortest.Brokers(t), `
timeout: 60s
partitions: 1
targets: [{name: a}, {name: b}]
consolidate: {type: min, field: price}
`)
	processortest.CreateTopics(t, topo, f)
	release := make(chan struct{})
	gate := worker.HandlerFunc(func(ctx context.Context, task *schemas.Task) ([]byte, error) {
		select {
		case <-release:
			return []byte(`{"price": 50}`), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	startGather := startWithoutGather(t, topo, f, kafka.WithHandler("a", answer(100)), kafka.WithHandler("b", gate))
	g1, stop1 := startGather("g", t.TempDir())
	processortest.Send(t, topo, requests(f.Name, n)...)
	processortest.Eventually(t, time.Minute, "open requests committed", func() bool { return g1.Stats().Open == int64(n) })
	stop1()
	return topo, f, release
}

// TestIntegrationRebuildBelowLogStart: when the records a rebuild needs
// were deleted (retention, DeleteRecords), the gather refuses to go on and
// says what would be lost; told to, it rebuilds from the log start and the
// answers of the lost requests go to the late topic.
func TestIntegrationRebuildBelowLogStart(t *testing.T) {
	const n = 4
	topo, f, release := openRequests(t, n)

	// Retention deletes the manifests of the open requests.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	adm := processortest.Admin(t, topo)
	ends, err := adm.ListEndOffsets(ctx, f.Topics.Results)
	if err != nil {
		t.Fatal(err)
	}
	to := kadm.Offsets{}
	ends.Each(func(lo kadm.ListedOffset) {
		to.Add(kadm.Offset{Topic: lo.Topic, Partition: lo.Partition, At: lo.Offset, LeaderEpoch: -1})
	})
	if resp, err := adm.DeleteRecords(ctx, to); err != nil || resp.Error() != nil {
		t.Fatalf("delete records: %v %v", err, resp.Error())
	}

	g2, err := kafka.NewGather(topo, f, t.TempDir(), kafka.WithInstance("g"))
	if err != nil {
		t.Fatal(err)
	}
	err = g2.Run(ctx)
	var lse *kafka.LogStartError
	if !errors.As(err, &lse) || !kafka.IsPermanent(err) || lse.Open != n || lse.LogStart <= lse.From {
		t.Fatalf("rebuild below the log start: %v; want a permanent *LogStartError naming %d open requests", err, n)
	}
	for _, want := range []string{"--allow-lost-requests", "were deleted", fmt.Sprintf("up to %d open request(s)", n)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}

	// Told to, a gather rebuilds from the log start; b's answers, once
	// released, are late: their requests were given up.
	g3, err := kafka.NewGather(topo, f, t.TempDir(), kafka.WithInstance("g"), kafka.WithLostRequestsAllowed())
	if err != nil {
		t.Fatal(err)
	}
	processortest.Start(t, g3)
	close(release)
	late := processortest.Records(t, topo, f.Topics.Late, n, time.Minute)
	for _, r := range late {
		if k := kafka.Header(r, schemas.HeaderReasonKind); k != schemas.KindUnknownRequest {
			t.Errorf("late record of kind %q, want %s", k, schemas.KindUnknownRequest)
		}
	}
}

// tickFailures counts OnTickFailed.
type tickFailures struct{ n atomic.Int64 }

func (c *tickFailures) OnTickFailed(string) { c.n.Add(1) }

// TestIntegrationTickFailuresAreVisible: when the broker refuses the
// gather's ticks, the deadlines of quiet partitions cannot fire; that is
// counted and readiness says so, instead of a log line only.
func TestIntegrationTickFailuresAreVisible(t *testing.T) {
	brokers := processortest.Brokers(t)
	topo, f := processortest.Topology(t, brokers, `
timeout: 1s
partitions: 1
targets: [{name: a}, {name: b}]
gather: {tick_interval: 50ms}
`)
	processortest.CreateTopics(t, topo, f)
	startWithoutGather(t, topo, f, kafka.WithHandler("a", answer(100)), kafka.WithTargets("a")) // b never answers
	failures := &tickFailures{}
	g, err := kafka.NewGather(topo, f, t.TempDir(), kafka.WithInstance("g"), kafka.WithHooks(failures))
	if err != nil {
		t.Fatal(err)
	}
	processortest.Start(t, g)
	processortest.Send(t, topo, requests(f.Name, 1)...)
	processortest.Eventually(t, time.Minute, "the request open in the gather", func() bool { return g.Stats().Open == 1 })

	// The results topic now refuses every batch: the tick that should end
	// the request at its deadline cannot be written.
	processortest.SetTopicConfig(t, processortest.Admin(t, topo), f.Topics.Results, "max.message.bytes", "1")
	processortest.Eventually(t, time.Minute, "readiness to report the ticks", func() bool {
		st := g.Status()
		return !st.Ready && strings.Contains(st.Detail, "ticks to "+f.Topics.Results+" are not written")
	})
	if failures.n.Load() < 3 {
		t.Errorf("%d tick failures told to the hooks, want at least 3", failures.n.Load())
	}
}

// TestIntegrationGatherRebalancesInFlight: gathers join and leave while
// requests are in flight, so partitions move between instances (and back)
// with open requests; every request still gets exactly one complete
// aggregate.
func TestIntegrationGatherRebalancesInFlight(t *testing.T) {
	brokers := processortest.Brokers(t)
	topo, f := processortest.Topology(t, brokers, `
timeout: 60s
partitions: 6
targets: [{name: a}, {name: b}, {name: c}]
consolidate: {type: min, field: price}
`)
	processortest.CreateTopics(t, topo, f)
	startGather := startWithoutGather(t, topo, f, kafka.WithHandler("a", answer(100)), kafka.WithHandler("b", answer(90)), kafka.WithHandler("c", answer(80)))
	startGather("g1", t.TempDir())
	const perStep, steps = 20, 2
	all := requests(f.Name, perStep*2*steps)
	for i := range steps {
		batch := all[i*2*perStep:]
		processortest.Send(t, topo, batch[:perStep]...)
		// A second gather joins: partitions move while requests are open.
		_, stop := startGather(fmt.Sprintf("g2-%d", i), t.TempDir())
		processortest.Send(t, topo, batch[perStep:2*perStep]...)
		// It leaves: its partitions come back after its session times out.
		stop()
	}
	aggs := processortest.Aggregates(t, topo, f, len(all), 3*time.Minute)
	for id, a := range aggs {
		if a.Outcome != schemas.OutcomeComplete || names(a.Answered) != "a,b,c" {
			t.Errorf("%s: outcome %s answered %s", id, a.Outcome, names(a.Answered))
		}
	}
}

// refuser refuses new connections for a while once a rebuild starts, as a
// broker restarting or a leader election would.
type refuser struct{ blocked atomic.Bool }

func (r *refuser) OnRebuilt(string, int) {}

func (r *refuser) OnRebuilding(_ string, delta int) {
	if delta > 0 && !r.blocked.Swap(true) {
		time.AfterFunc(8*time.Second, func() { r.blocked.Store(false) })
	}
}

func (r *refuser) dial(ctx context.Context, network, host string) (net.Conn, error) {
	if r.blocked.Load() {
		return nil, errors.New("connection refused (the broker is restarting)")
	}
	var d net.Dialer
	return d.DialContext(ctx, network, host)
}

// TestIntegrationRebuildWaitsOutFetchErrors: a rebuild that cannot fetch
// for longer than a few polls keeps trying until it stands at the
// committed offset, so the open requests it had to re-read are not lost.
func TestIntegrationRebuildWaitsOutFetchErrors(t *testing.T) {
	const n = 5
	topo, f, release := openRequests(t, n)

	// On an empty state the gather rebuilds, and its rebuild's connections
	// are refused for 8 s.
	r := &refuser{}
	g2, err := kafka.NewGather(topo, f, t.TempDir(), kafka.WithInstance("g"), kafka.WithHooks(r), kafka.WithClientOptions(kgo.Dialer(r.dial)))
	if err != nil {
		t.Fatal(err)
	}
	processortest.Start(t, g2)
	close(release)
	aggs := processortest.Aggregates(t, topo, f, n, 2*time.Minute)
	for id, a := range aggs {
		if a.Outcome != schemas.OutcomeComplete || names(a.Answered) != "a,b" {
			t.Errorf("%s: outcome %s answered %s", id, a.Outcome, names(a.Answered))
		}
	}
	if g2.Stats().Rebuilt == 0 {
		t.Error("no rebuild happened")
	}
}
