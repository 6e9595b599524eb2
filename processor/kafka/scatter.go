package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
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
	sess, err := newTransactSession(ctx, transactSession{topo: s.topo, o: s.o, role: RoleScatter, group: group, topic: f.Topics.Requests,
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
		if err := fetchErrors(fetches, s.log); err != nil {
			return err
		}
		behind := consumerLag.observe(fetches, nil)
		each(s.o.hooks, func(h HookLag) { h.OnLag(f.Name, RoleScatter, behind) })
		s.observe(s.Status())
		if fetches.Empty() {
			continue
		}
		if err := sess.Begin(); err != nil {
			return errorf("scatter begin: %w", err)
		}
		tctx, cancelTxn := transactionContext(ctx, s.topo)
		var (
			mu        sync.Mutex
			firstErr  error
			failed    = map[recordID]error{}
			scattered [][]string // targets of each request scattered
			dead      []string   // kinds of the dead letters
		)
		now := s.o.now().UnixMilli()
		fetches.EachRecord(func(r *kgo.Record) {
			id := recordID{r.Partition, r.Offset}
			produce := func(out *kgo.Record) {
				sess.Produce(tctx, out, func(_ *kgo.Record, err error) {
					if err == nil {
						return
					}
					mu.Lock()
					defer mu.Unlock()
					if firstErr == nil {
						firstErr = err
					}
					failed[id] = err
				})
			}
			outs := s.scatter(planner, r, now)
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
		commit := kgo.TryCommit
		_ = sess.Client().Flush(tctx)
		mu.Lock()
		if firstErr != nil {
			commit = kgo.TryAbort
			s.markPoison(failed)
		}
		mu.Unlock()
		committed, err := sess.End(tctx, commit)
		cancelTxn()
		if err != nil {
			return errorf("scatter end transaction: %w", err)
		}
		each(s.o.hooks, func(h HookTransactionEnd) { h.OnTransactionEnd(f.Name, RoleScatter, committed) })
		if !committed {
			s.log.Info("transaction aborted; the requests are read again", "cause", firstErr)
			continue
		}
		for _, targets := range scattered {
			each(s.o.hooks, func(h HookRequestScattered) { h.OnRequestScattered(f.Name, targets) })
		}
		for _, kind := range dead {
			each(s.o.hooks, func(h HookDeadLetter) { h.OnDeadLetter(f.Name, RoleScatter, kind) })
		}
	}
}

// Status reports the scatter ready once it has partitions.
func (s *Scatter) Status() Status {
	st := Status{Role: RoleScatter, Flow: s.flow.Name}
	select {
	case <-s.Ready():
		st.Ready = true
	default:
		st.Detail = "waiting for partitions of " + s.flow.Topics.Requests
	}
	return st
}

// scatter returns the records one request becomes: its manifest and tasks,
// or its dead letter.
func (s *Scatter) scatter(planner *scatter.Planner, r *kgo.Record, nowMs int64) []*kgo.Record {
	f := s.flow
	s.mu.Lock()
	reason, poisoned := s.poison[recordID{r.Partition, r.Offset}]
	s.mu.Unlock()
	if poisoned {
		return []*kgo.Record{deadLetter(f, schemas.StageScatter, r, schemas.KindBrokerRefused, reason)}
	}
	req, err := planner.Decode(r.Value)
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

// markPoison remembers the requests whose records the broker refused for
// good (too large), so that the next attempt dead-letters them instead of
// aborting forever.
func (s *Scatter) markPoison(failed map[recordID]error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, err := range failed {
		if errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge) || errors.Is(err, kerr.InvalidRecord) {
			s.poison[id] = fmt.Sprintf("the broker refuses the request's manifest or tasks: %v", err)
			s.log.Warn("request will be dead-lettered", "partition", id.partition, "offset", id.offset, "err", err)
		}
	}
}
