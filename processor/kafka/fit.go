package kafka

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scattergather/scattergather/processor/topology"
	"github.com/scattergather/scattergather/schemas"
)

// A flow never stops on one record: a record that cannot be written as it
// is gets written in a form that fits, and a cause that cannot pass (a
// missing topic, a denied write) stops the role with one error. This file
// holds how the roles do it: the sizes records must fit, the record forms
// that fit, and what a refused write means.

// Ways a record is rewritten to fit, the how of HookRecordRewritten.
const (
	// RewriteTruncated: a dead letter or late record whose value (then
	// key) was cut so that it fits; headers sg-original-size and
	// sg-original-sha256 describe the original value.
	RewriteTruncated = "truncated"
	// RewriteFailedAggregate: an aggregate written as failed without its
	// result (then without its task lists and attributes).
	RewriteFailedAggregate = "failed_aggregate"
	// RewriteErrorResult: a worker's result replaced by an ERROR result
	// with an empty payload and the reason.
	RewriteErrorResult = "error_result"
	// RewriteDeadLetter: a request (scatter) or task (worker) dead-lettered
	// because what it becomes cannot be written.
	RewriteDeadLetter = "dead_letter"
)

// maxAborts is how many transactions in a row may abort for the same cause
// over the same records before the role stops with that cause.
const maxAborts = 5

// batchOverhead bounds what a record batch adds around its only record:
// the batch header and the produce request's length prefixes.
const batchOverhead = 80

// recordBytes returns an upper bound of the size of a record batch that
// holds r alone, what the producer's batch limit and a topic's
// max.message.bytes are compared to (varints are counted at their widest).
func recordBytes(r *kgo.Record) int {
	n := batchOverhead + 5 + 1 + 10 + 5 + 5 + len(r.Key) + 5 + len(r.Value) + 5
	for _, h := range r.Headers {
		n += 5 + len(h.Key) + 5 + len(h.Value)
	}
	return n
}

// writer is what a role needs to write its records in a form that fits:
// the size each topic accepts, and what a refused write means. Safe for
// concurrent use.
type writer struct {
	flow  *topology.Flow
	role  string
	cl    *kgo.Client
	adm   *kadm.Client
	log   *slog.Logger
	hooks hooks

	mu     sync.Mutex
	limits map[string]int // by topic: the largest recordBytes it accepts
	guard  struct {
		key string
		n   int
	}
}

// newWriter returns the writer of a role producing with cl, having read the
// max.message.bytes of the flow's topics. A topic whose config cannot be
// read is bounded by the producer's batch limit alone (and the broker's
// refusal, see refused).
func newWriter(ctx context.Context, cl *kgo.Client, f *topology.Flow, role string, hs hooks, log *slog.Logger) *writer {
	w := &writer{flow: f, role: role, cl: cl, adm: kadm.NewClient(cl), log: log, hooks: hs, limits: map[string]int{}}
	w.readLimits(ctx, f.AllTopics()...)
	return w
}

// batchLimit returns the producer's batch limit for topic
// (kgo.ProducerBatchMaxBytes; franz-go's default is 1,000,012 bytes).
func (w *writer) batchLimit(topic string) int {
	if fn, ok := w.cl.OptValue(kgo.ProducerBatchMaxBytesFn).(func(string) int32); ok && fn != nil {
		return int(fn(topic))
	}
	return 1000012
}

