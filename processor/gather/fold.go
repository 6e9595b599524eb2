package gather

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/scattergather/scattergather/processor/topology"
	"github.com/scattergather/scattergather/schemas"
	"github.com/scattergather/scattergather/store"
)

// Record is one record of a flow's results topic as the fold reads it.
type Record struct {
	Offset int64
	TimeMs int64 // the record's timestamp: log-append time on a real broker
	Key    []byte
	Value  []byte
}

// OutputKind says where an Output goes.
type OutputKind uint8

// Output kinds.
const (
	// ToAggregated: an aggregate for <flow>.aggregated.
	ToAggregated OutputKind = iota + 1
	// ToLate: a result for a closed or unknown request, for <flow>.late.
	ToLate
	// ToDeadLetter: a record that cannot be read, for the dead-letter topic.
	ToDeadLetter
)

// Output is a record the fold produces. Value is the encoded aggregate, or
// the original bytes for the late and dead-letter topics; TimeMs is the
// record timestamp to write (the stream time at completion, for an
// aggregate).
type Output struct {
	Kind   OutputKind
	Key    []byte
	Value  []byte
	TimeMs int64
	Reason string // why a record is late or dead-lettered
	// ReasonKind is the kind of reason of a late or dead-lettered record,
	// one of the schemas.Kind constants, for schemas.HeaderReasonKind.
	ReasonKind string
	Offset     int64              // offset of the input record that caused it
	Aggregate  *schemas.Aggregate // the decoded aggregate, for ToAggregated
}

// Stats counts what a Partition has folded since it was made. Counts of an
// aborted transaction are not taken back: they are for metrics.
type Stats struct {
	Manifests          int64
	DuplicateManifests int64
	Results            int64
	DuplicateResults   int64
	Ticks              int64
	Late               int64
	DeadLettered       int64
	Aggregates         map[schemas.Outcome]int64
}

// Flow is the gather's view of one flow: its settings and consolidation.
// It is immutable and safe for concurrent use.
type Flow struct {
	cfg   *topology.Flow
	cons  Consolidator
	codec *schemas.Codec
	obs   Observer
}

// Observer is told what the fold counts as it folds, for metrics. Its
// methods must be safe for concurrent use; a record folded again after an
// aborted transaction is told again.
type Observer interface {
	// ResultFolded: a result counted as the answer of target (ok is false
	// for an ERROR result or an answer that cannot be consolidated).
	ResultFolded(target string, ok bool)
	// DuplicateResult: a result of a task that had already answered.
	DuplicateResult()
}

// FlowOption tunes NewFlow.
type FlowOption func(*Flow)

// WithObserver sets the fold's observer. Default: none.
func WithObserver(o Observer) FlowOption { return func(f *Flow) { f.obs = o } }

// NewFlow prepares the fold of a flow. It fails for an unknown
// consolidation.
func NewFlow(cfg *topology.Flow, codec *schemas.Codec, opts ...FlowOption) (*Flow, error) {
	cons, err := ConsolidatorFor(cfg.Consolidate)
	if err != nil {
		return nil, err
	}
	if codec == nil {
		codec = schemas.Default
	}
	f := &Flow{cfg: cfg, cons: cons, codec: codec}
	for _, opt := range opts {
		opt(f)
	}
	return f, nil
}

// Partition folds one partition of the results topic into its store.
// Records go into an overlay (Begin, Apply...) that Commit applies and
// Abort drops, so the state always matches a committed Kafka transaction.
// A Partition is not safe for concurrent use.
type Partition struct {
	f         *Flow
	partition int32
	st        *store.Partition
	committed store.Position
	tx        *store.Txn
	// Working position of the open overlay.
	next       int64
	streamTime int64
	Stats      Stats
}

// NewPartition returns the fold of partition p over st, standing at pos
// (as read from st, or a fresh position for an empty state).
func (f *Flow) NewPartition(p int32, st *store.Partition, pos store.Position) *Partition {
	return &Partition{
		f: f, partition: p, st: st, committed: pos,
		next: pos.Next, streamTime: pos.StreamTime,
		Stats: Stats{Aggregates: map[schemas.Outcome]int64{}},
	}
}

// Position is the committed position.
func (p *Partition) Position() store.Position { return p.committed }

