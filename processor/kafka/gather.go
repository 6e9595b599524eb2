package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scattergather/scattergather/processor/gather"
	"github.com/scattergather/scattergather/processor/topology"
	"github.com/scattergather/scattergather/schemas"
	"github.com/scattergather/scattergather/store"
)

// Gather runs the gather role of one flow: it folds its partitions of the
// results topic into a Pebble store, and writes aggregates (with late
// results and dead letters) together with the consumed offsets in one
// transaction per poll. The store's changes are applied only once that
// transaction commits.
type Gather struct {
	topo     *topology.Topology
	flow     *topology.Flow
	o        *options
	log      *slog.Logger
	stateDir string
	group    string

	gf    *gather.Flow
	db    *store.DB
	parts map[int32]*gatherPart

	mu     sync.Mutex
	events []partEvent // assignments and revocations, in order

	statsMu sync.Mutex
	stats   GatherStats

	lag        lag
	lagTotal   atomic.Int64
	rebuilding atomic.Int32
	w          *writer // of the current session, made by transact
	*readiness
}

// GatherStats are the gather's running totals, for progress lines.
type GatherStats struct {
	Aggregates   int64
	Late         int64
	DeadLettered int64
	Ticks        int64
	Rebuilt      int64 // records re-folded silently to rebuild state
	Committed    int64 // transactions committed
	Aborted      int64 // transactions aborted (their records are read again)
	Open         int64 // open requests over the owned partitions
}

type partEvent struct {
	assigned   bool
	partitions []int32
}

type gatherPart struct {
	fold         *gather.Partition
	lastTick     time.Time
	nextDeadline int64
	hasDeadline  bool
}

// NewGather returns the gather of flow, keeping its state under
// stateDir/<flow>.
func NewGather(t *topology.Topology, flow *topology.Flow, stateDir string, opts ...GatherOpt) (*Gather, error) {
	o := gatherOptions(opts)
	gf, err := gather.NewFlow(flow, o.codec, gather.WithObserver(newFoldObserver(o.hooks, flow)))
	if err != nil {
		return nil, err
	}
	g := &Gather{topo: t, flow: flow, o: o, stateDir: stateDir, gf: gf,
		group: t.Group(flow, RoleGather), parts: map[int32]*gatherPart{}, log: o.logger.With("role", RoleGather, "flow", flow.Name)}
	g.readiness = newReadiness(1, g.log)
	return g, nil
}

// Stats returns the running totals. Safe for concurrent use.
func (g *Gather) Stats() GatherStats {
	g.statsMu.Lock()
	defer g.statsMu.Unlock()
	return g.stats
}

func (g *Gather) count(fn func(*GatherStats)) {
	g.statsMu.Lock()
	fn(&g.stats)
	g.statsMu.Unlock()
}

// Run gathers until ctx ends or a fatal error.
func (g *Gather) Run(ctx context.Context) error {
	if err := preflight(ctx, g.topo, g.o); err != nil {
		return err
	}
	f := g.flow
	db, err := store.Open(filepath.Join(g.stateDir, f.Name))
	if err != nil {
		// Most often another gather process holds the directory's lock.
		return &PermanentError{Err: err}
	}
	g.db = db
	defer db.Close()
	// A restarted Run starts from the committed offsets: no fold survives.
	g.parts = map[int32]*gatherPart{}
	g.lag = lag{}
	g.mu.Lock()
	g.events = nil
	g.mu.Unlock()

	ticker, err := kgo.NewClient(baseOpts(g.topo, g.o, "gather-tick")...)
	if err != nil {
		return errorf("tick producer: %w", err)
	}
	defer ticker.Close()

	record := func(assigned bool) func(context.Context, *kgo.Client, map[string][]int32) {
		return func(_ context.Context, _ *kgo.Client, ps map[string][]int32) {
			g.mu.Lock()
			g.events = append(g.events, partEvent{assigned: assigned, partitions: ps[f.Topics.Results]})
			g.mu.Unlock()
			if assigned {
				g.assigned()
			}
		}
	}
	onLoss := record(false)
	sess, err := newTransactSession(ctx, transactSession{topo: g.topo, o: g.o, role: RoleGather, group: g.group, topic: f.Topics.Results,
		extra: []kgo.Opt{
			kgo.OnPartitionsRevoked(onLoss),
			kgo.OnPartitionsLost(onLoss),
			kgo.OnPartitionsAssigned(record(true)),
		}})
	if err != nil {
		return err
	}
	defer sess.Close()
	adm := kadm.NewClient(sess.Client())
	if err := checkTopics(ctx, adm, f); err != nil {
		return err
	}
	g.log.Info("gather started", "group", g.group, "instance", g.o.instance, "state", filepath.Join(g.stateDir, f.Name))

	for {
		pollCtx, cancel := context.WithTimeout(ctx, f.Gather.TickInterval.D)
		fetches := sess.PollFetches(pollCtx)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if err := fetchErrors(fetches, g.log); err != nil {
			return err
		}
		// Partitions are prepared when assigned, not when records arrive: a
		// quiet partition with open requests must tick too.
		if err := g.handleEvents(ctx, adm); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		busy := map[int32]bool{}
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			if len(fp.Records) > 0 {
				busy[fp.Partition] = true
			}
		})
		lag := g.lag.observe(fetches, func(p int32) bool { return g.parts[p] != nil })
		g.lagTotal.Store(lag)
		each(g.o.hooks, func(h HookLag) { h.OnLag(f.Name, RoleGather, lag) })
		for p := range busy {
			if g.parts[p] == nil {
				if err := g.prepare(ctx, adm, p); err != nil {
					if ctx.Err() != nil {
						return nil
					}
					return err
				}
			}
		}
		if len(busy) > 0 {
			if err := g.transact(ctx, sess, fetches); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
		}
		g.tick(ticker, busy)
		g.observe(g.Status())
	}
}

