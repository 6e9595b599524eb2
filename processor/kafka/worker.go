package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scattergather/scattergather/processor/topology"
	"github.com/scattergather/scattergather/processor/worker"
	"github.com/scattergather/scattergather/schemas"
)

// Worker runs the worker role of one flow: for each target it serves, it
// reads tasks read_committed, keeps up to the target's concurrency limit
// of them running (adaptive between its min_in_flight and max_in_flight,
// or fixed at max_in_flight; and at most the flow's worker.max_in_flight
// over all targets, each counted until its result is acknowledged), writes
// each result to the partition its task names as soon as it is ready, and
// commits offsets up to the oldest unfinished task.
type Worker struct {
	topo     *topology.Topology
	flow     *topology.Flow
	o        *workerOptions
	log      *slog.Logger
	handlers map[string]worker.Handler
	decoders map[string]*worker.Decoder // by target; read-only once made
	global   chan struct{}
	wr       *writer // set by Run
	// decisions cancels the tasks of decided requests; nil with
	// worker.cancel: never.
	decisions *decisions
	// limiters are the rate limiters of the targets with a rate_limit.
	limiters map[string]*worker.RateLimiter
	// concurrency bounds the tasks in flight of each target served.
	concurrency map[string]*worker.ConcurrencyLimiter
	*readiness
}

// NewWorker returns the worker of flow. It fails when a target it should
// serve has no handler.
func NewWorker(t *topology.Topology, flow *topology.Flow, opts ...WorkerOpt) (*Worker, error) {
	o := buildWorkerOptions(opts)
	w := &Worker{topo: t, flow: flow, o: o, handlers: map[string]worker.Handler{}, decoders: map[string]*worker.Decoder{},
		log: o.logger.With("role", RoleWorker, "flow", flow.Name), global: make(chan struct{}, flow.Worker.MaxInFlight)}
	names := o.targets
	if len(names) == 0 {
		for _, tg := range flow.Targets {
			if tg.HTTP != nil || o.handlers[tg.Name] != nil {
				names = append(names, tg.Name)
			}
		}
	}
	w.readiness = newReadiness(len(names), w.log)
	if flow.Worker.Cancel == topology.CancelDecided {
		w.decisions = newDecisions(o.now, flow.Worker.DeadlineGrace.D)
	}
	if len(names) == 0 {
		return nil, errorf("flow %s: no target to serve: give targets an http section or a Go handler", flow.Name)
	}
	w.limiters = map[string]*worker.RateLimiter{}
	w.concurrency = map[string]*worker.ConcurrencyLimiter{}
	for _, name := range names {
		tg := flow.Target(name)
		if tg == nil {
			return nil, errorf("flow %s has no target %q", flow.Name, name)
		}
		w.decoders[name] = worker.NewDecoder(flow, name, o.codec)
		w.concurrency[name] = w.newConcurrencyLimiter(tg)
		var limit []worker.Middleware
		if rl := tg.RateLimit; rl != nil {
			lim := worker.NewRateLimiter(rl.PerSecond, rl.Burst, w.onRateLimit(tg))
			w.limiters[name] = lim
			limit = append(limit, lim.Middleware())
		}
		var hedge *worker.Hedge
		if tg.Hedge != nil {
			hedge = worker.NewHedge(*tg.Hedge, w.onHedge(tg))
		}
		if h := o.handlers[name]; h != nil {
			// As for the built-in HTTP handler, a backup call passes the
			// rate limit.
			var mw []worker.Middleware
			if hedge != nil {
				mw = append(mw, hedge.Middleware())
			}
			w.handlers[name] = worker.Chain(h, append(mw, limit...)...)
			continue
		}
		if tg.HTTP == nil {
			return nil, errorf("flow %s: target %s has no http section and no Go handler", flow.Name, name)
		}
		w.handlers[name] = worker.HTTPHandler(tg.HTTP, nil, w.onBreaker(tg), hedge, limit...)
	}
	return w, nil
}