// StreamTime is the working stream time: the largest record time read.
func (p *Partition) StreamTime() int64 { return p.streamTime }

// Next is the working offset: the offset after the last record applied.
func (p *Partition) Next() int64 { return p.next }

func (p *Partition) txn() *store.Txn {
	if p.tx == nil {
		p.tx = p.st.Begin(p.committed)
	}
	return p.tx
}

// Pending returns the position the overlay would commit.
func (p *Partition) Pending() (store.Position, error) {
	pos := p.committed
	pos.Next, pos.StreamTime = p.next, p.streamTime
	if p.tx == nil {
		return pos, nil
	}
	oldest, oldestTime, ok, err := p.tx.OldestOffset()
	if err != nil {
		return pos, err
	}
	pos.Oldest, pos.OldestStreamTime = pos.Next, pos.StreamTime
	if ok && oldest < pos.Next {
		pos.Oldest, pos.OldestStreamTime = oldest, oldestTime
	}
	pos.Open = p.tx.Open()
	return pos, nil
}

// Commit applies the overlay and its position to the store. Call it once
// the Kafka transaction holding the overlay's outputs has committed.
func (p *Partition) Commit() error {
	if p.tx == nil {
		return nil
	}
	pos, err := p.Pending()
	if err != nil {
		p.Abort()
		return err
	}
	tx := p.tx
	p.tx = nil
	if err := tx.Commit(pos); err != nil {
		p.next, p.streamTime = p.committed.Next, p.committed.StreamTime
		return err
	}
	p.committed = pos
	return nil
}

// Abort drops the overlay and returns to the committed position.
func (p *Partition) Abort() {
	if p.tx != nil {
		p.tx.Discard()
		p.tx = nil
	}
	p.next, p.streamTime = p.committed.Next, p.committed.StreamTime
}

// NextDeadline returns the earliest deadline of an open request, in the
// overlay's view when there is one.
func (p *Partition) NextDeadline() (int64, bool, error) {
	if p.tx != nil {
		return p.tx.NextDeadline()
	}
	return p.st.NextDeadline()
}

// Apply folds one record into the overlay and passes what it produces to
// emit, in order. It returns an error only when the store fails; a record
// that cannot be read becomes a dead-letter Output.
func (p *Partition) Apply(rec Record, emit func(Output)) error {
	if rec.Offset < p.next {
		return nil // already folded (a re-delivery after a rewind we did not see)
	}
	tx := p.txn()
	if err := p.advance(tx, rec.TimeMs, emit); err != nil {
		return err
	}
	p.next = rec.Offset + 1

	v, err := p.f.codec.Decode(rec.Value)
	if errors.Is(err, schemas.ErrRegistryUnavailable) {
		// Not the record's fault: the transaction aborts and the record is
		// read again once the registry answers.
		return fmt.Errorf("gather: record at offset %d: %w", rec.Offset, err)
	}
	if err != nil {
		p.deadLetter(rec, emit, schemas.KindUndecodable, fmt.Sprintf("undecodable record: %v", err))
		return nil
	}
	switch v := v.(type) {
	case *schemas.Tick:
		p.Stats.Ticks++
		return nil
	case *schemas.Manifest:
		return p.manifest(tx, rec, v, emit)
	case *schemas.Result:
		return p.result(tx, rec, v, emit)
	default:
		p.deadLetter(rec, emit, schemas.KindUnexpectedRecord, fmt.Sprintf("a %T record does not belong in the results topic", v))
		return nil
	}
}

// advance moves stream time to ms (never back), completes every request
// whose deadline it passed, and forgets expired closed requests.
func (p *Partition) advance(tx *store.Txn, ms int64, emit func(Output)) error {
	if ms <= p.streamTime {
		return nil
	}
	p.streamTime = ms
	for {
		due, err := tx.DueBefore(ms, 256)
		if err != nil {
			return err
		}
		for _, d := range due {
			r, ok, err := tx.Request(d.RequestID)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("gather: deadline index names request %q that is not open", d.RequestID)
			}
			answers, err := tx.Answers(r.RequestID)
			if err != nil {
				return err
			}
			dec := p.decide(r, true)
			if err := p.complete(tx, r, answers, dec, emit); err != nil {
				return err
			}
		}
		if len(due) < 256 {
			break
		}
	}
	tx.FiredBefore(ms)
	_, err := tx.ExpireClosed(ms)
	return err
}