// readLimits (re-)reads the max.message.bytes of topics. A topic whose
// config cannot be read keeps the limit read before; one never read is
// bounded by the producer's batch limit.
func (w *writer) readLimits(ctx context.Context, topics ...string) {
	rcs, err := w.adm.DescribeTopicConfigs(ctx, topics...)
	if err != nil {
		w.log.Warn("cannot read the topics' max.message.bytes: records are bounded by the limits read before, or the producer's batch limit", "err", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, topic := range topics {
		limit := w.batchLimit(topic)
		rc, err := rcs.On(topic, nil)
		if err != nil || rc.Err != nil {
			if _, known := w.limits[topic]; !known {
				w.limits[topic] = limit
			}
			continue
		}
		for _, c := range rc.Configs {
			if n, err := strconv.Atoi(c.MaybeValue()); c.Key == "max.message.bytes" && err == nil && n > 0 {
				limit = min(limit, n)
			}
		}
		w.limits[topic] = limit
	}
}

// limit returns the largest recordBytes topic accepts.
func (w *writer) limit(topic string) int {
	w.mu.Lock()
	n, ok := w.limits[topic]
	w.mu.Unlock()
	if !ok {
		return w.batchLimit(topic)
	}
	return n
}

// fits reports whether r can be written to its topic as it is.
func (w *writer) fits(r *kgo.Record) bool { return recordBytes(r) <= w.limit(r.Topic) }

// fitSetAside returns rec, a dead letter or late record, cut to fit its
// topic: the value first, then the key, with headers sg-original-size and
// sg-original-sha256 describing the original value. It reports whether it
// cut it.
func (w *writer) fitSetAside(rec *kgo.Record) (*kgo.Record, bool) {
	return truncate(rec, w.limit(rec.Topic))
}

// truncate returns rec cut to fit limit (see fitSetAside).
func truncate(rec *kgo.Record, limit int) (*kgo.Record, bool) {
	if recordBytes(rec) <= limit {
		return rec, false
	}
	sum := sha256.Sum256(rec.Value)
	out := *rec
	out.Headers = append(slices.Clip(rec.Headers),
		kgo.RecordHeader{Key: schemas.HeaderOriginalSize, Value: []byte(strconv.Itoa(len(rec.Value)))},
		kgo.RecordHeader{Key: schemas.HeaderOriginalSHA256, Value: []byte(hex.EncodeToString(sum[:]))})
	out.Key, out.Value = nil, nil
	room := limit - recordBytes(&out)
	out.Key = rec.Key[:max(0, min(room, len(rec.Key)))]
	room -= len(out.Key)
	out.Value = rec.Value[:max(0, min(room, len(rec.Value)))]
	return &out, true
}

// fitAggregate returns the record of aggregate agg as it fits its topic:
// as it is, or, when too large, the aggregate written as failed without its
// result, then without its task lists and attributes. It returns the
// aggregate written and whether it was rewritten. An aggregate that fits in
// no form is returned as it is: the broker's refusal then stops the role
// (see refused).
func (w *writer) fitAggregate(rec *kgo.Record, agg *schemas.Aggregate, codec *schemas.Codec) (*kgo.Record, *schemas.Aggregate, bool) {
	limit := w.limit(rec.Topic)
	if agg == nil || recordBytes(rec) <= limit {
		return rec, agg, false
	}
	a := *agg
	a.Outcome, a.Result = schemas.OutcomeFailed, []byte("null")
	a.Reason = fmt.Sprintf("aggregate of %d bytes exceeds what topic %s accepts (%d bytes with key and headers)", len(rec.Value), rec.Topic, limit)
	out := *rec
	for step := 0; step < 2; step++ {
		if step == 1 {
			a.Answered, a.Failed, a.Missing = []schemas.Answer{}, []schemas.Answer{}, []schemas.TaskRef{}
			a.Attributes = schemas.Attributes{}
			a.Reason += " (task lists and attributes dropped)"
		}
		b, err := codec.Encode(&a)
		if err != nil {
			w.log.Error("encode failed aggregate", "request_id", a.RequestID, "err", err)
			return rec, agg, false
		}
		out.Value = b
		if recordBytes(&out) <= limit {
			break
		}
	}
	return &out, &a, true
}

// rewritten tells the hooks that a record meant for topic was written in
// another form (one of the Rewrite constants).
func (w *writer) rewritten(topic, how string) {
	each(w.hooks, func(h HookRecordRewritten) { h.OnRecordRewritten(w.flow.Name, w.role, topic, how) })
}

// refusal is what a failed write means.
type refusal uint8

const (
	// notRefused: no answer about the record itself (a timeout, a client
	// closing, a transaction aborting): trying again may work.
	notRefused refusal = iota
	// refusedSize: the record, or its batch, is too large for the
	// producer or the topic: it must be written in a form that fits.
	refusedSize
	// refusedTopic: the topic cannot be written at all (denied, or
	// missing if it stays so): the role stops.
	refusedTopic
	// refusedRecord: another refusal of this record that retrying will
	// not change (a policy, an invalid record): written in another form
	// where the role has one, else retried a bounded number of times.
	refusedRecord
)

// classifyWrite returns what the error of a produced record means.
func classifyWrite(err error) refusal {
	var ke *kerr.Error
	switch {
	case err == nil:
		return notRefused
	case errors.Is(err, kerr.MessageTooLarge), errors.Is(err, kerr.RecordListTooLarge):
		return refusedSize
	case errors.Is(err, kerr.TopicAuthorizationFailed), errors.Is(err, kerr.UnknownTopicOrPartition),
		errors.Is(err, kerr.ClusterAuthorizationFailed), errors.Is(err, kerr.TransactionalIDAuthorizationFailed):
		return refusedTopic
	case errors.As(err, &ke) && !ke.Retriable:
		return refusedRecord
	}
	return notRefused
}

// WriteError is a role stopping because it cannot write to Topic: denied,
// missing, or refusing the same records again and again. It says what to
// do about it, and is permanent (see IsPermanent): restarting the role
// would meet it again.
type WriteError struct {
	Flow  string
	Topic string
	Err   error  // the refusal
	Fix   string // what to do about it
}

func (e *WriteError) Error() string {
	return fmt.Sprintf("kafka: flow %s: cannot write to topic %s: %s: %s", e.Flow, e.Topic, errCode(e.Err), e.Fix)
}

// Unwrap returns the refusal.
func (e *WriteError) Unwrap() error { return e.Err }

// errCode returns the name of a broker's error code (TOPIC_AUTHORIZATION_FAILED)
// or, for another error, its text.
func errCode(err error) string {
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return ke.Message
	}
	return err.Error()
}

// cannotWrite returns the error that stops the role on a write to topic
// refused for good.
func (w *writer) cannotWrite(topic string, err error) *WriteError {
	fix := "grant this principal the right to write to it"
	switch {
	case errors.Is(err, kerr.TopicAuthorizationFailed):
		fix = "grant WRITE on it to this principal"
	case errors.Is(err, kerr.UnknownTopicOrPartition):
		fix = "it does not exist: create it with `scattergather topics create`"
	case errors.Is(err, kerr.ClusterAuthorizationFailed):
		fix = "grant IDEMPOTENT_WRITE on the cluster to this principal"
	case errors.Is(err, kerr.TransactionalIDAuthorizationFailed):
		fix = "grant WRITE on the role's transactional id to this principal"
	}
	return &WriteError{Flow: w.flow.Name, Topic: topic, Err: err, Fix: fix}
}

// confirmMissing reports whether topic is really gone: an unknown topic
// right after its creation is only metadata not yet everywhere.
func (w *writer) confirmMissing(ctx context.Context, topic string) bool {
	details, err := w.adm.ListTopics(ctx, topic)
	if err != nil {
		return false
	}
	d, ok := details[topic]
	return !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition)
}