// newConcurrencyLimiter returns the limiter of the tasks of tg in flight,
// which tells the hooks each change of its limit.
func (w *Worker) newConcurrencyLimiter(tg *topology.Target) *worker.ConcurrencyLimiter {
	if tg.Concurrency == topology.ConcurrencyFixed {
		return worker.NewFixedLimiter(tg.MaxInFlight)
	}
	return worker.NewAdaptiveLimiter(tg.MinInFlight, tg.MaxInFlight, func(limit int) {
		each(w.o.hooks, func(h HookConcurrencyLimit) { h.OnConcurrencyLimit(w.flow.Name, tg.Name, limit) })
	})
}

// onBreaker logs the openings and closings of a target's circuit breaker
// and tells the hooks of every event.
func (w *Worker) onBreaker(tg *topology.Target) func(worker.BreakerEvent) {
	log := w.log.With("target", tg.Name)
	return func(ev worker.BreakerEvent) {
		switch ev {
		case worker.BreakerOpened:
			log.Warn("circuit opened: the provider is not called until the cooldown ends",
				"failures", tg.HTTP.Breaker.Threshold(), "cooldown", tg.HTTP.Breaker.Cooldown.D)
		case worker.BreakerClosed:
			log.Info("circuit closed: the provider answers again")
		}
		each(w.o.hooks, func(h HookCircuitBreaker) { h.OnCircuitBreaker(w.flow.Name, tg.Name, ev.String()) })
	}
}

// onHedge tells the hooks of every event of a target's hedge.
func (w *Worker) onHedge(tg *topology.Target) func(worker.HedgeEvent) {
	return func(ev worker.HedgeEvent) {
		each(w.o.hooks, func(h HookHedge) { h.OnHedge(w.flow.Name, tg.Name, ev.String()) })
	}
}

// Targets returns the names of the targets the worker serves, sorted.
func (w *Worker) Targets() []string {
	var out []string
	for n := range w.handlers {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Run works until ctx ends or a fatal error; on the way out it lets
// running tasks finish (bounded by their deadlines) and commits.
func (w *Worker) Run(ctx context.Context) error {
	prod, err := kgo.NewClient(append(baseOpts(w.topo, &w.o.options, "worker"),
		kgo.ProducerBatchCompression(kgo.NoCompression()))...)
	if err != nil {
		return errorf("worker producer: %w", err)
	}
	defer prod.Close()
	if err := preflight(ctx, w.topo, &w.o.options); err != nil {
		return err
	}
	if err := checkTopics(ctx, kadm.NewClient(prod), w.flow); err != nil {
		return err
	}
	w.wr = newWriter(ctx, prod, w.flow, RoleWorker, w.o.hooks, w.log)
	var wg sync.WaitGroup
	errs := make(chan error, len(w.handlers))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if w.decisions != nil {
		wg.Go(func() { w.decisions.follow(ctx, w.topo, w.flow, &w.o.options, w.log) })
	}
	for _, name := range w.Targets() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.runTarget(ctx, prod, w.flow.Target(name)); err != nil {
				errs <- err
				cancel()
			}
		}()
	}
	wg.Wait()
	close(errs)
	return errors.Join(slices.Collect(func(yield func(error) bool) {
		for e := range errs {
			if !yield(e) {
				return
			}
		}
	})...)
}

