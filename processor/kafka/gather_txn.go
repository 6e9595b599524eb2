package kafka

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/scattergather/scattergather/processor/gather"
	"github.com/scattergather/scattergather/processor/topology"
	"github.com/scattergather/scattergather/schemas"
)

// gatherTxn is what one transaction of the gather folded and produced,
// over one poll or, while they write nothing (gather.commit_delay),
// several. Partitions fold in parallel: mu guards the fields the folds
// set.
type gatherTxn struct {
	ctx    context.Context // the transaction's: see transactionContext
	cancel context.CancelFunc
	clock  txnClock
	until  time.Time // the longest it may wait for more polls
	from   readFrom  // where its records began: an abort reads them again from there
	inputs int       // records read

	mu       sync.Mutex
	touched  []*gatherPart
	aggs     []*schemas.Aggregate
	late     int64
	dead     []string    // kinds of the dead letters
	rewrites [][2]string // topic and how of each record rewritten to fit
	failures writeFailures
	applyErr error // the first error of the folds
	// abort makes the transaction abort: it took records from the
	// client's buffer that it cannot fold (see foldFetched).
	abort bool
}

func (t *gatherTxn) produced(r *kgo.Record, err error) { t.failures.produced(r, err) }

// touch adds gp to the partitions the transaction folded, once.
func (t *gatherTxn) touch(gp *gatherPart) {
	if !slices.Contains(t.touched, gp) {
		t.touched = append(t.touched, gp)
	}
}

// wroteNothing reports whether the transaction has produced nothing (so
// no write of it can have failed) and no fold failed: it may wait for
// more polls.
func (t *gatherTxn) wroteNothing() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.applyErr == nil && len(t.aggs) == 0 && t.late == 0 && len(t.dead) == 0
}

// transact folds one poll's records into the open transaction, beginning
// one when none is open, and ends it, committing its outputs, its offsets
// and (once it committed) the folds' state, unless it may wait for the
// next poll: it wrote nothing yet, gather.commit_delay has not passed
// since it began, and mustEnd is false.
func (g *Gather) transact(ctx context.Context, sess *kgo.GroupTransactSession, fetches kgo.Fetches, mustEnd bool) error {
	txn := g.open
	if txn == nil {
		tctx, cancel := transactionContext(ctx, g.topo)
		if g.w == nil || g.w.cl != sess.Client() {
			g.w = newWriter(tctx, sess.Client(), g.flow, RoleGather, g.o.hooks, g.log)
		}
		txn = &gatherTxn{ctx: tctx, cancel: cancel, clock: beginTxnClock(), from: readFrom{}}
		txn.until = txn.clock.began.Add(g.commitDelay())
		if err := sess.Begin(); err != nil {
			cancel()
			return errorf("gather begin: %w", err)
		}
		g.open = txn
	}
	// In flight from the first output of this fold to the end; between
	// polls it has sent the brokers nothing, and is not (see hangs).
	g.hang.own.begin()
	g.fold(sess, txn, fetches)
	if !mustEnd && txn.wroteNothing() && time.Now().Before(txn.until) {
		g.hang.own.end()
		return nil
	}
	if !mustEnd {
		if err := g.foldFetched(sess, txn); err != nil {
			txn.abort = true
			if endErr := g.endTxn(sess); endErr != nil {
				return endErr
			}
			return err
		}
	}
	return g.endTxn(sess)
}

// fold folds the records of fetches into txn. Partitions fold
// independently, each into its own overlay: in parallel, so that a gather
// with several partitions uses several cores.
func (g *Gather) fold(sess *kgo.GroupTransactSession, txn *gatherTxn, fetches kgo.Fetches) {
	txn.inputs += fetches.NumRecords()
	txn.from.add(fetches)
	var wg sync.WaitGroup
	fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
		gp := g.parts[fp.Partition]
		if gp == nil || len(fp.Records) == 0 {
			return
		}
		txn.touch(gp)
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.foldPartition(txn.ctx, sess, txn, gp, fp)
		}()
	})
	wg.Wait()
}

// foldFetched folds into txn, as it is about to end, the records fetched
// since the poll it folded last: their fetch was sent when that poll took
// the one before, and has most likely come back while the transaction's
// outputs were acknowledged. They ride this transaction instead of
// waiting for its end and then for the next one. An assignment or
// revocation not yet handled leaves them for the next poll. Records of a
// partition without a fold (assigned since) make the transaction abort,
// which reads them again once the partition is prepared; so does a fetch
// error that stops the role, which foldFetched returns.
func (g *Gather) foldFetched(sess *kgo.GroupTransactSession, txn *gatherTxn) error {
	g.mu.Lock()
	rebalancing := len(g.events) > 0
	g.mu.Unlock()
	if rebalancing {
		return nil
	}
	g.transaction(true) // waiting for the brokers from here (see endTxn)
	_ = sess.Client().Flush(txn.ctx)
	more := pollBuffered(sess)
	if len(more) == 0 {
		return nil
	}
	g.polled(more)
	if err := fetchErrors(more, g.log); err != nil {
		return err
	}
	more.EachPartition(func(fp kgo.FetchTopicPartition) {
		if len(fp.Records) > 0 && g.parts[fp.Partition] == nil {
			txn.abort = true
		}
	})
	if txn.abort {
		return nil
	}
	lag := g.lag.observe(more, func(p int32) bool { return g.parts[p] != nil })
	g.lagTotal.Store(lag)
	g.fold(sess, txn, more)
	return nil
}

