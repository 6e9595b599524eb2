package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble/v2"

	"github.com/scattergather/scattergather/schemas"
)

// Txn is an overlay of changes to one partition's state, read through
// (it sees its own writes over the stored state). Commit applies it in one
// batch together with the new position; Discard drops it. A Txn is not
// safe for concurrent use.
type Txn struct {
	p     *Partition
	b     *pebble.Batch
	open  int64
	buf   []byte
	floor floors
	// reqs is the overlay of the partition's request cache: the requests
	// this Txn opened, changed or closed (nil r), applied to the cache by
	// Commit.
	reqs map[string]*cached
	kb   []byte // the key last built by idKey and atKey
}

// idKey returns the key of tag and request id, in a buffer that the next
// idKey or atKey reuses: for a read or write that copies it (Get, Set,
// Delete), not for an iterator's bounds.
func (t *Txn) idKey(tag byte, id string) []byte { return t.appendKey(tag, false, 0, id) }

// atKey is idKey for the index keys: tag, at, then the request id.
func (t *Txn) atKey(tag byte, at int64, id string) []byte { return t.appendKey(tag, true, at, id) }

func (t *Txn) appendKey(tag byte, withAt bool, at int64, id string) []byte {
	k := append(t.kb[:0], t.p.prefix[:]...)
	k = append(k, tag)
	if withAt {
		k = binary.BigEndian.AppendUint64(k, uint64(at))
	}
	// As idPart.
	k = binary.BigEndian.AppendUint16(k, uint16(len(id)))
	k = append(k, id...)
	t.kb = k
	return k
}

// Open is the number of open requests as of this Txn.
func (t *Txn) Open() int64 { return t.open }

// Commit applies the changes and pos (whose Open is set from the Txn) in one
// atomic batch. The Txn cannot be used afterwards.
func (t *Txn) Commit(pos Position) error {
	defer t.b.Close()
	pos.Version = FormatVersion
	pos.Open = t.open
	v, err := positionSchema.Encode(&pos)
	if err != nil {
		return fmt.Errorf("store: encode position: %w", err)
	}
	if err := t.b.Set(t.p.key(tagPosition), v, nil); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	// The store is a cache of the log: a write lost to a machine crash is
	// found by the position check and re-folded, so no fsync per commit.
	if err := t.b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	t.p.floor = t.floor
	t.p.cache.apply(t.reqs)
	return nil
}

// Discard drops the changes.
func (t *Txn) Discard() { t.b.Close() }

// Len is the size of the overlay in bytes.
func (t *Txn) Len() int { return t.b.Len() }

func (t *Txn) getRaw(key []byte, decode func([]byte) error) (bool, error) {
	v, closer, err := t.b.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("store: get: %w", err)
	}
	defer closer.Close()
	if err := decode(v); err != nil {
		return false, fmt.Errorf("store: decode: %w", err)
	}
	return true, nil
}

func checkID(id string) error {
	if len(id) > schemas.MaxRequestIDBytes {
		return fmt.Errorf("%w: %d bytes", ErrKeyTooLong, len(id))
	}
	return nil
}

// Request returns the open request id; ok is false when it is not open.
// The request is the caller's to change (its Tasks and Attributes
// excepted) and to store again with PutRequest.
func (t *Txn) Request(id string) (r *Request, ok bool, err error) {
	if err := checkID(id); err != nil {
		return nil, false, err
	}
	if e := t.lookup(id); e != nil {
		if e.r == nil {
			return nil, false, nil // closed by this Txn
		}
		return e.r.clone(), true, nil
	}
	if c := t.p.cache; c != nil && c.complete {
		return nil, false, nil // the cache holds every open request
	}
	r = new(Request)
	ok, err = t.getRaw(t.idKey(tagRequest, id), func(v []byte) error {
		_, err := requestSchema.Decode(v, r)
		return err
	})
	if !ok {
		return nil, ok, err
	}
	// Neither the overlay nor the cache has it, so this Txn has not
	// written it: it is as committed.
	t.p.cache.set(id, &cached{r: r.clone()})
	return r, ok, err
}

// OpenRequest stores a newly opened request (one not open) with its
// deadline and manifest offset in the indexes. The Txn keeps r: the caller
// may change it only to store it again.
func (t *Txn) OpenRequest(r *Request) error {
	if err := checkID(r.RequestID); err != nil {
		return err
	}
	if err := t.PutRequest(r); err != nil {
		return err
	}
	// A new request has no answers.
	t.setEntry(r.RequestID, &cached{r: r, known: true})
	t.floor.nextDeadline = lower(t.floor.nextDeadline, r.DeadlineMs)
	if err := t.b.Set(t.atKey(tagDeadline, r.DeadlineMs, r.RequestID), nil, nil); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	// The offset index holds the stream time once the manifest was folded
	// (OpenedMs): Position.OldestStreamTime.
	if err := t.b.Set(t.atKey(tagOffset, r.ManifestOffset, r.RequestID), be64(r.OpenedMs), nil); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	t.open++
	return nil
}

