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
	owned map[int32]bool // partitions assigned and not revoked since
	cl    *kgo.Client    // the session's client, while Run runs
	hang  *hangCheck     // the session's, while Run runs
	ticks tickHealth

	mu     sync.Mutex
	events []partEvent // assignments and revocations, in order

	statsMu sync.Mutex
	stats   GatherStats

	lag        lag
	lagTotal   atomic.Int64
	rebuilding atomic.Int32
	w          *writer // of the current session, made by transact
	// open is the transaction left open for the next poll (see
	// gather.commit_delay), or nil. Only Run's goroutine uses it.
	open *gatherTxn
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
		group: t.Group(flow, RoleGather), parts: map[int32]*gatherPart{}, owned: map[int32]bool{}, log: o.logger.With("role", RoleGather, "flow", flow.Name)}
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
	g.owned = map[int32]bool{}
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
	sess, hang, err := newTransactSession(ctx, transactSession{topo: g.topo, o: g.o, role: RoleGather, group: g.group, topic: f.Topics.Results,
		outputs: []string{f.Topics.Aggregated, f.Topics.Late, f.Topics.DeadLetter},
		extra: []kgo.Opt{
			kgo.OnPartitionsRevoked(onLoss),
			kgo.OnPartitionsLost(onLoss),
			kgo.OnPartitionsAssigned(record(true)),
		}})
	if err != nil {
		return err
	}
	defer sess.Close()
	g.cl, g.hang = sess.Client(), hang
	adm := kadm.NewClient(g.cl)
	if err := checkTopics(ctx, adm, f); err != nil {
		return err
	}
	// The ticks are written to the topic the gather reads: a principal
	// that may read it but not write it would never see the deadlines of
	// quiet partitions fire.
	if err := checkWriteAuthorized(ctx, g.cl, f.Topics.Results); err != nil {
		return &PermanentError{Err: fmt.Errorf("gather: %w: grant WRITE on it to the gather's principal (ticks move stream time on quiet partitions, so that their deadlines fire)", err)}
	}
	g.ticks.reset()
	g.log.Info("gather started", "group", g.group, "instance", g.o.instance, "state", filepath.Join(g.stateDir, f.Name))

	g.open = nil
	defer g.dropOpen()
	for {
		wait := f.Gather.TickInterval.D
		if g.open != nil {
			// Poll for more to fold into the open transaction until
			// gather.commit_delay has passed since it began.
			if wait = min(wait, time.Until(g.open.until)); wait <= 0 {
				if err := g.endTxn(sess); err != nil {
					return err
				}
				wait = f.Gather.TickInterval.D
			}
		}
		pollCtx, cancel := context.WithTimeout(ctx, wait)
		fetches := sess.PollFetches(pollCtx)
		cancel()
		if ctx.Err() != nil {
			// Shutting down: commit what the open transaction folded,
			// unless this poll brought records it has not (the offsets
			// the transaction commits would pass them).
			if g.open != nil && fetches.NumRecords() == 0 {
				if err := g.endTxn(sess); err != nil {
					g.log.Warn("the last transaction did not commit; its records are read again", "err", err)
				}
			}
			return nil
		}
		g.polled(fetches)
		if err := fetchErrors(fetches, g.log); err != nil {
			return err
		}
		// Partitions are prepared when assigned, not when records arrive: a
		// quiet partition with open requests must tick too. An assignment
		// or revocation while a transaction is open ends it with this
		// poll: the session aborts a transaction that saw a revocation,
		// and the fold of a partition assigned afresh starts from the
		// committed offset, not from what the transaction folded.
		wasOpen := g.open != nil
		rebalanced, err := g.handleEvents(ctx, adm)
		if err != nil {
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
		if err := g.prepareBusy(ctx, adm, busy); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		switch {
		case len(busy) > 0:
			err = g.transact(ctx, sess, fetches, wasOpen && rebalanced)
		case wasOpen && rebalanced:
			err = g.endTxn(sess)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		g.tick(ticker, busy)
		g.observe(g.Status())
		if _, fatal := g.ticks.state(); fatal != nil {
			return fatal
		}
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
			func(_ *kgo.Record, err error) { g.ticks.written(g, p, err) })
		g.count(func(s *GatherStats) { s.Ticks++ })
		each(g.o.hooks, func(h HookTick) { h.OnTick(g.flow.Name) })
	}
}

// tickFailuresShown is how many ticks in a row must fail before readiness
// says so: one failure is a broker hiccup the producer's retries did not
// cover; several mean the deadlines of quiet partitions stall.
const tickFailuresShown = 3

// tickHealth follows whether the gather's ticks are written. Safe for
// concurrent use: the producer's callbacks report to it.
type tickHealth struct {
	mu     sync.Mutex
	failed int   // ticks in a row not written
	last   error // the last failure
	fatal  error // a failure a retry cannot cure (authorisation)
}