func (g *Gather) refreshDeadline(gp *gatherPart) {
	ms, ok, err := gp.fold.NextDeadline()
	if err != nil {
		g.log.Warn("read next deadline", "err", err)
		return
	}
	gp.nextDeadline, gp.hasDeadline = ms, ok
}

// tick writes a tick to each owned partition that is quiet (no records in
// this poll) while its earliest deadline is due by the wall clock, at most
// once per tick interval, so that its stream time passes the deadline.
func (g *Gather) tick(ticker *kgo.Client, busy map[int32]bool) {
	now := g.o.now()
	for p, gp := range g.parts {
		if busy[p] || !gp.hasDeadline || now.UnixMilli() <= gp.nextDeadline || now.Sub(gp.lastTick) < g.flow.Gather.TickInterval.D {
			continue
		}
		b, err := g.o.codec.Encode(&schemas.Tick{SentMs: now.UnixMilli()})
		if err != nil {
			g.log.Error("encode tick", "err", err)
			return
		}
		gp.lastTick = now
		ticker.Produce(context.Background(), toPartition(&kgo.Record{Topic: g.flow.Topics.Results, Value: b, Timestamp: now}, p),
			func(_ *kgo.Record, err error) {
				if err != nil {
					g.log.Warn("tick not written", "partition", p, "err", err)
				}
			})
		g.count(func(s *GatherStats) { s.Ticks++ })
		each(g.o.hooks, func(h HookTick) { h.OnTick(g.flow.Name) })
	}
}

// handleEvents applies the assignments and revocations the group made
// since the last poll, in order.
func (g *Gather) handleEvents(ctx context.Context, adm *kadm.Client) error {
	g.mu.Lock()
	events := g.events
	g.events = nil
	g.mu.Unlock()
	for _, ev := range events {
		for _, p := range ev.partitions {
			gp := g.parts[p]
			switch {
			case ev.assigned && gp == nil:
				if err := g.prepare(ctx, adm, p); err != nil {
					return err
				}
			case !ev.assigned && gp != nil:
				gp.fold.Abort()
				delete(g.parts, p)
				g.log.Info("partition revoked", "partition", p)
			}
		}
	}
	return nil
}

// prepare makes the fold of a newly assigned partition: it fetches the
// committed offset and carries out what gather.PlanResume decides (resume
// the local state, re-fold its tail, or discard it and rebuild silently up
// to the committed offset).
func (g *Gather) prepare(ctx context.Context, adm *kadm.Client, p int32) error {
	log := g.log.With("partition", p)
	committed, meta, err := g.committedOffset(ctx, adm, p)
	if err != nil {
		return err
	}
	st := g.db.Partition(p)
	local, hasLocal, err := st.Position()
	if err != nil {
		return err
	}
	plan := gather.PlanResume(local, hasLocal, committed, meta)
	if plan.Warning != "" {
		log.Warn(plan.Warning, "offset", committed, "metadata", meta)
	}
	if plan.Discard {
		if err := st.Discard(); err != nil {
			return err
		}
	}
	switch plan.Action {
	case gather.StartEmpty:
		log.Info("partition assigned: starting empty", "offset", plan.Start.Next, "reason", plan.Reason)
	case gather.Resume:
		log.Info("partition assigned: local state is current", "offset", committed, "open", local.Open)
	case gather.Refold:
		log.Info("partition assigned: re-folding the tail", "from", local.Next, "to", committed)
	default:
		log.Info("partition assigned: rebuilding state", "from", plan.Start.Next, "to", committed, "had_local", hasLocal, "reason", plan.Reason)
	}
	fold := g.gf.NewPartition(p, st, plan.Start)
	if committed >= 0 && fold.Next() < committed {
		if err := g.refold(ctx, fold, p, committed, log); err != nil {
			return err
		}
	}
	gp := &gatherPart{fold: fold}
	g.refreshDeadline(gp)
	g.parts[p] = gp
	return nil
}

