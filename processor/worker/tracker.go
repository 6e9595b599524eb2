package worker

import (
	"slices"
	"sync"
)

// TopicPartition names a partition of a topic.
type TopicPartition struct {
	Topic     string
	Partition int32
}

// Tracker follows the tasks a worker has in flight and says how far each
// partition may be committed: up to the oldest unfinished task, so that a
// crash re-runs what had not finished and nothing else. Tasks of one
// partition must be started in offset order. Safe for concurrent use.
type Tracker struct {
	mu    sync.Mutex
	parts map[TopicPartition]*partTrack
}

type partTrack struct {
	next     int64   // offset after the last started task
	inflight []int64 // started, unfinished offsets, ascending
}

// NewTracker returns an empty tracker.
func NewTracker() *Tracker { return &Tracker{parts: map[TopicPartition]*partTrack{}} }

// Start records that the task at offset of tp is in flight.
func (t *Tracker) Start(tp TopicPartition, offset int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.parts[tp]
	if p == nil {
		p = &partTrack{}
		t.parts[tp] = p
	}
	p.inflight = append(p.inflight, offset)
	p.next = max(p.next, offset+1)
}

// Finish records that the task at offset of tp is done (its result
// acknowledged) and returns the partition's offset to commit now (see
// Committable); ok is false for a partition the tracker does not follow.
func (t *Tracker) Finish(tp TopicPartition, offset int64) (commit int64, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.parts[tp]
	if p == nil {
		return 0, false
	}
	if i, found := slices.BinarySearch(p.inflight, offset); found {
		p.inflight = slices.Delete(p.inflight, i, i+1)
	}
	return p.committable(), true
}

// committable is the oldest unfinished offset, or the one after the last
// started when none is unfinished.
func (p *partTrack) committable() int64 {
	if len(p.inflight) > 0 {
		return p.inflight[0]
	}
	return p.next
}

// Forget drops the partitions, after they were revoked.
func (t *Tracker) Forget(tps ...TopicPartition) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, tp := range tps {
		delete(t.parts, tp)
	}
}

// Committable returns, per partition, the offset to commit: the oldest
// unfinished task, or the offset after the last started task when none is
// unfinished.
func (t *Tracker) Committable() map[TopicPartition]int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[TopicPartition]int64, len(t.parts))
	for tp, p := range t.parts {
		out[tp] = p.committable()
	}
	return out
}

// InFlight is the number of unfinished tasks.
func (t *Tracker) InFlight() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, p := range t.parts {
		n += len(p.inflight)
	}
	return n
}