// written records a tick's outcome; it logs a failure, counts it through
// the hooks, and keeps one a retry cannot cure for Run to fail with.
func (t *tickHealth) written(g *Gather, p int32, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err == nil {
		if t.failed >= tickFailuresShown {
			g.log.Info("ticks are written again", "partition", p)
		}
		t.failed, t.last = 0, nil
		return
	}
	t.failed++
	t.last = err
	g.log.Warn("tick not written: deadlines of quiet partitions wait for it", "partition", p, "failed_in_a_row", t.failed, "err", err)
	each(g.o.hooks, func(h HookTickFailed) { h.OnTickFailed(g.flow.Name) })
	if errors.Is(err, kerr.TopicAuthorizationFailed) || errors.Is(err, kerr.ClusterAuthorizationFailed) || errors.Is(err, kerr.TransactionalIDAuthorizationFailed) {
		t.fatal = &PermanentError{Err: fmt.Errorf("gather: cannot write ticks to %s: %w: grant WRITE on the topic to the gather's principal (ticks move stream time on quiet partitions, so that their deadlines fire)", g.flow.Topics.Results, err)}
	}
}

func (t *tickHealth) reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failed, t.last, t.fatal = 0, nil, nil
}

// state returns the failure to show, if ticks keep failing, and the one to
// fail with.
func (t *tickHealth) state() (shown, fatal error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.failed >= tickFailuresShown {
		shown = t.last
	}
	return shown, t.fatal
}

// handleEvents applies the assignments and revocations the group made
// since the last poll, in order. An assignment always prepares the
// partition afresh from the committed position, even when this instance
// still has a fold of it (a revocation it did not see): that fold may
// stand at an old position.
func (g *Gather) handleEvents(ctx context.Context, adm *kadm.Client) (handled bool, err error) {
	g.mu.Lock()
	events := g.events
	g.events = nil
	g.mu.Unlock()
	handled = len(events) > 0
	for _, ev := range events {
		for _, p := range ev.partitions {
			if gp := g.parts[p]; gp != nil {
				gp.fold.Abort()
				delete(g.parts, p)
			}
			if !ev.assigned {
				delete(g.owned, p)
				g.log.Info("partition revoked", "partition", p)
				continue
			}
			g.owned[p] = true
			if err := g.prepare(ctx, adm, p); err != nil {
				return handled, err
			}
		}
	}
	return handled, nil
}

