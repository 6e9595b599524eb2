package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scattergather/scattergather/processor/scatter"
	"github.com/scattergather/scattergather/processor/topology"
	"github.com/scattergather/scattergather/schemas"
)

// Scatter runs the scatter role of one flow: it reads requests and writes
// each request's manifest and tasks, with the consumed offsets, in one
// transaction.
type Scatter struct {
	topo *topology.Topology
	flow *topology.Flow
	o    *options
	log  *slog.Logger

	mu     sync.Mutex
	poison map[recordID]string // requests whose output the broker refuses
	w      *writer             // set by Run
	*readiness
}

type recordID struct {
	partition int32
	offset    int64
}

// NewScatter returns the scatter of flow.
func NewScatter(t *topology.Topology, flow *topology.Flow, opts ...ScatterOpt) *Scatter {
	o := scatterOptions(opts)
	s := &Scatter{topo: t, flow: flow, o: o, poison: map[recordID]string{}, log: o.logger.With("role", RoleScatter, "flow", flow.Name)}
	s.readiness = newReadiness(1, s.log)
	return s
}

// Run scatters until ctx ends or a fatal error. It refuses to start when
// the flow's topics are missing or wrong.
func (s *Scatter) Run(ctx context.Context) error {
	if err := preflight(ctx, s.topo, s.o); err != nil {
		return err
	}
	f := s.flow
	group := s.topo.Group(f, RoleScatter)
	outputs := []string{f.Topics.Results, f.Topics.DeadLetter}
	for _, tg := range f.Targets {
		outputs = append(outputs, tg.Topic)
	}
	sess, hang, err := newTransactSession(ctx, transactSession{topo: s.topo, o: s.o, role: RoleScatter, group: group, topic: f.Topics.Requests, outputs: outputs,
		extra: []kgo.Opt{kgo.OnPartitionsAssigned(func(context.Context, *kgo.Client, map[string][]int32) { s.assigned() })}})
	if err != nil {
		return err
	}
	defer sess.Close()
	adm := kadm.NewClient(sess.Client())
	if err := checkTopics(ctx, adm, f); err != nil {
		return err
	}
	n, err := partitionCount(ctx, adm, f.Topics.Results)
	if err != nil {
		return err
	}
	planner, err := scatter.NewPlanner(f, n, s.o.codec)
	if err != nil {
		return err
	}
	s.w = newWriter(ctx, sess.Client(), f, RoleScatter, s.o.hooks, s.log)
	consumerLag := lag{}
	targetOf := map[string]string{}
	for _, t := range f.Targets {
		targetOf[t.Topic] = t.Name
	}
	s.log.Info("scatter started", "group", group, "instance", s.o.instance, "results_partitions", n)

	for {
		fetches := sess.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		s.polled(fetches)
		if err := fetchErrors(fetches, s.log); err != nil {
			return err
		}
		behind := consumerLag.observe(fetches, nil)
		each(s.o.hooks, func(h HookLag) { h.OnLag(f.Name, RoleScatter, behind) })
		s.observe(s.Status())
		if fetches.Empty() {
			continue
		}
		s.transaction(true)
		clock := beginTxnClock()
		if err := sess.Begin(); err != nil {
			return errorf("scatter begin: %w", err)
		}
		hang.own.begin()
		tctx, cancelTxn := transactionContext(ctx, s.topo)
		var (
			mu        sync.Mutex
			firstErr  error
			failed    = map[recordID]error{}
			failures  writeFailures
			scattered [][]string  // targets of each request scattered
			dead      []string    // kinds of the dead letters
			rewrites  [][2]string // topic and how of each record rewritten
			// unavailable: a request could not be decoded for want of the
			// schema registry; the poll's transaction aborts.
			unavailable error
		)
		take := func(fetches kgo.Fetches) {
			now := s.o.now().UnixMilli()
			fetches.EachRecord(func(r *kgo.Record) {
				id := recordID{r.Partition, r.Offset}
				produce := func(out *kgo.Record) {
					sess.Produce(tctx, out, func(out *kgo.Record, err error) {
						if err == nil {
							return
						}
						failures.produced(out, err)
						mu.Lock()
						defer mu.Unlock()
						if firstErr == nil {
							firstErr = err
						}
						failed[id] = err
					})
				}
				if unavailable != nil {
					return // the transaction aborts: read again once the registry answers
				}
				planned := s.scatter(planner, r, now)
				if len(planned) == 0 {
					unavailable = fmt.Errorf("scatter: request at %s[%d]@%d: %w", r.Topic, r.Partition, r.Offset, schemas.ErrRegistryUnavailable)
					return
				}
				outs, rw := s.fit(planned, r)
				rewrites = append(rewrites, rw...)
				if len(outs) == 1 && outs[0].Topic == f.Topics.DeadLetter {
					dead = append(dead, Header(outs[0], schemas.HeaderReasonKind))
				} else {
					var targets []string
					for _, o := range outs[1:] {
						targets = append(targets, targetOf[o.Topic])
					}
					scattered = append(scattered, targets)
				}
				for _, out := range outs {
					produce(out)
				}
			})
		}
		take(fetches)
		from, records := readFrom{}.add(fetches), fetches.NumRecords()
		commit := kgo.TryCommit
		clock.end()
		_ = sess.Client().Flush(tctx)
		// The requests that reached the brokers while the last transaction
		// ended are fetched by now: their fetch was sent when this poll
		// took the one before. They ride this transaction instead of
		// waiting for its end and then for the next one. (A transaction
		// that fails aborts without them; they stay buffered.)
		mu.Lock()
		failing := firstErr != nil || unavailable != nil
		mu.Unlock()
		var pollErr error
		if !failing {
			if more := pollBuffered(sess); len(more) > 0 {
				s.polled(more)
				pollErr = fetchErrors(more, s.log)
				if n := more.NumRecords(); n > 0 {
					take(more)
					from.add(more)
					records += n
					_ = sess.Client().Flush(tctx)
				}
			}
		}
		mu.Lock()
		if unavailable != nil {
			commit = kgo.TryAbort
		}
		if firstErr != nil {
			commit = kgo.TryAbort
			s.markPoison(failed)
		}
		mu.Unlock()
		committed, err := sess.End(tctx, commit)
		if committed && err == nil && hang.own.troubled() {
			err = checkCommitted(tctx, hang)
			committed = err == nil
		}
		hang.own.end()
		cancelTxn()
		s.transaction(false)
		if err != nil {
			return errorf("scatter end transaction: %w", err)
		}
		clock.tell(s.o.hooks, f.Name, RoleScatter, records)
		if pollErr != nil {
			return pollErr
		}
		if unavailable != nil {
			// The role restarts after a backoff and reads the requests again.
			return unavailable
		}
		each(s.o.hooks, func(h HookTransactionEnd) { h.OnTransactionEnd(f.Name, RoleScatter, committed) })
		if !committed {
			cause, err := s.w.aborted(ctx, from.key(), failures.failed())
			if err != nil {
				return err
			}
			if cause != nil {
				s.setTrouble(fmt.Sprintf("writing to %s refused: %v", cause.rec.Topic, cause.err))
			}
			s.log.Info("transaction aborted; the requests are read again", "cause", firstErr)
			continue
		}
		s.w.committed()
		s.clearTrouble()
		for _, rw := range rewrites {
			s.w.rewritten(rw[0], rw[1])
		}
		for _, targets := range scattered {
			each(s.o.hooks, func(h HookRequestScattered) { h.OnRequestScattered(f.Name, targets) })
		}
		for _, kind := range dead {
			each(s.o.hooks, func(h HookDeadLetter) { h.OnDeadLetter(f.Name, RoleScatter, kind) })
		}
	}
}