// commitDelay is the flow's gather.commit_delay; its default for a flow
// whose defaults were not set.
func (g *Gather) commitDelay() time.Duration {
	if d := g.flow.Gather.CommitDelay; d != nil {
		return d.D
	}
	return topology.DefaultCommitDelay
}

// endTxn ends the open transaction: it commits when everything it
// produced was written and every fold applied, and aborts otherwise.
func (g *Gather) endTxn(sess *kgo.GroupTransactSession) error {
	txn := g.open
	g.open = nil
	// Waiting for the brokers from here (readiness says so after a
	// while); not while the transaction waited for more polls.
	g.transaction(true)
	defer g.transaction(false)
	defer txn.cancel()
	ctx := txn.ctx
	commit := kgo.TryCommit
	txn.clock.end()
	if err := sess.Client().Flush(ctx); err != nil {
		commit = kgo.TryAbort
	}
	prodErr := txn.failures.err()
	txn.mu.Lock()
	if txn.applyErr != nil || prodErr != nil || txn.abort {
		commit = kgo.TryAbort
	}
	txn.mu.Unlock()
	var metaErr error
	committed, err := sess.End(g.withCommitMeta(ctx, &metaErr), commit)
	if committed && err == nil && g.hang.own.troubled() {
		err = checkCommitted(ctx, g.hang)
		committed = err == nil
	}
	g.hang.own.end()
	if err == nil {
		txn.clock.tell(g.o.hooks, g.flow.Name, RoleGather, txn.inputs)
	}
	if !committed || err != nil {
		for _, gp := range txn.touched {
			gp.fold.Abort()
		}
		if err != nil {
			return errorf("gather end transaction: %w", err)
		}
		if txn.applyErr != nil {
			return txn.applyErr
		}
		g.count(func(s *GatherStats) { s.Aborted++ })
		each(g.o.hooks, func(h HookTransactionEnd) { h.OnTransactionEnd(g.flow.Name, RoleGather, false) })
		cause, err := g.w.aborted(ctx, txn.from.key(), txn.failures.failed())
		if err != nil {
			return err
		}
		if cause != nil {
			g.setTrouble(fmt.Sprintf("writing to %s refused: %v", cause.rec.Topic, cause.err))
		}
		g.log.Info("transaction aborted; the records are read again", "produce_err", prodErr, "meta_err", metaErr)
		return nil
	}
	g.w.committed()
	g.clearTrouble()
	for _, gp := range txn.touched {
		if err := gp.fold.Commit(); err != nil {
			return err
		}
		g.refreshDeadline(gp)
	}
	g.committed(txn)
	return nil
}

// dropOpen gives up the open transaction, if any, without ending it: its
// folds are dropped and its records are read again. For a Run that
// returns with one open; nothing of it reached the brokers (it wrote
// nothing), and the session closes.
func (g *Gather) dropOpen() {
	txn := g.open
	if txn == nil {
		return
	}
	g.open = nil
	for _, gp := range txn.touched {
		gp.fold.Abort()
	}
	g.hang.own.end()
	g.transaction(false)
	txn.cancel()
}