// committedOffset fetches the group's committed offset and metadata of
// partition p, waiting out pending transactional commits.
func (g *Gather) committedOffset(ctx context.Context, adm *kadm.Client, p int32) (int64, string, error) {
	for attempt := 0; ; attempt++ {
		resps, err := adm.FetchOffsets(kadm.RequireStable(ctx), g.group)
		if err == nil {
			r, ok := resps.Lookup(g.flow.Topics.Results, p)
			switch {
			case !ok:
				return -1, "", nil
			case r.Err == nil:
				return r.At, r.Metadata, nil
			}
			err = r.Err
		}
		if !errors.Is(err, kerr.UnstableOffsetCommit) && !kerr.IsRetriable(err) || attempt >= 300 {
			return 0, "", errorf("fetch committed offset of partition %d: %w", p, err)
		}
		select {
		case <-ctx.Done():
			return 0, "", ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// refold reads partition p from the fold's position up to committed with
// a separate consumer and folds it silently: everything it would emit was
// emitted by the transactions that committed those offsets.
func (g *Gather) refold(ctx context.Context, fold *gather.Partition, p int32, committed int64, log *slog.Logger) error {
	start := time.Now()
	from := fold.Next()
	g.rebuilding.Add(1)
	each(g.o.hooks, func(h HookRebuild) { h.OnRebuilding(g.flow.Name, 1) })
	defer func() {
		g.rebuilding.Add(-1)
		each(g.o.hooks, func(h HookRebuild) { h.OnRebuilding(g.flow.Name, -1) })
	}()
	cl, err := kgo.NewClient(append(baseOpts(g.topo, g.o, "gather-rebuild"),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{g.flow.Topics.Results: {p: kgo.NewOffset().At(from)}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
	)...)
	if err != nil {
		return errorf("rebuild client: %w", err)
	}
	defer cl.Close()
	discard := func(gather.Output) {}
	var n int64
	lastLog := time.Now()
	idle := 0
	for fold.Next() < committed {
		pollCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		fs := cl.PollFetches(pollCtx)
		cancel()
		if ctx.Err() != nil {
			fold.Abort()
			return ctx.Err()
		}
		got := 0
		var applyErr error
		fs.EachRecord(func(r *kgo.Record) {
			if applyErr != nil || r.Offset >= committed {
				return
			}
			got++
			applyErr = fold.Apply(gather.Record{Offset: r.Offset, TimeMs: r.Timestamp.UnixMilli(), Key: r.Key, Value: r.Value}, discard)
		})
		if applyErr != nil {
			fold.Abort()
			return applyErr
		}
		n += int64(got)
		each(g.o.hooks, func(h HookRebuild) { h.OnRebuilt(g.flow.Name, got) })
		if got == 0 {
			// Nothing more is readable below the committed offset (its last
			// records were control records or are gone).
			if idle++; idle >= 3 {
				log.Warn("rebuild stopped short of the committed offset", "at", fold.Next(), "committed", committed)
				break
			}
			continue
		}
		idle = 0
		if n%20000 < int64(got) {
			if err := fold.Commit(); err != nil {
				return err
			}
		}
		if time.Since(lastLog) > 5*time.Second {
			log.Info("rebuilding state", "at", fold.Next(), "to", committed, "records", n)
			lastLog = time.Now()
		}
	}
	if err := fold.SkipTo(committed); err != nil {
		return err
	}
	if err := fold.Commit(); err != nil {
		return err
	}
	g.count(func(s *GatherStats) { s.Rebuilt += n })
	log.Info("state rebuilt", "from", from, "to", committed, "records", n, "open", fold.Position().Open, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// CaughtUpLag is the lag (records over the owned partitions) under which a
// gather reports itself caught up.
const CaughtUpLag = 1000

// Status reports the gather ready once it has partitions, no state is being
// rebuilt and it is caught up with its input, unless it cannot write what
// it folded.
func (g *Gather) Status() Status {
	st := Status{Role: RoleGather, Flow: g.flow.Name}
	if d := g.troubled(); d != "" {
		st.Detail = d
		return st
	}
	select {
	case <-g.Ready():
	default:
		st.Detail = "waiting for partitions of " + g.flow.Topics.Results
		return st
	}
	if n := g.rebuilding.Load(); n > 0 {
		st.Detail = fmt.Sprintf("rebuilding the state of %d partition(s)", n)
		return st
	}
	if lag := g.lagTotal.Load(); lag > CaughtUpLag {
		st.Detail = fmt.Sprintf("catching up: %d records behind", lag)
		return st
	}
	st.Ready = true
	return st
}