// failedWrite is a record a transaction could not write.
type failedWrite struct {
	rec *kgo.Record
	err error
}

// writeFailures collects the failed writes of a transaction. Safe for
// concurrent use.
type writeFailures struct {
	mu   sync.Mutex
	list []failedWrite
}

// produced is a produce callback that keeps the failures.
func (f *writeFailures) produced(r *kgo.Record, err error) {
	if err == nil {
		return
	}
	f.mu.Lock()
	f.list = append(f.list, failedWrite{r, err})
	f.mu.Unlock()
}

// failed returns the failures collected.
func (f *writeFailures) failed() []failedWrite {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.list)
}

// err returns the failures joined, or nil.
func (f *writeFailures) err() error {
	var errs []error
	for _, fw := range f.failed() {
		errs = append(errs, fmt.Errorf("%s: %w", fw.rec.Topic, fw.err))
	}
	return errors.Join(errs...)
}

// aborted decides what a transaction that aborted over the records of poll
// (see readFrom) on failed writes means. A topic that cannot be written
// stops the role (a *WriteError); a record too large makes the limits of
// its topic be read again, so that the next attempt writes it in a form
// that fits; and the same records aborting maxAborts times in a row for the
// same cause stop the role with that cause. It returns the cause to retry
// on, nil when none was a refusal.
func (w *writer) aborted(ctx context.Context, poll string, failed []failedWrite) (cause *failedWrite, err error) {
	reread := map[string]bool{}
	for i, fw := range failed {
		switch classifyWrite(fw.err) {
		case notRefused:
			continue
		case refusedTopic:
			if !errors.Is(fw.err, kerr.UnknownTopicOrPartition) || w.confirmMissing(ctx, fw.rec.Topic) {
				return &failed[i], w.cannotWrite(fw.rec.Topic, fw.err)
			}
		case refusedSize:
			if !reread[fw.rec.Topic] {
				reread[fw.rec.Topic] = true
				// The topic's max.message.bytes may have been lowered
				// since the role started.
				w.readLimits(ctx, fw.rec.Topic)
			}
		}
		if cause == nil {
			cause = &failed[i]
		}
	}
	if cause == nil {
		return nil, nil
	}
	key := poll + "|" + cause.rec.Topic + "|" + errCode(cause.err)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.guard.key != key {
		w.guard.key, w.guard.n = key, 0
	}
	if w.guard.n++; w.guard.n >= maxAborts {
		return cause, &WriteError{Flow: w.flow.Name, Topic: cause.rec.Topic, Err: cause.err,
			Fix: fmt.Sprintf("the same records were refused %d times in a row, even in the forms that fit the topic's limits; the role stops rather than retry them forever: check the topic's configuration (max.message.bytes, policies)", w.guard.n)}
	}
	return cause, nil
}

// committed resets the count of aborts in a row.
func (w *writer) committed() {
	w.mu.Lock()
	w.guard.key, w.guard.n = "", 0
	w.mu.Unlock()
}

// readFrom is where the records a transaction read began, by partition
// ("topic/partition" → offset), over one poll or several: a transaction
// that aborts reads the same records again from there.
type readFrom map[string]int64

// add records where fs begins on the partitions not read before.
func (r readFrom) add(fs kgo.Fetches) readFrom {
	fs.EachPartition(func(fp kgo.FetchTopicPartition) {
		tp := fmt.Sprintf("%s/%d", fp.Topic, fp.Partition)
		if _, ok := r[tp]; !ok && len(fp.Records) > 0 {
			r[tp] = fp.Records[0].Offset
		}
	})
	return r
}

// key names the records by where they began.
func (r readFrom) key() string {
	parts := make([]string, 0, len(r))
	for tp, off := range r {
		parts = append(parts, fmt.Sprintf("%s@%d", tp, off))
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}