// foldPartition folds one partition's records of a poll into its overlay
// and produces their outputs in the transaction.
func (g *Gather) foldPartition(ctx context.Context, sess *kgo.GroupTransactSession, txn *gatherTxn, gp *gatherPart, fp kgo.FetchTopicPartition) {
	f := g.flow
	var (
		aggs     []*schemas.Aggregate
		late     int64
		dead     []string
		rewrites [][2]string
	)
	// setAsideFit writes a late record or dead letter, cut if it does not
	// fit its topic.
	setAsideFit := func(rec *kgo.Record) {
		if cut, ok := g.w.fitSetAside(rec); ok {
			g.log.Warn("record cut to fit its topic", "topic", rec.Topic, "partition", fp.Partition, "offset", Header(rec, schemas.HeaderOffset), "bytes", len(rec.Value))
			rewrites = append(rewrites, [2]string{rec.Topic, RewriteTruncated})
			rec = cut
		}
		sess.Produce(ctx, rec, txn.produced)
	}
	emit := func(o gather.Output) {
		switch o.Kind {
		case gather.ToAggregated:
			rec := &kgo.Record{Topic: f.Topics.Aggregated, Key: o.Key, Value: o.Value, Timestamp: time.UnixMilli(o.TimeMs)}
			rec, agg, rewritten := g.w.fitAggregate(rec, o.Aggregate, g.o.codec)
			if rewritten {
				g.log.Warn("aggregate written as failed", "request_id", agg.RequestID, "reason", agg.Reason)
				rewrites = append(rewrites, [2]string{rec.Topic, RewriteFailedAggregate})
			}
			aggs = append(aggs, agg)
			sess.Produce(ctx, rec, txn.produced)
			if agg != nil {
				g.log.Debug("aggregate", "request_id", agg.RequestID, "outcome", agg.Outcome)
			}
		case gather.ToLate:
			late++
			src := &kgo.Record{Topic: f.Topics.Results, Partition: fp.Partition, Offset: o.Offset, Key: o.Key, Value: o.Value}
			rec := setAside(f.Topics.Late, f, schemas.StageGather, src, o.ReasonKind, o.Reason)
			rec.Timestamp = time.UnixMilli(o.TimeMs)
			setAsideFit(rec)
		case gather.ToDeadLetter:
			dead = append(dead, o.ReasonKind)
			g.log.Warn("result dead-lettered", "partition", fp.Partition, "offset", o.Offset, "reason", o.Reason)
			src := &kgo.Record{Topic: f.Topics.Results, Partition: fp.Partition, Offset: o.Offset, Key: o.Key, Value: o.Value}
			setAsideFit(deadLetter(f, schemas.StageGather, src, o.ReasonKind, o.Reason))
		}
	}
	var err error
	for _, r := range fp.Records {
		if err = gp.fold.Apply(gather.Record{Offset: r.Offset, TimeMs: r.Timestamp.UnixMilli(), Key: r.Key, Value: r.Value}, emit); err != nil {
			break
		}
	}
	txn.mu.Lock()
	defer txn.mu.Unlock()
	txn.aggs, txn.late, txn.dead = append(txn.aggs, aggs...), txn.late+late, append(txn.dead, dead...)
	txn.rewrites = append(txn.rewrites, rewrites...)
	if err != nil && txn.applyErr == nil {
		txn.applyErr = err
	}
}

// withCommitMeta returns ctx with a hook that writes, into each offset the
// transaction commits for the results topic, the state's position as
// metadata (gather.CommitMeta), after checking that the fold stands
// exactly at that offset; a mismatch fails the commit and is kept in
// *metaErr.
func (g *Gather) withCommitMeta(ctx context.Context, metaErr *error) context.Context {
	return kgo.PreTxnCommitFnContext(ctx, func(req *kmsg.TxnOffsetCommitRequest) error {
		for ti := range req.Topics {
			t := &req.Topics[ti]
			if t.Topic != g.flow.Topics.Results {
				continue
			}
			for pi := range t.Partitions {
				p := &t.Partitions[pi]
				gp := g.parts[p.Partition]
				if gp == nil {
					continue
				}
				pos, err := gp.fold.Pending()
				if err != nil {
					return err
				}
				if pos.Next != p.Offset {
					*metaErr = fmt.Errorf("gather: partition %d: committing offset %d but the state stands at %d", p.Partition, p.Offset, pos.Next)
					return *metaErr
				}
				meta := gather.MetaOf(pos).String()
				p.Metadata = &meta
			}
		}
		return nil
	})
}

// committed counts a committed transaction and tells the hooks.
func (g *Gather) committed(txn *gatherTxn) {
	name := g.flow.Name
	var open int64
	for _, gp := range g.parts {
		open += gp.fold.Position().Open
	}
	g.count(func(s *GatherStats) {
		s.Aggregates += int64(len(txn.aggs))
		s.Late += txn.late
		s.DeadLettered += int64(len(txn.dead))
		s.Open = open
		s.Committed++
	})
	each(g.o.hooks, func(h HookTransactionEnd) { h.OnTransactionEnd(name, RoleGather, true) })
	each(g.o.hooks, func(h HookOpenRequests) { h.OnOpenRequests(name, open) })
	for _, a := range txn.aggs {
		each(g.o.hooks, func(h HookAggregate) {
			h.OnAggregate(name, string(a.Outcome), time.Duration(a.CompletedMs-a.OpenedMs)*time.Millisecond)
		})
		if a.Outcome == schemas.OutcomeTimeout || a.Outcome == schemas.OutcomeDeadline {
			each(g.o.hooks, func(h HookDeadlineFired) {
				h.OnDeadlineFired(name, time.Duration(a.CompletedMs-a.DeadlineMs)*time.Millisecond)
			})
		}
	}
	for range txn.late {
		each(g.o.hooks, func(h HookLate) { h.OnLate(name) })
	}
	for _, kind := range txn.dead {
		each(g.o.hooks, func(h HookDeadLetter) { h.OnDeadLetter(name, RoleGather, kind) })
	}
	for _, rw := range txn.rewrites {
		g.w.rewritten(rw[0], rw[1])
	}
}
