package kafka

import (
	"context"
	"sync"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scattergather/scattergather/processor/topology"
	"github.com/scattergather/scattergather/processor/worker"
)

// onRateLimit tells the hooks of every event of a target's rate limiter.
func (w *Worker) onRateLimit(tg *topology.Target) func(worker.RateLimitEvent) {
	return func(ev worker.RateLimitEvent) {
		each(w.o.hooks, func(h HookRateLimit) { h.OnRateLimit(w.flow.Name, tg.Name, ev.String()) })
	}
}

// partitionShare keeps a target's rate limiter at the share of the task
// topic's partitions this worker owns: tasks are spread by partition, so
// the instances of the group together stay within the target's
// rate_limit. Safe for concurrent use; a nil limiter makes it do nothing.
type partitionShare struct {
	lim   *worker.RateLimiter
	mu    sync.Mutex
	owned map[int32]bool
	total int
}

func newPartitionShare(lim *worker.RateLimiter) *partitionShare {
	return &partitionShare{lim: lim, owned: map[int32]bool{}}
}

// gain adds the partitions assigned, learning the topic's partition count
// the first time.
func (s *partitionShare) gain(ctx context.Context, c *kgo.Client, topic string, ps []int32) {
	if s.lim == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range ps {
		s.owned[p] = true
	}
	if s.total == 0 {
		if td, err := kadm.NewClient(c).ListTopics(ctx, topic); err == nil && td[topic].Err == nil {
			s.total = len(td[topic].Partitions)
		}
	}
	s.set()
}

// lose removes the partitions revoked or lost.
func (s *partitionShare) lose(ps []int32) {
	if s.lim == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range ps {
		delete(s.owned, p)
	}
	s.set()
}

// set applies the share; s.mu is held. When the partition count could not
// be read, the worker takes the whole limit.
func (s *partitionShare) set() {
	total := max(s.total, len(s.owned))
	if total == 0 {
		return
	}
	s.lim.SetShare(float64(len(s.owned)) / float64(total))
}