// Status reports the scatter ready once it has partitions, unless it
// cannot write what it read.
func (s *Scatter) Status() Status {
	st := Status{Role: RoleScatter, Flow: s.flow.Name}
	if d := s.troubled(); d != "" {
		st.Detail = d
		return st
	}
	select {
	case <-s.Ready():
		st.Ready = true
	default:
		st.Detail = "waiting for partitions of " + s.flow.Topics.Requests
	}
	return st
}

// scatter returns the records one request becomes: its manifest and tasks,
// or its dead letter; none while the schema registry it needs to decode the
// request is unavailable.
func (s *Scatter) scatter(planner *scatter.Planner, r *kgo.Record, nowMs int64) []*kgo.Record {
	f := s.flow
	s.mu.Lock()
	reason, poisoned := s.poison[recordID{r.Partition, r.Offset}]
	s.mu.Unlock()
	if poisoned {
		return []*kgo.Record{deadLetter(f, schemas.StageScatter, r, schemas.KindBrokerRefused, reason)}
	}
	req, err := planner.Decode(r.Value)
	if errors.Is(err, schemas.ErrRegistryUnavailable) {
		s.log.Warn("schema registry unavailable: the request waits", "partition", r.Partition, "offset", r.Offset, "err", err)
		return nil
	}
	var plan *scatter.Plan
	if err == nil {
		plan, err = planner.Plan(req, r.Partition, r.Offset, nowMs)
	}
	if err != nil {
		var rej *scatter.RejectError
		if errors.As(err, &rej) {
			s.log.Warn("request dead-lettered", "partition", r.Partition, "offset", r.Offset, "reason", rej.Reason)
			return []*kgo.Record{deadLetter(f, schemas.StageScatter, r, rej.Kind, rej.Reason)}
		}
		s.log.Error("scatter failed", "err", err)
		return []*kgo.Record{deadLetter(f, schemas.StageScatter, r, schemas.KindInternal, err.Error())}
	}
	out := make([]*kgo.Record, 0, 1+len(plan.Tasks))
	key := []byte(plan.Manifest.RequestID)
	mb, err := s.o.codec.Encode(plan.Manifest)
	if err != nil {
		return []*kgo.Record{deadLetter(f, schemas.StageScatter, r, schemas.KindEncode, fmt.Sprintf("encode manifest: %v", err))}
	}
	out = append(out, toPartition(&kgo.Record{Topic: f.Topics.Results, Key: key, Value: mb}, plan.ResultsPartition))
	for _, t := range plan.Tasks {
		tb, err := s.o.codec.Encode(t.Task)
		if err != nil {
			return []*kgo.Record{deadLetter(f, schemas.StageScatter, r, schemas.KindEncode, fmt.Sprintf("encode task: %v", err))}
		}
		out = append(out, &kgo.Record{Topic: t.Topic, Key: key, Value: tb})
	}
	s.log.Debug("request scattered", "request_id", plan.Manifest.RequestID, "tasks", len(plan.Tasks), "results_partition", plan.ResultsPartition)
	return out
}