// PutRequest updates an open request's header. The Txn keeps r: the
// caller may change it only to store it again.
func (t *Txn) PutRequest(r *Request) error {
	var err error
	t.buf, err = requestSchema.AppendEncode(t.buf[:0], r)
	if err != nil {
		return fmt.Errorf("store: encode request: %w", err)
	}
	if err := t.b.Set(t.idKey(tagRequest, r.RequestID), t.buf, nil); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if e := t.own(r.RequestID); e != nil && e.r != nil {
		e.r = r
	} else {
		// Answers unknown: those stored before are in Pebble only.
		t.setEntry(r.RequestID, &cached{r: r})
	}
	return nil
}

// answerKey is idKey for the key of an answer.
func (t *Txn) answerKey(id string, index int32) []byte {
	t.kb = binary.BigEndian.AppendUint32(t.idKey(tagAnswer, id), uint32(index))
	return t.kb
}

// HasAnswer reports whether task index of request id has answered.
func (t *Txn) HasAnswer(id string, index int32) (bool, error) {
	return t.getRaw(t.answerKey(id, index), func([]byte) error { return nil })
}

// PutAnswer stores an answer of request id.
func (t *Txn) PutAnswer(id string, a *Answer) error {
	var err error
	t.buf, err = answerSchema.AppendEncode(t.buf[:0], a)
	if err != nil {
		return fmt.Errorf("store: encode answer: %w", err)
	}
	if err := t.b.Set(t.answerKey(id, a.Index), t.buf, nil); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if e := t.own(id); e != nil && e.known {
		if e.answers == nil {
			e.answers = make([]Answer, 0, len(e.r.Tasks)) // room for all
		}
		e.answers = addAnswer(e.answers, *a)
	}
	return nil
}

