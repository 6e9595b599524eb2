package store

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble/v2"
)

// DefaultRequestCache is the default budget, in bytes (as estimated), of a
// partition's cache of open requests.
const DefaultRequestCache = 8 << 20

// cached is an open request as the cache holds it: the request, and its
// answers in task order when known (every answer is in answers). An entry
// of a Txn's overlay with a nil r is a request closed by the Txn.
//
// Entries of the committed cache are never changed: a Txn copies one into
// its overlay before changing it, and hands out copies of its Request.
type cached struct {
	r       *Request
	answers []Answer
	known   bool
	size    int64
}

// estimate is the memory an entry holds, roughly.
func (c *cached) estimate() int64 {
	n := int64(256 + len(c.r.RequestID) + len(c.r.Strategy) + len(c.r.Seen))
	for _, t := range c.r.Tasks {
		n += int64(64 + len(t.TaskID) + len(t.Target))
	}
	for _, a := range c.r.Attributes {
		n += int64(32 + len(a.Key) + len(a.Value))
	}
	for _, a := range c.answers {
		n += int64(96 + len(a.Payload) + len(a.Error))
	}
	return n
}

// requestCache holds the open requests of a partition's committed state
// that this process opened or read, within a budget of bytes: an entry
// over it goes, and the request is read from Pebble again when needed.
// Pebble remains the durable copy: every change is written through.
type requestCache struct {
	m      map[string]*cached
	bytes  int64
	budget int64
	// loaded: the committed state's open requests were read into the
	// cache (load), or the state was discarded.
	loaded bool
	// complete: every open request of the committed state is in m, so
	// that a request m does not have is not open. Dropping an entry for
	// the budget ends it.
	complete bool
}

func newRequestCache(budget int64) *requestCache {
	if budget <= 0 {
		return nil
	}
	return &requestCache{m: map[string]*cached{}, budget: budget}
}

func (c *requestCache) get(id string) *cached {
	if c == nil {
		return nil
	}
	return c.m[id]
}

func (c *requestCache) remove(id string) {
	if e, ok := c.m[id]; ok {
		c.bytes -= e.size
		delete(c.m, id)
	}
}

// set stores e (which the cache owns from now on) as id's entry, making
// room within the budget by dropping other entries.
func (c *requestCache) set(id string, e *cached) {
	if c == nil {
		return
	}
	c.remove(id)
	e.size = e.estimate()
	if e.size > c.budget {
		c.complete = false
		return
	}
	for id := range c.m {
		if c.bytes+e.size <= c.budget {
			break
		}
		c.remove(id) // an arbitrary one: map order
		c.complete = false
	}
	c.m[id] = e
	c.bytes += e.size
}

// apply makes the committed cache reflect a committed overlay.
func (c *requestCache) apply(overlay map[string]*cached) {
	if c == nil {
		return
	}
	for id, e := range overlay {
		if e.r == nil {
			c.remove(id)
		} else {
			c.set(id, e)
		}
	}
}

// reset empties the cache of a state that was discarded: it holds every
// open request, none.
func (c *requestCache) reset() {
	if c == nil {
		return
	}
	clear(c.m)
	c.bytes = 0
	c.loaded, c.complete = true, true
}

// load reads the open requests of p's committed state into the cache,
// until its budget is spent: it is complete if they all fit.
func (p *Partition) load() error {
	c := p.cache
	if c == nil || c.loaded {
		return nil
	}
	c.loaded = true
	lo := p.key(tagRequest)
	it, err := p.db.pdb.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer it.Close()
	c.complete = true
	for it.First(); it.Valid() && c.complete; it.Next() {
		r := new(Request)
		if _, err := requestSchema.Decode(it.Value(), r); err != nil {
			c.complete = false
			return fmt.Errorf("store: decode request: %w", err)
		}
		c.set(r.RequestID, &cached{r: r})
	}
	if err := it.Error(); err != nil {
		c.complete = false
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// clone returns a copy of r that can be changed without changing r: the
// Seen bits are copied; Tasks and Attributes, which the fold never
// changes, are shared.
func (r *Request) clone() *Request {
	c := *r
	c.Seen = slices.Clone(r.Seen)
	return &c
}

// lookup returns the entry of id in the overlay, else in the committed
// cache; nil when neither has it.
func (t *Txn) lookup(id string) *cached {
	if e, ok := t.reqs[id]; ok {
		return e
	}
	return t.p.cache.get(id)
}

// own returns the overlay's entry of id, copied from the committed cache
// when only that has it; nil when neither has it.
func (t *Txn) own(id string) *cached {
	if e, ok := t.reqs[id]; ok {
		return e
	}
	c := t.p.cache.get(id)
	if c == nil {
		return nil
	}
	e := &cached{r: c.r, known: c.known}
	if c.answers != nil {
		// Room for all: the answers still to come are added in place.
		e.answers = append(make([]Answer, 0, max(len(c.r.Tasks), len(c.answers))), c.answers...)
	}
	t.setEntry(id, e)
	return e
}

func (t *Txn) setEntry(id string, e *cached) {
	if t.reqs == nil {
		t.reqs = map[string]*cached{}
	}
	t.reqs[id] = e
}

// addAnswer puts a into answers, which are in task order, in place of an
// answer of the same task.
func addAnswer(answers []Answer, a Answer) []Answer {
	i, found := slices.BinarySearchFunc(answers, a.Index, func(x Answer, ix int32) int { return cmp.Compare(x.Index, ix) })
	if found {
		answers[i] = a
		return answers
	}
	return slices.Insert(answers, i, a)
}