func (p *Partition) deadLetter(rec Record, emit func(Output), kind, reason string) {
	p.Stats.DeadLettered++
	emit(Output{Kind: ToDeadLetter, Key: rec.Key, Value: rec.Value, TimeMs: rec.TimeMs, Reason: reason, ReasonKind: kind, Offset: rec.Offset})
}

func (p *Partition) late(rec Record, emit func(Output), kind, reason string) {
	p.Stats.Late++
	emit(Output{Kind: ToLate, Key: rec.Key, Value: rec.Value, TimeMs: rec.TimeMs, Reason: reason, ReasonKind: kind, Offset: rec.Offset})
}

// validateManifest checks the rules of a manifest read at stream time
// nowMs, with at most maxTimeout (limits.max_timeout).
func validateManifest(m *schemas.Manifest, nowMs int64, maxTimeout time.Duration) error {
	if err := schemas.ValidRequestID(m.RequestID); err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), "schemas: "))
	}
	if len(m.Tasks) == 0 {
		return errors.New("no tasks")
	}
	switch {
	case m.TimeoutMs <= 0:
		return fmt.Errorf("timeout_ms %d is not positive", m.TimeoutMs)
	case m.TimeoutMs > maxTimeout.Milliseconds():
		return fmt.Errorf("timeout_ms %d exceeds limits.max_timeout %s", m.TimeoutMs, maxTimeout)
	case nowMs >= math.MaxInt64-m.TimeoutMs:
		// A deadline fires once the log time passes it: the largest
		// int64 would never fire, a larger one would wrap into the past.
		return fmt.Errorf("timeout_ms %d from log time %d overflows the deadline", m.TimeoutMs, nowMs)
	}
	ids := make(map[string]bool, len(m.Tasks))
	for _, t := range m.Tasks {
		if ids[t.TaskID] {
			return fmt.Errorf("task id %q appears twice", t.TaskID)
		}
		ids[t.TaskID] = true
	}
	if _, err := StrategyFor(m.Strategy, int(m.Quorum), int(m.MaxFailures), len(m.Tasks)); err != nil {
		return err
	}
	return nil
}

func (p *Partition) manifest(tx *store.Txn, rec Record, m *schemas.Manifest, emit func(Output)) error {
	if m.Flow != p.f.cfg.Name {
		p.deadLetter(rec, emit, schemas.KindUnknownFlow, fmt.Sprintf("manifest of flow %q in the results topic of flow %q", m.Flow, p.f.cfg.Name))
		return nil
	}
	if err := validateManifest(m, p.streamTime, p.f.cfg.Limits.MaxTimeout.D); err != nil {
		p.deadLetter(rec, emit, schemas.KindInvalidManifest, "invalid manifest: "+err.Error())
		return nil
	}
	p.Stats.Manifests++
	if _, open, err := tx.Request(m.RequestID); err != nil || open {
		if open {
			p.Stats.DuplicateManifests++
		}
		return err
	}
	if _, closed, err := tx.Closed(m.RequestID); err != nil || closed {
		if closed {
			p.Stats.DuplicateManifests++
		}
		return err
	}
	r := &store.Request{
		RequestID:      m.RequestID,
		Tasks:          m.Tasks,
		Strategy:       m.Strategy,
		Quorum:         m.Quorum,
		MaxFailures:    m.MaxFailures,
		OpenedMs:       p.streamTime,
		DeadlineMs:     p.streamTime + m.TimeoutMs,
		ManifestOffset: rec.Offset,
		Attributes:     m.Attributes,
	}
	if limit := int64(p.f.cfg.Limits.MaxOpenRequests); tx.Open() >= limit {
		dec := Decision{Done: true, Outcome: schemas.OutcomeFailed,
			Reason: fmt.Sprintf("partition %d already holds %d open requests (limits.max_open_requests)", p.partition, limit)}
		if err := tx.OpenRequest(r); err != nil {
			return err
		}
		return p.complete(tx, r, nil, dec, emit)
	}
	if err := tx.OpenRequest(r); err != nil {
		return err
	}
	// A strategy may be satisfied with no answer at all (a quorum larger
	// than the tasks fails at once).
	if dec := p.decide(r, false); dec.Done {
		return p.complete(tx, r, nil, dec, emit)
	}
	return nil
}