// fit returns the records of request r as they fit their topics: a request
// whose manifest or a task is too large for its topic is dead-lettered
// instead (without an attempt that would abort), and a dead letter too
// large for its topic is cut (see writer.fitSetAside). It also returns
// the topic and how of each record rewritten.
func (s *Scatter) fit(outs []*kgo.Record, r *kgo.Record) ([]*kgo.Record, [][2]string) {
	f := s.flow
	var rewrites [][2]string
	if !(len(outs) == 1 && outs[0].Topic == f.Topics.DeadLetter) {
		for _, out := range outs {
			if s.w.fits(out) {
				continue
			}
			reason := fmt.Sprintf("the request's records do not fit topic %s: %d bytes, it accepts %d", out.Topic, recordBytes(out), s.w.limit(out.Topic))
			s.log.Warn("request dead-lettered", "partition", r.Partition, "offset", r.Offset, "reason", reason)
			rewrites = append(rewrites, [2]string{out.Topic, RewriteDeadLetter})
			outs = []*kgo.Record{deadLetter(f, schemas.StageScatter, r, schemas.KindBrokerRefused, reason)}
			break
		}
	}
	if len(outs) == 1 && outs[0].Topic == f.Topics.DeadLetter {
		if cut, ok := s.w.fitSetAside(outs[0]); ok {
			rewrites = append(rewrites, [2]string{cut.Topic, RewriteTruncated})
			outs = []*kgo.Record{cut}
		}
	}
	return outs, rewrites
}

// markPoison remembers the requests whose records the broker refused for
// good (too large, or another refusal of the record itself), so that the
// next attempt dead-letters them instead of aborting forever. A dead
// letter that is refused in turn stays poisoned; the writer's bound on
// aborts in a row ends that loop (see writer.aborted).
func (s *Scatter) markPoison(failed map[recordID]error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, err := range failed {
		if c := classifyWrite(err); c == refusedSize || c == refusedRecord {
			s.poison[id] = fmt.Sprintf("the broker refuses the request's manifest or tasks: %v", err)
			s.log.Warn("request will be dead-lettered", "partition", id.partition, "offset", id.offset, "err", err)
		}
	}
}
