package kafka_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scattergather/scattergather/internal/processortest"
	"github.com/scattergather/scattergather/processor/kafka"
	"github.com/scattergather/scattergather/processor/worker"
	"github.com/scattergather/scattergather/schemas"
)

// blockedResults holds every result the worker's producer buffers until
// release is closed, as a broker that cannot keep up would, and counts the
// tasks waiting there.
type blockedResults struct {
	topic   string
	release chan struct{}
	waiting atomic.Int64
	most    atomic.Int64
}

func (b *blockedResults) ClientHooks(client string) []kgo.Hook {
	if client != kafka.RoleWorker {
		return nil
	}
	return []kgo.Hook{b}
}

func (b *blockedResults) OnProduceRecordBuffered(r *kgo.Record) {
	if r.Topic != b.topic {
		return
	}
	n := b.waiting.Add(1)
	for m := b.most.Load(); n > m && !b.most.CompareAndSwap(m, n); m = b.most.Load() {
	}
	<-b.release
	b.waiting.Add(-1)
}

// runWriteBound: while its results cannot be written, a worker holds at
// most worker.max_in_flight tasks (running or waiting for their write),
// rather than one goroutine, task and result for every task of its
// backlog; once the writes go through, every request completes.
func runWriteBound(t *testing.T, brokers []string) {
	const maxInFlight, n = 20, 300
	topo, f := processortest.Topology(t, brokers, `
timeout: 120s
worker: {max_in_flight: 20}
targets: [{name: a}]
strategy: {type: all}
`)
	processortest.CreateTopics(t, topo, f)
	backlog(t, topo, f, "a", n)

	blocked := &blockedResults{topic: f.Topics.Results, release: make(chan struct{})}
	var calls atomic.Int64
	over := make(chan struct{}) // closed at the call past the bound
	h := worker.HandlerFunc(func(context.Context, *schemas.Task) ([]byte, error) {
		if calls.Add(1) == maxInFlight+1 {
			close(over)
		}
		return []byte(`{"price": 1}`), nil
	})
	w, err := kafka.NewWorker(topo, f, kafka.WithHandler("a", h), kafka.WithHooks(blocked))
	if err != nil {
		t.Fatal(err)
	}
	processortest.Start(t, w)
	var once sync.Once
	unblock := func() { once.Do(func() { close(blocked.release) }) }
	defer unblock()

	processortest.Eventually(t, time.Minute, "the worker's slots to fill with tasks waiting for their write", func() bool {
		return blocked.waiting.Load() >= maxInFlight
	})
	// That the worker takes no more tasks is the absence of an event:
	// watch for one for a while.
	select {
	case <-over:
		t.Errorf("with no result written, the worker called the provider for more than worker.max_in_flight %d tasks", maxInFlight)
	case <-time.After(2 * time.Second):
	}
	unblock()
	for id, a := range processortest.Aggregates(t, topo, f, n, 2*time.Minute) {
		if a.Outcome != schemas.OutcomeComplete {
			t.Errorf("%s: outcome %s (%s)", id, a.Outcome, a.Reason)
		}
	}
	if most := blocked.most.Load(); most > maxInFlight {
		t.Errorf("%d tasks waited for their write at once, want at most %d", most, maxInFlight)
	}
}

func TestWorkerBoundsTasksWaitingForTheirWriteFake(t *testing.T) {
	runWriteBound(t, processortest.Fake(t))
}

func TestIntegrationWorkerBoundsTasksWaitingForTheirWrite(t *testing.T) {
	runWriteBound(t, processortest.Brokers(t))
}