func (w *Worker) runTarget(ctx context.Context, prod *kgo.Client, tg *topology.Target) error {
	log := w.log.With("target", tg.Name)
	h := w.handlers[tg.Name]
	tracker := worker.NewTracker()
	local := w.concurrency[tg.Name]
	group := w.topo.Group(w.flow, "worker."+tg.Name)

	share := newPartitionShare(w.limiters[tg.Name])
	var cl *kgo.Client
	// mark marks one partition's offset through one map, kept: the client
	// copies what it is given, and a task finishes with a mark, so a map
	// made for each would cost a task two allocations.
	var (
		markMu sync.Mutex
		marks  = map[string]map[int32]kgo.EpochOffset{}
	)
	mark := func(tp worker.TopicPartition, off int64) {
		markMu.Lock()
		defer markMu.Unlock()
		ps := marks[tp.Topic]
		if ps == nil {
			ps = map[int32]kgo.EpochOffset{}
			marks[tp.Topic] = ps
		}
		ps[tp.Partition] = kgo.EpochOffset{Epoch: -1, Offset: off}
		cl.MarkCommitOffsets(marks)
		delete(ps, tp.Partition)
	}
	onLoss := func(ctx context.Context, c *kgo.Client, lost map[string][]int32) {
		// Commit what has finished; the rest is re-run by the next owner.
		for tp, off := range tracker.Committable() {
			if slices.Contains(lost[tp.Topic], tp.Partition) {
				mark(tp, off)
			}
		}
		if err := c.CommitMarkedOffsets(ctx); err != nil {
			log.Warn("commit on revoke failed", "err", err)
		}
		for topic, ps := range lost {
			for _, p := range ps {
				tracker.Forget(worker.TopicPartition{Topic: topic, Partition: p})
			}
		}
		share.lose(lost[tg.Topic])
	}
	var err error
	cl, err = kgo.NewClient(append(baseOpts(w.topo, &w.o.options, "worker."+tg.Name),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(tg.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.AutoCommitMarks(),
		kgo.AutoCommitInterval(time.Second),
		kgo.InstanceID(w.o.instance),
		kgo.SessionTimeout(w.topo.Kafka.SessionTimeout.D),
		kgo.OnPartitionsRevoked(onLoss),
		kgo.OnPartitionsLost(onLoss),
		kgo.OnPartitionsAssigned(func(ctx context.Context, c *kgo.Client, got map[string][]int32) {
			share.gain(ctx, c, tg.Topic, got[tg.Topic])
			w.assigned()
		}),
	)...)
	if err != nil {
		return errorf("worker client: %w", err)
	}
	defer cl.Close()
	log.Info("worker started", "group", group, "topic", tg.Topic, "concurrency", tg.Concurrency,
		"min_in_flight", tg.MinInFlight, "max_in_flight", tg.MaxInFlight, "limit", local.Limit())
	each(w.o.hooks, func(h HookConcurrencyLimit) { h.OnConcurrencyLimit(w.flow.Name, tg.Name, local.Limit()) })

	// A result that cannot be written in any form stops the target: its
	// task can neither finish nor be skipped.
	ctx, stopTarget := context.WithCancelCause(ctx)
	defer stopTarget(nil)
	fail := func(err error) {
		log.Error("target stops", "err", err)
		stopTarget(err)
	}
	stopped := func() error {
		if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		return nil
	}
	// Shutting down does not cut a task short: it runs to its deadline, so
	// the result is an answer, not an artefact.
	taskCtx := context.WithoutCancel(ctx)
	consumerLag := lag{}
	var running sync.WaitGroup
	defer func() {
		running.Wait()
		for tp, off := range tracker.Committable() {
			mark(tp, off)
		}
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := cl.CommitMarkedOffsets(cctx); err != nil {
			log.Warn("final commit failed", "err", err)
		}
	}()
	for {
		fetches := cl.PollRecords(ctx, tg.MaxInFlight)
		if ctx.Err() != nil {
			return stopped()
		}
		w.polled(fetches)
		if err := fetchErrors(fetches, log); err != nil {
			return err
		}
		behind := consumerLag.observe(fetches, nil)
		each(w.o.hooks, func(h HookLag) { h.OnLag(w.flow.Name, RoleWorker+"/"+tg.Name, behind) })
		w.observe(w.Status())
		var stop bool
		fetches.EachRecord(func(r *kgo.Record) {
			if stop {
				return
			}
			// Wait for room: per target first, so one hanging target
			// holds only its own slots of the global bound.
			if local.Acquire(ctx) != nil {
				stop = true
				return
			}
			slot := worker.NewSlot(local)
			select {
			case w.global <- struct{}{}:
			case <-ctx.Done():
				slot.Release(worker.Sample{})
				stop = true
				return
			}
			tp := worker.TopicPartition{Topic: r.Topic, Partition: r.Partition}
			tracker.Start(tp, r.Offset)
			running.Add(1)
			go func() {
				growStack()
				each(w.o.hooks, func(h HookTaskInFlight) { h.OnTaskInFlight(w.flow.Name, tg.Name, 1) })
				tctx := worker.WithSlot(taskCtx, slot)
				out, written, sample := w.handle(tctx, log, h, tg, r)
				for backoff := time.Second; out == nil; backoff = min(2*backoff, 30*time.Second) {
					// The schema registry the task needs is unavailable: the
					// task waits for it (left unfinished if the worker stops).
					select {
					case <-ctx.Done():
						each(w.o.hooks, func(h HookTaskInFlight) { h.OnTaskInFlight(w.flow.Name, tg.Name, -1) })
						<-w.global
						slot.Release(worker.Sample{})
						running.Done()
						return
					case <-time.After(backoff):
					}
					out, written, sample = w.handle(tctx, log, h, tg, r)
				}
				each(w.o.hooks, func(h HookTaskInFlight) { h.OnTaskInFlight(w.flow.Name, tg.Name, -1) })
				// The target's slot bounds calls to its provider, so it is
				// free once the handler returns, and the call's latency moves
				// the target's limit. The global slot is held until the result
				// is acknowledged: it bounds what the worker holds, so that a
				// broker slower than the providers stops the polling instead
				// of a goroutine, task and result piling up for every task of
				// the backlog. The tracker keeps the task uncommitted until
				// then.
				slot.Release(sample)
				w.deliver(prod, log, tg, r, out, written, func(done bool, err error) {
					defer running.Done()
					<-w.global
					if err != nil {
						fail(err)
						return
					}
					if !done {
						// Left unfinished: the task runs again after a restart.
						return
					}
					if off, ok := tracker.Finish(tp, r.Offset); ok {
						mark(tp, off)
					}
				})
			}()
		})
		if stop {
			return stopped()
		}
	}
}

// handle turns one task record into the record to write, its result or its
// dead letter, the metrics to record once it is written, and the sample of
// the call for the target's concurrency limiter.
func (w *Worker) handle(ctx context.Context, log *slog.Logger, h worker.Handler, tg *topology.Target, r *kgo.Record) (*kgo.Record, func(), worker.Sample) {
	rec, status, took, refused, cancelledWhen, sample := w.execute(ctx, log, h, tg, r)
	if rec == nil {
		return nil, nil, sample // the schema registry is unavailable
	}
	return rec, func() {
		if rec.Topic == w.flow.Topics.DeadLetter {
			each(w.o.hooks, func(h HookDeadLetter) {
				h.OnDeadLetter(w.flow.Name, schemas.StageWorker, Header(rec, schemas.HeaderReasonKind))
			})
			return
		}
		if refused != "" {
			each(w.o.hooks, func(h HookTaskRefused) { h.OnTaskRefused(w.flow.Name, tg.Name, refused) })
		}
		if cancelledWhen != "" {
			each(w.o.hooks, func(h HookTaskCancelled) { h.OnTaskCancelled(w.flow.Name, tg.Name, cancelledWhen) })
		}
		each(w.o.hooks, func(h HookResultWritten) { h.OnResultWritten(w.flow.Name, tg.Name, status, took) })
	}, sample
}

// execute returns the record to write for task record r, the result's
// status and duration, the kind of reason when the task was answered
// ERROR without running, when it was cancelled because its request was
// decided (see cancelled), and the sample of the call (not measured when
// the provider was not called).
func (w *Worker) execute(ctx context.Context, log *slog.Logger, h worker.Handler, tg *topology.Target, r *kgo.Record) (*kgo.Record, string, time.Duration, string, string, worker.Sample) {
	task, err := w.decoders[tg.Name].Decode(r.Value)
	if errors.Is(err, schemas.ErrRegistryUnavailable) {
		log.Warn("schema registry unavailable: the task waits", "offset", r.Offset, "err", err)
		return nil, "", 0, "", "", worker.Sample{}
	}
	if err != nil {
		var rej *worker.RejectError
		if !errors.As(err, &rej) {
			rej = &worker.RejectError{Kind: schemas.KindInternal, Reason: err.Error()}
		}
		// A task always gets an answer when it can have one: the gather
		// then reports its target failed, not missing.
		if res := rej.Answer(w.o.instance); res != nil {
			b, err := w.o.codec.Encode(res)
			if err != nil {
				return deadLetter(w.flow, schemas.StageWorker, r, schemas.KindEncode, fmt.Sprintf("encode result: %v", err)), "", 0, "", "", worker.Sample{}
			}
			log.Warn("task answered ERROR without running", "offset", r.Offset, "request_id", res.RequestID, "kind", rej.Kind, "reason", rej.Reason)
			return toPartition(&kgo.Record{Topic: w.flow.Topics.Results, Key: []byte(res.RequestID), Value: b}, rej.Task.ResultsPartition),
				string(res.Status), 0, rej.Kind, "", worker.Sample{}
		}
		log.Warn("task dead-lettered", "offset", r.Offset, "reason", rej.Reason)
		return deadLetter(w.flow, schemas.StageWorker, r, rej.Kind, rej.Reason), "", 0, "", "", worker.Sample{}
	}
	if w.decisions != nil {
		var done func()
		ctx, done = w.decisions.track(ctx, task.RequestID)
		defer done()
	}
	res, sample := worker.ExecuteMeasured(ctx, h, task, w.o.instance, w.o.now)
	if limit := int(w.flow.Limits.MaxPayloadBytes); len(res.Payload) > limit {
		res.Status, res.Payload = schemas.StatusError, []byte{}
		res.Error = fmt.Sprintf("answer of the provider exceeds limits.max_payload_bytes %d", limit)
	}
	if res.Status == schemas.StatusError {
		log.Debug("task failed", "request_id", task.RequestID, "task_id", task.TaskID, "err", res.Error)
	}
	b, err := w.o.codec.Encode(res)
	if err != nil {
		return deadLetter(w.flow, schemas.StageWorker, r, schemas.KindEncode, fmt.Sprintf("encode result: %v", err)), "", 0, "", "", sample
	}
	return toPartition(&kgo.Record{Topic: w.flow.Topics.Results, Key: []byte(task.RequestID), Value: b}, task.ResultsPartition),
		string(res.Status), time.Duration(res.DurationMs) * time.Millisecond, "", cancelled(res), sample
}

// Status reports the worker ready once every target it serves has
// partitions, unless it stopped.
func (w *Worker) Status() Status {
	st := Status{Role: RoleWorker, Flow: w.flow.Name}
	if d := w.troubled(); d != "" {
		st.Detail = d
		return st
	}
	select {
	case <-w.Ready():
		st.Ready = true
	default:
		st.Detail = "waiting for partitions of the task topics"
	}
	return st
}

// deliver writes out, the result or dead letter of task r, and calls
// finished once, with whether the task is finished and the error to stop
// on. A record that cannot be written as it is (too large for the producer
// or the results topic, or refused by the broker) is written in a form
// that fits: a result becomes an ERROR result with an empty payload and
// the reason, and if even that cannot be written, the task is
// dead-lettered (cut to fit), so that its offset can commit. A topic that
// cannot be written at all, or a dead letter refused too, is a
// *WriteError. A failure that is no refusal (the producer closing) leaves
// the task unfinished, to run again.
//
// The record written as it is, the usual case, is not waited for: the
// task's goroutine ends, and finished runs in the producer's callback. A
// refusal is handled on a goroutine of its own, since the other forms are
// written and waited for there, and a callback must not wait on the
// producer.
func (w *Worker) deliver(prod *kgo.Client, log *slog.Logger, tg *topology.Target, r *kgo.Record, out *kgo.Record, written func(), finished func(done bool, err error)) {
	cut := false
	if out.Topic == w.flow.Topics.DeadLetter {
		var c *kgo.Record
		if c, cut = w.wr.fitSetAside(out); cut {
			log.Warn("dead letter cut to fit its topic", "offset", r.Offset, "bytes", len(out.Value))
			out = c
		}
	}
	// asIs tells what writing out as it is means, once it is written.
	asIs := func() {
		if cut {
			w.wr.rewritten(out.Topic, RewriteTruncated)
		}
		written()
	}
	if !w.wr.fits(out) {
		err := fmt.Errorf("%w: %d bytes, topic %s accepts %d", kerr.MessageTooLarge, recordBytes(out), out.Topic, w.wr.limit(out.Topic))
		finished(w.redeliver(prod, log, tg, r, out, asIs, err))
		return
	}
	prod.Produce(context.Background(), out, func(_ *kgo.Record, err error) {
		if err != nil {
			go func() { finished(w.redeliver(prod, log, tg, r, out, asIs, err)) }()
			return
		}
		asIs()
		finished(true, nil)
	})
}

// redeliver writes what task r's record out becomes once writing it
// failed with err (see deliver), and reports whether the task is finished;
// asIs is called if out is written as it is after all.
func (w *Worker) redeliver(prod *kgo.Client, log *slog.Logger, tg *topology.Target, r *kgo.Record, out *kgo.Record, asIs func(), err error) (bool, error) {
	ctx := context.Background()
	write := func(rec *kgo.Record) error { return prod.ProduceSync(ctx, rec).FirstErr() }
	// The broker refuses a record batch whole, so a record that fits its
	// topic may be refused for another in its batch. Such a record, refused
	// for its size though it fits, is written again as it is, up to
	// maxAborts times in all, before it counts as too large.
	again := func(rec *kgo.Record, err error) error {
		for try := 1; try < maxAborts && classifyWrite(err) == refusedSize && w.wr.fits(rec); try++ {
			err = write(rec)
		}
		return err
	}
	if classifyWrite(err) == refusedSize && w.wr.fits(out) {
		// It fit the limit read at the start: the topic's may have changed.
		w.wr.readLimits(ctx, out.Topic)
		if err = again(out, err); err == nil {
			asIs()
			return true, nil
		}
	}
	// refused reports what err means for rec: an error to stop on, or
	// whether another form may be written.
	refused := func(rec *kgo.Record, err error) (retry bool, stop error) {
		switch classifyWrite(err) {
		case notRefused:
			log.Error("result not written", "offset", r.Offset, "topic", rec.Topic, "err", err)
			return false, nil
		case refusedTopic:
			if !errors.Is(err, kerr.UnknownTopicOrPartition) || w.wr.confirmMissing(ctx, rec.Topic) {
				return false, w.wr.cannotWrite(rec.Topic, err)
			}
			log.Error("result not written", "offset", r.Offset, "topic", rec.Topic, "err", err)
			return false, nil
		}
		return true, nil
	}
	if retry, stop := refused(out, err); !retry {
		return false, stop
	}
	if out.Topic == w.flow.Topics.Results {
		var res schemas.Result
		if derr := w.o.codec.DecodeInto(out.Value, &res); derr == nil {
			reason := fmt.Sprintf("result refused by the broker: %s", errCode(err))
			if classifyWrite(err) == refusedSize {
				reason = fmt.Sprintf("answer too large to write: %d bytes", len(res.Payload))
			}
			res.Status, res.Payload, res.Error = schemas.StatusError, []byte{}, reason
			if b, eerr := w.o.codec.Encode(&res); eerr == nil {
				alt := *out
				alt.Value = b
				log.Warn("result replaced by an ERROR result", "request_id", res.RequestID, "task_id", res.TaskID, "reason", reason)
				if err = again(&alt, write(&alt)); err == nil {
					w.wr.rewritten(out.Topic, RewriteErrorResult)
					each(w.o.hooks, func(h HookResultWritten) {
						h.OnResultWritten(w.flow.Name, tg.Name, string(schemas.StatusError), time.Duration(res.DurationMs)*time.Millisecond)
					})
					return true, nil
				}
				if retry, stop := refused(&alt, err); !retry {
					return false, stop
				}
			}
		}
	}
	// The last form: the task's dead letter, cut to fit.
	reason := fmt.Sprintf("what the task became cannot be written to %s: %s", out.Topic, errCode(err))
	dl := deadLetter(w.flow, schemas.StageWorker, r, schemas.KindBrokerRefused, reason)
	dl, _ = w.wr.fitSetAside(dl)
	log.Warn("task dead-lettered", "offset", r.Offset, "reason", reason)
	if err := again(dl, write(dl)); err != nil {
		if retry, stop := refused(dl, err); !retry {
			return false, stop
		}
		return false, &WriteError{Flow: w.flow.Name, Topic: dl.Topic, Err: err,
			Fix: "the task's dead letter is refused too: check the topic's configuration (max.message.bytes, policies)"}
	}
	w.wr.rewritten(out.Topic, RewriteDeadLetter)
	each(w.o.hooks, func(h HookDeadLetter) { h.OnDeadLetter(w.flow.Name, schemas.StageWorker, schemas.KindBrokerRefused) })
	return true, nil
}

// growStack grows the calling goroutine's stack to 16 KiB while it has one
// frame. A task's goroutine starts with the minimum stack and outgrows it
// deep in decoding the task, where the runtime copies every frame above;
// growing it first, when the copy is one frame, costs a fraction of that.
//
//go:noinline
func growStack() {
	var pad [8 << 10]byte
	pad[0] = 1
	runtime.KeepAlive(&pad)
}