// Answers returns the answers of request id in task order. They are the
// caller's to change.
func (t *Txn) Answers(id string) ([]Answer, error) {
	if e := t.lookup(id); e != nil && e.r != nil && e.known {
		if len(e.answers) == 0 {
			return nil, nil
		}
		return slices.Clone(e.answers), nil
	}
	prefix := t.p.key(tagAnswer, idPart(id))
	it, err := t.b.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	defer it.Close()
	var out []Answer
	for it.First(); it.Valid(); it.Next() {
		var a Answer
		if _, err := answerSchema.Decode(it.Value(), &a); err != nil {
			return nil, fmt.Errorf("store: decode answer: %w", err)
		}
		out = append(out, a)
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if e := t.own(id); e != nil && e.r != nil {
		e.answers, e.known = slices.Clone(out), true
	}
	return out, nil
}

// CloseRequest removes open request r with its answers and index entries,
// and remembers it as closed until expiresMs (log time).
func (t *Txn) CloseRequest(r *Request, expiresMs int64) error {
	sets := []error{
		t.b.Delete(t.idKey(tagRequest, r.RequestID), nil),
		t.b.Delete(t.atKey(tagDeadline, r.DeadlineMs, r.RequestID), nil),
	}
	// Point deletes, not a range: every read of an indexed batch pays for
	// the range deletions it holds.
	for i := range r.Tasks {
		sets = append(sets, t.b.Delete(t.answerKey(r.RequestID, int32(i)), nil))
	}
	if err := errors.Join(sets...); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	t.setEntry(r.RequestID, &cached{})
	t.floor.nextExpiry = lower(t.floor.nextExpiry, expiresMs)
	t.open--
	c := Closed{ExpiresMs: expiresMs, ManifestOffset: r.ManifestOffset}
	v, err := closedSchema.Encode(&c)
	if err != nil {
		return fmt.Errorf("store: encode closed: %w", err)
	}
	// The offset index entry stays: a remembered closed request is still
	// needed to rebuild the same state.
	if err := errors.Join(
		t.b.Set(t.idKey(tagClosed, r.RequestID), v, nil),
		t.b.Set(t.atKey(tagExpiry, expiresMs, r.RequestID), nil, nil),
	); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// Closed returns the closed marker of request id.
func (t *Txn) Closed(id string) (c Closed, ok bool, err error) {
	if err := checkID(id); err != nil {
		return c, false, err
	}
	ok, err = t.getRaw(t.idKey(tagClosed, id), func(v []byte) error {
		_, err := closedSchema.Decode(v, &c)
		return err
	})
	return c, ok, err
}

// ExpireClosed forgets the closed requests whose memory expires at or
// before ms.
func (t *Txn) ExpireClosed(ms int64) (int, error) {
	if t.floor.nextExpiry != 0 && t.floor.nextExpiry > ms {
		return 0, nil
	}
	lo := t.p.key(tagExpiry)
	type entry struct{ key, id []byte }
	var expired []entry
	it, err := t.b.NewIter(&pebble.IterOptions{LowerBound: t.p.key(tagExpiry, be64(t.floor.expiry)), UpperBound: prefixEnd(lo)})
	if err != nil {
		return 0, fmt.Errorf("store: %w", err)
	}
	t.floor.nextExpiry = none
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		if at := int64(binary.BigEndian.Uint64(k[len(lo):])); at > ms {
			t.floor.nextExpiry = at
			break
		}
		expired = append(expired, entry{key: append([]byte(nil), k...), id: append([]byte(nil), k[len(lo)+8:]...)})
	}
	err = it.Error()
	it.Close()
	if err != nil {
		return 0, fmt.Errorf("store: %w", err)
	}
	// Expiries are stream time plus a retention, so none below ms comes
	// later; one at ms may, so the next scan starts at ms.
	t.floor.expiry = max(t.floor.expiry, ms)
	for _, e := range expired {
		ck := t.p.key(tagClosed, e.id)
		var c Closed
		ok, err := t.getRaw(ck, func(v []byte) error { _, err := closedSchema.Decode(v, &c); return err })
		if err != nil {
			return 0, err
		}
		errs := []error{t.b.Delete(e.key, nil)}
		if ok {
			errs = append(errs, t.b.Delete(ck, nil), t.b.Delete(t.p.key(tagOffset, be64(c.ManifestOffset), e.id), nil))
		}
		if err := errors.Join(errs...); err != nil {
			return 0, fmt.Errorf("store: %w", err)
		}
	}
	return len(expired), nil
}

// Due is an entry of the deadline index.
type Due struct {
	DeadlineMs int64
	RequestID  string
}

// DueBefore returns up to limit open requests whose deadline is before ms,
// earliest first (ties by request id length, then by id: the index keys
// hold the length-prefixed id). The cost grows with the number due, not the
// number open.
func (t *Txn) DueBefore(ms int64, limit int) ([]Due, error) {
	if t.floor.nextDeadline != 0 && t.floor.nextDeadline >= ms {
		return nil, nil
	}
	lo := t.p.key(tagDeadline)
	it, err := t.b.NewIter(&pebble.IterOptions{LowerBound: t.p.key(tagDeadline, be64(t.floor.deadlineFrom())), UpperBound: prefixEnd(lo)})
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	defer it.Close()
	var out []Due
	first := int64(none) // the smallest deadline: a lower bound for later
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()[len(lo):]
		at := int64(binary.BigEndian.Uint64(k[:8]))
		first = min(first, at)
		if at >= ms || len(out) == limit {
			break
		}
		out = append(out, Due{DeadlineMs: at, RequestID: string(k[8+2:])})
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	t.floor.nextDeadline = first
	return out, nil
}

// FiredBefore records that no open request has a deadline before ms any
// more (the caller completed every one DueBefore returned) and that none
// will be opened with one: later scans start at ms.
func (t *Txn) FiredBefore(ms int64) { t.floor.deadline = max(t.floor.deadline, ms) }

// NextDeadline returns the earliest deadline of an open request.
func (t *Txn) NextDeadline() (ms int64, ok bool, err error) {
	return nextDeadline(t.b, t.p, &t.floor)
}

// nextDeadline scans r's deadline index of partition p for its smallest
// entry, from where f says it can be, and records what it found in f.
func nextDeadline(r pebble.Reader, p *Partition, f *floors) (ms int64, ok bool, err error) {
	if f.nextDeadline == none {
		return 0, false, nil
	}
	lo := p.key(tagDeadline)
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: p.key(tagDeadline, be64(f.deadlineFrom())), UpperBound: prefixEnd(lo)})
	if err != nil {
		return 0, false, fmt.Errorf("store: %w", err)
	}
	defer it.Close()
	if !it.First() {
		if err := it.Error(); err != nil {
			return 0, false, fmt.Errorf("store: %w", err)
		}
		f.nextDeadline = none
		return 0, false, nil
	}
	ms = int64(binary.BigEndian.Uint64(it.Key()[len(lo):]))
	// Exact now; it only grows as requests close, and an opened request
	// lowers it.
	f.nextDeadline = ms
	return ms, true, nil
}

// OldestOffset returns the smallest manifest offset of an open or
// remembered closed request, and the stream time once that manifest was
// folded.
func (t *Txn) OldestOffset() (off, streamTime int64, ok bool, err error) {
	lo := t.p.key(tagOffset)
	it, err := t.b.NewIter(&pebble.IterOptions{LowerBound: t.p.key(tagOffset, be64(t.floor.offset)), UpperBound: prefixEnd(lo)})
	if err != nil {
		return 0, 0, false, fmt.Errorf("store: %w", err)
	}
	defer it.Close()
	if !it.First() {
		return 0, 0, false, it.Error()
	}
	// The smallest needed offset only grows: manifests come in offset
	// order, and entries only go.
	off = int64(binary.BigEndian.Uint64(it.Key()[len(lo):]))
	t.floor.offset = off
	if v := it.Value(); len(v) == 8 {
		streamTime = int64(binary.BigEndian.Uint64(v))
	}
	return off, streamTime, true, nil
}

// prefixEnd returns the smallest key greater than every key with prefix.
func prefixEnd(prefix []byte) []byte {
	end := append([]byte(nil), prefix...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}