func (p *Partition) result(tx *store.Txn, rec Record, res *schemas.Result, emit func(Output)) error {
	if res.Flow != p.f.cfg.Name {
		p.deadLetter(rec, emit, schemas.KindUnknownFlow, fmt.Sprintf("result of flow %q in the results topic of flow %q", res.Flow, p.f.cfg.Name))
		return nil
	}
	if res.RequestID == "" || len(res.RequestID) > schemas.MaxRequestIDBytes {
		p.deadLetter(rec, emit, schemas.KindInvalidResult, "result without a valid request id")
		return nil
	}
	p.Stats.Results++
	r, open, err := tx.Request(res.RequestID)
	if err != nil {
		return err
	}
	if !open {
		_, closed, err := tx.Closed(res.RequestID)
		if err != nil {
			return err
		}
		if closed {
			p.late(rec, emit, schemas.KindCompletedRequest, "request already completed")
		} else {
			p.late(rec, emit, schemas.KindUnknownRequest, "unknown request (never opened, or forgotten after gather.closed_retention)")
		}
		return nil
	}
	idx := slices.IndexFunc(r.Tasks, func(t schemas.TaskRef) bool { return t.TaskID == res.TaskID })
	if idx < 0 {
		p.deadLetter(rec, emit, schemas.KindInvalidResult, fmt.Sprintf("request %q has no task %q", res.RequestID, res.TaskID))
		return nil
	}
	if r.HasAnswered(idx) {
		p.Stats.DuplicateResults++
		if p.f.obs != nil {
			p.f.obs.DuplicateResult()
		}
		r.Duplicates++
		return tx.PutRequest(r)
	}
	r.SetAnswered(idx)
	a := &store.Answer{
		Index:      int32(idx),
		OK:         res.Status == schemas.StatusOK,
		Error:      res.Error,
		LogMs:      p.streamTime,
		Attempts:   res.Attempts,
		DurationMs: res.DurationMs,
	}
	if a.OK {
		switch limit := int(p.f.cfg.Limits.MaxPayloadBytes); {
		case len(res.Payload) > limit:
			a.OK, a.Error = false, fmt.Sprintf("payload of %d bytes exceeds limits.max_payload_bytes %d", len(res.Payload), limit)
		default:
			if err := p.f.cons.Check(res.Payload); err != nil {
				a.OK, a.Error = false, "cannot consolidate: "+err.Error()
			} else {
				a.Payload = res.Payload
			}
		}
	} else if a.Error == "" {
		a.Error = "error result without a reason"
	}
	if p.f.obs != nil {
		p.f.obs.ResultFolded(r.Tasks[idx].Target, a.OK)
	}
	if a.OK {
		r.OK++
	} else {
		r.Failed++
	}
	if err := tx.PutAnswer(r.RequestID, a); err != nil {
		return err
	}
	if dec := p.decide(r, false); dec.Done {
		answers, err := tx.Answers(r.RequestID)
		if err != nil {
			return err
		}
		return p.complete(tx, r, answers, dec, emit)
	}
	return tx.PutRequest(r)
}

func (p *Partition) decide(r *store.Request, deadline bool) Decision {
	s, err := StrategyFor(r.Strategy, int(r.Quorum), int(r.MaxFailures), len(r.Tasks))
	if err != nil { // validated when the manifest was read
		return Decision{Done: true, Outcome: schemas.OutcomeFailed, Reason: err.Error()}
	}
	return s.Decide(Progress{Tasks: len(r.Tasks), OK: int(r.OK), Failed: int(r.Failed), Deadline: deadline})
}

