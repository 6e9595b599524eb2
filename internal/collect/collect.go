package collect

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/scattergather/scattergather/processor/admin"
	"github.com/scattergather/scattergather/processor/kafka"
	"github.com/scattergather/scattergather/processor/topology"
	"github.com/scattergather/scattergather/schemas"
)

// ErrClosed is what Wait returns once the collector is closed.
var ErrClosed = errors.New("collect: closed")

// Option configures a Collector.
type Option func(*options)

type options struct {
	fromEnd      bool
	arrivalsOnly bool
	log          *slog.Logger
	onFirst      func(id string, at time.Time, a *schemas.Aggregate)
}

// FromEnd reads only the aggregates written from Start on. By default the
// collector reads the topic from its first offset.
func FromEnd() Option { return func(o *options) { o.fromEnd = true } }

// ArrivalsOnly keeps each request's arrival time but not its aggregate
// (Aggregate then returns nil), for runs too long to hold every aggregate.
func ArrivalsOnly() Option { return func(o *options) { o.arrivalsOnly = true } }

// WithLogger logs read errors and undecodable records to l, and gives l to
// the reader's Kafka client. Default: discarded.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// OnFirst calls fn with each request's first aggregate as it is read: on
// the collector's reading goroutine, before Wait or Arrived can see that
// the request arrived. fn must not call the Collector; the aggregate is
// fn's to keep.
func OnFirst(fn func(id string, at time.Time, a *schemas.Aggregate)) Option {
	return func(o *options) { o.onFirst = fn }
}

type arrival struct {
	at  time.Time
	agg *schemas.Aggregate
}

// Collector reads a flow's aggregated topic as a read_committed consumer
// outside any group, in the background from Start until Close. Safe for
// concurrent use.
type Collector struct {
	o      options
	r      *admin.Reader
	cancel context.CancelFunc
	done   chan struct{}
	close  sync.Once

	mu          sync.Mutex
	first       map[string]arrival // request id → its first aggregate
	order       []string           // request ids in the order of their first aggregate
	dups        int
	undecodable int
	changed     chan struct{} // closed, and replaced, after every read
}

// Start begins reading the aggregated topic of flow f. Close the collector
// when done.
func Start(topo *topology.Topology, f *topology.Flow, opts ...Option) (*Collector, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.log == nil {
		o.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	r, err := admin.NewReader(topo, f.Topics.Aggregated, !o.fromEnd, kafka.WithLogger(o.log))
	if err != nil {
		return nil, fmt.Errorf("collect: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Collector{o: o, r: r, cancel: cancel, done: make(chan struct{}),
		first: map[string]arrival{}, changed: make(chan struct{})}
	go c.read(ctx)
	return c, nil
}

func (c *Collector) read(ctx context.Context) {
	defer close(c.done)
	for {
		recs, err := c.r.Poll(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			c.o.log.Warn("collect: read aggregates", "err", err)
		}
		now := time.Now()
		c.mu.Lock()
		for _, rec := range recs {
			a := new(schemas.Aggregate)
			if err := schemas.DecodeInto(rec.Value, a); err != nil {
				c.undecodable++
				c.o.log.Error("collect: aggregate", "partition", rec.Partition, "offset", rec.Offset, "err", err)
				continue
			}
			if _, dup := c.first[a.RequestID]; dup {
				c.dups++
				continue
			}
			if c.o.onFirst != nil {
				c.o.onFirst(a.RequestID, now, a)
			}
			arr := arrival{at: now}
			if !c.o.arrivalsOnly {
				arr.agg = a
			}
			c.first[a.RequestID] = arr
			c.order = append(c.order, a.RequestID)
		}
		close(c.changed)
		c.changed = make(chan struct{})
		c.mu.Unlock()
	}
}

// Close stops reading and closes the reader. What was read stays
// available.
func (c *Collector) Close() {
	c.close.Do(func() {
		c.cancel()
		<-c.done
		c.r.Close()
	})
}

// Wait returns nil once every one of ids has its aggregate; otherwise,
// when ctx ends, an error that says how many have not and wraps ctx's
// cause, or ErrClosed once the collector is closed.
func (c *Collector) Wait(ctx context.Context, ids ...string) error {
	for {
		c.mu.Lock()
		missing := 0
		for _, id := range ids {
			if _, ok := c.first[id]; !ok {
				missing++
			}
		}
		changed := c.changed
		c.mu.Unlock()
		if missing == 0 {
			return nil
		}
		select {
		case <-changed:
		case <-c.done:
			return ErrClosed
		case <-ctx.Done():
			return fmt.Errorf("collect: %d of %d requests without an aggregate: %w", missing, len(ids), context.Cause(ctx))
		}
	}
}

// Arrived returns when the first aggregate of request id was read, and
// whether it was.
func (c *Collector) Arrived(id string) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, ok := c.first[id]
	return a.at, ok
}

// Aggregate returns the first aggregate of request id, or nil if none was
// read yet (or the collector keeps arrivals only). The caller must not
// modify it.
func (c *Collector) Aggregate(id string) *schemas.Aggregate {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.first[id].agg
}

// Count is how many requests have had an aggregate.
func (c *Collector) Count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.first)
}

// Duplicates is how many aggregates came for a request that already had
// one.
func (c *Collector) Duplicates() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dups
}

// Undecodable is how many records of the topic were no aggregate.
func (c *Collector) Undecodable() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.undecodable
}

// IDs returns the request ids that have had an aggregate, in the order
// their first aggregates were read. The slice is the caller's.
func (c *Collector) IDs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.order...)
}