// prepareBusy prepares the partitions that have records in a poll but no
// fold yet, if this instance still owns them: the records of a partition
// revoked since the poll are left to its new owner.
func (g *Gather) prepareBusy(ctx context.Context, adm *kadm.Client, busy map[int32]bool) error {
	for p := range busy {
		if g.parts[p] == nil && g.owned[p] {
			if err := g.prepare(ctx, adm, p); err != nil {
				return err
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
		m, _ := gather.ParseCommitMeta(meta)
		if err := g.refold(ctx, adm, fold, p, committed, m.Open, log); err != nil {
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
	_ = adm
	for attempt := 0; ; attempt++ {
		offs, err := FetchStableOffsets(ctx, g.cl, g.group, g.flow.Topics.Results, []int32{p})
		if errors.Is(err, kerr.GroupIDNotFound) {
			return -1, "", nil // a group that never committed
		}
		if err == nil {
			if c, ok := offs[p]; ok {
				return c.At, c.Metadata, nil
			}
			return -1, "", nil
		}
		if !errors.Is(err, kerr.UnstableOffsetCommit) && !kerr.IsRetriable(err) || attempt >= 300 {
			return 0, "", errorf("fetch committed offset of partition %d: %w", p, err)
		}
		if attempt == 50 && errors.Is(err, kerr.UnstableOffsetCommit) {
			// Five seconds unstable: perhaps a transaction of this identity
			// that its coordinator lost.
			if settleHanging(ctx, g.hang) == 0 {
				g.log.Warn("the group's committed offset has been unstable for 5s, and no lost transaction of this instance holds it: waiting for the open transaction to end",
					"partition", p, "group", g.group)
			}
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
// emitted by the transactions that committed those offsets. It keeps
// reading until the fold stands exactly at committed: control records
// (transaction markers) are read too, so every offset below committed is
// accounted for; fetch errors (a leader election, a broker restarting) are
// waited out, logged, for at most gather.rebuild_timeout.
func (g *Gather) refold(ctx context.Context, adm *kadm.Client, fold *gather.Partition, p int32, committed, open int64, log *slog.Logger) error {
	start := time.Now()
	from := fold.Next()
	g.rebuilding.Add(1)
	each(g.o.hooks, func(h HookRebuild) { h.OnRebuilding(g.flow.Name, 1) })
	defer func() {
		g.rebuilding.Add(-1)
		each(g.o.hooks, func(h HookRebuild) { h.OnRebuilding(g.flow.Name, -1) })
	}()
	from, err := g.checkLogStart(ctx, adm, fold, p, committed, open, log)
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(append(baseOpts(g.topo, g.o, "gather-rebuild"),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{g.flow.Topics.Results: {p: kgo.NewOffset().At(from)}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
	)...)
	if err != nil {
		return errorf("rebuild client: %w", err)
	}
	defer cl.Close()
	discard := func(gather.Output) {}
	var (
		n        int64
		lastLog  = time.Now()
		lastErr  error
		deadline = start.Add(g.flow.Gather.RebuildTimeout.D)
	)
	for fold.Next() < committed {
		if time.Now().After(deadline) {
			fold.Abort()
			return errorf("gather: partition %d: the rebuild did not reach the committed offset %d within gather.rebuild_timeout %s (at %d; last fetch error: %v)",
				p, committed, g.flow.Gather.RebuildTimeout.D, fold.Next(), lastErr)
		}
		pollCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		fs := cl.PollFetches(pollCtx)
		cancel()
		if ctx.Err() != nil {
			fold.Abort()
			return ctx.Err()
		}
		fs.EachError(func(_ string, _ int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				lastErr = err
			}
		})
		got := 0
		var applyErr error
		fs.EachRecord(func(r *kgo.Record) {
			if applyErr != nil || r.Offset >= committed {
				return
			}
			if r.Attrs.IsControl() {
				// A transaction marker: its offset is accounted for.
				fold.SkipTo(r.Offset + 1)
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
		if got > 0 && n%20000 < int64(got) {
			if err := fold.Commit(); err != nil {
				return err
			}
		}
		if time.Since(lastLog) > 5*time.Second {
			if lastErr != nil {
				log.Warn("rebuilding state: waiting for the broker", "at", fold.Next(), "to", committed, "records", n, "err", lastErr)
			} else {
				log.Info("rebuilding state", "at", fold.Next(), "to", committed, "records", n)
			}
			lastLog, lastErr = time.Now(), nil
		}
	}
	if err := fold.Commit(); err != nil {
		return err
	}
	g.count(func(s *GatherStats) { s.Rebuilt += n })
	log.Info("state rebuilt", "from", from, "to", committed, "records", n, "open", fold.Position().Open, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// LogStartError is a rebuild that cannot start: the records from the
// oldest needed manifest on were deleted (time or size retention,
// DeleteRecords) before the state was rebuilt from them. Going on means
// giving up the requests opened there: the gather refuses unless told to
// (WithLostRequestsAllowed, run --allow-lost-requests).
type LogStartError struct {
	Topic     string
	Partition int32
	From      int64 // the oldest needed manifest
	LogStart  int64 // the first offset the log still has
	Open      int64 // open requests at the committed offset, the most that are lost
}

func (e *LogStartError) Error() string {
	return fmt.Sprintf("gather: %s[%d]: the state must be rebuilt from offset %d, but the log starts at %d: offsets %d to %d were deleted (retention or DeleteRecords), and with them the manifests of up to %d open request(s), which cannot complete. "+
		"To give them up and rebuild from offset %d, restart the gather with --allow-lost-requests (their late results go to the late topic); topics.results_retention (retention.ms) must cover the open requests",
		e.Topic, e.Partition, e.From, e.LogStart, e.From, e.LogStart-1, e.Open, e.LogStart)
}

// checkLogStart returns where the rebuild of partition p reads from: the
// fold's position, or, when the log no longer starts there and lost
// requests are allowed, the log start (the loss logged and counted).
func (g *Gather) checkLogStart(ctx context.Context, adm *kadm.Client, fold *gather.Partition, p int32, committed, open int64, log *slog.Logger) (int64, error) {
	from := fold.Next()
	topic := g.flow.Topics.Results
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return 0, errorf("rebuild: start offset of %s: %w", topic, err)
	}
	lo, ok := starts.Lookup(topic, p)
	if !ok || lo.Offset <= from {
		return from, nil
	}
	logStart := min(lo.Offset, committed)
	lost := &LogStartError{Topic: topic, Partition: p, From: from, LogStart: logStart, Open: open}
	if !g.o.allowLost {
		return 0, &PermanentError{Err: lost}
	}
	log.Error("rebuild gives up lost requests", "from", from, "log_start", logStart, "lost_offsets", fmt.Sprintf("%d-%d", from, logStart-1), "open_at_most", lost.Open)
	each(g.o.hooks, func(h HookRebuildLost) { h.OnRebuildLost(g.flow.Name, logStart-from) })
	fold.SkipTo(logStart)
	return logStart, nil
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
	if err, _ := g.ticks.state(); err != nil {
		st.Detail = fmt.Sprintf("ticks to %s are not written (%v): deadlines of quiet partitions wait", g.flow.Topics.Results, err)
		return st
	}
	if lag := g.lagTotal.Load(); lag > CaughtUpLag {
		st.Detail = fmt.Sprintf("catching up: %d records behind", lag)
		return st
	}
	st.Ready = true
	return st
}