// complete builds the aggregate of r, emits it and closes r.
func (p *Partition) complete(tx *store.Txn, r *store.Request, answers []store.Answer, dec Decision, emit func(Output)) error {
	agg := p.aggregate(r, answers, dec)
	limit := int(p.f.cfg.Limits.MaxAggregateBytes)
	b, err := p.f.codec.Encode(agg)
	if err == nil && len(b) > limit {
		err = fmt.Errorf("aggregate of %d bytes exceeds limits.max_aggregate_bytes %d", len(b), p.f.cfg.Limits.MaxAggregateBytes)
	}
	if err != nil {
		// Never a transaction that aborts on every retry: a failed aggregate
		// without the result takes its place.
		agg.Outcome, agg.Reason, agg.Result = schemas.OutcomeFailed, err.Error(), []byte("null")
		b, err = p.f.codec.Encode(agg)
		if err == nil && len(b) > limit {
			// Still too large: the per-task lists (which grow with the
			// tasks and their error texts) and the attributes go too.
			agg.Answered, agg.Failed, agg.Missing = []schemas.Answer{}, []schemas.Answer{}, []schemas.TaskRef{}
			agg.Attributes = schemas.Attributes{}
			agg.Reason += " (task lists and attributes dropped)"
			b, err = p.f.codec.Encode(agg)
		}
		if err != nil {
			return fmt.Errorf("gather: encode aggregate of %q: %w", r.RequestID, err)
		}
	}
	p.Stats.Aggregates[agg.Outcome]++
	emit(Output{Kind: ToAggregated, Key: []byte(r.RequestID), Value: b, TimeMs: agg.CompletedMs, Aggregate: agg})
	return tx.CloseRequest(r, p.streamTime+p.f.cfg.Gather.ClosedRetention.D.Milliseconds())
}

func (p *Partition) aggregate(r *store.Request, answers []store.Answer, dec Decision) *schemas.Aggregate {
	agg := &schemas.Aggregate{
		RequestID:      r.RequestID,
		Flow:           p.f.cfg.Name,
		Outcome:        dec.Outcome,
		Reason:         dec.Reason,
		Strategy:       r.Strategy,
		Consolidation:  p.f.cfg.Consolidate.Type,
		ContentType:    schemas.ContentTypeJSON,
		Tasks:          int32(len(r.Tasks)),
		Answered:       []schemas.Answer{},
		Failed:         []schemas.Answer{},
		Missing:        []schemas.TaskRef{},
		Duplicates:     r.Duplicates,
		OpenedMs:       r.OpenedMs,
		DeadlineMs:     r.DeadlineMs,
		CompletedMs:    p.streamTime,
		Partition:      p.partition,
		ManifestOffset: r.ManifestOffset,
		Attributes:     r.Attributes,
	}
	if agg.Attributes == nil {
		agg.Attributes = schemas.Attributes{}
	}
	byIndex := make([]*store.Answer, len(r.Tasks))
	for i := range answers {
		if ix := answers[i].Index; ix >= 0 && int(ix) < len(byIndex) {
			byIndex[ix] = &answers[i]
		}
	}
	var inputs []Input
	for i, t := range r.Tasks {
		a := byIndex[i]
		if a == nil {
			agg.Missing = append(agg.Missing, t)
			continue
		}
		out := schemas.Answer{TaskID: t.TaskID, Target: t.Target, Item: t.Item, Error: a.Error,
			LatencyMs: a.LogMs - r.OpenedMs, Attempts: a.Attempts, DurationMs: a.DurationMs}
		if !a.OK {
			agg.Failed = append(agg.Failed, out)
			continue
		}
		agg.Answered = append(agg.Answered, out)
		inputs = append(inputs, Input{TaskID: t.TaskID, Target: t.Target, Item: t.Item, Payload: a.Payload})
	}
	agg.Result = []byte("null")
	if agg.Outcome == schemas.OutcomeFailed {
		// A failed request has no result, even when some tasks answered OK
		// (max_failures, a quorum out of reach): the consumer must not
		// mistake a partial consolidation for an answer.
		return agg
	}
	result, err := p.f.cons.Consolidate(inputs)
	if err != nil {
		agg.Outcome, agg.Reason, result = schemas.OutcomeFailed, "consolidation failed: "+err.Error(), []byte("null")
	}
	agg.Result = result
	return agg
}

// SkipTo moves the working offset forward to off when it is behind: over
// offsets without records to fold (transaction markers, records that are
// gone).
func (p *Partition) SkipTo(off int64) {
	if off > p.next {
		p.txn()
		p.next = off
	}
}
