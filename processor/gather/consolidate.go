package gather

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"

	"github.com/scattergather/scattergather/processor/payload"
	"github.com/scattergather/scattergather/processor/topology"
)

// Input is one OK answer given to a consolidation.
type Input struct {
	TaskID  string
	Target  string
	Item    int32 // -1 for a static fan-out
	Payload []byte
}

// Consolidator builds a request's result from its OK answers.
// Implementations must be deterministic and safe for concurrent use.
type Consolidator interface {
	// Check validates an OK answer when it arrives. An error makes the
	// answer a failed answer of its target, with the error as reason.
	Check(payload []byte) error
	// Consolidate returns the result as JSON from the OK answers, in target
	// order (the order of the manifest's tasks), which breaks ties. An error
	// makes the aggregate failed, with the error as reason.
	Consolidate(answers []Input) (json.RawMessage, error)
}

// ConsolidatorFunc adapts a function to Consolidator; its Check accepts any
// valid JSON payload.
type ConsolidatorFunc func(answers []Input) (json.RawMessage, error)

// Check requires valid JSON.
func (f ConsolidatorFunc) Check(b []byte) error {
	_, err := payload.Parse(b)
	return err
}

// Consolidate calls f.
func (f ConsolidatorFunc) Consolidate(answers []Input) (json.RawMessage, error) { return f(answers) }

var (
	registryMu sync.RWMutex
	registry   = map[string]func(topology.Consolidate) (Consolidator, error){}
)

// Register makes a custom consolidator available to topologies as
// consolidate.type: name. It panics if name is registered twice or is a
// built-in name; call it from an init function.
func Register(name string, build func(topology.Consolidate) (Consolidator, error)) {
	registryMu.Lock()
	defer registryMu.Unlock()
	switch name {
	case topology.ConsolidateCollect, topology.ConsolidateMin, topology.ConsolidateMax,
		topology.ConsolidateVote, topology.ConsolidateMerge, topology.ConsolidateSum:
		panic("gather: Register of built-in consolidation " + name)
	}
	if _, dup := registry[name]; dup {
		panic("gather: Register called twice for " + name)
	}
	registry[name] = build
}

// ConsolidatorFor builds the consolidation a flow's topology names.
func ConsolidatorFor(c topology.Consolidate) (Consolidator, error) {
	switch c.Type {
	case topology.ConsolidateCollect:
		return Collect(), nil
	case topology.ConsolidateMin:
		return MinBy(c.Field), nil
	case topology.ConsolidateMax:
		return MaxBy(c.Field), nil
	case topology.ConsolidateVote:
		return Vote(c.Field), nil
	case topology.ConsolidateSum:
		return Sum(c.Field), nil
	case topology.ConsolidateMerge:
		return Merge(c.Path, c.Key, c.Sort, c.Order == "asc", c.Top), nil
	}
	registryMu.RLock()
	build, ok := registry[c.Type]
	registryMu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("gather: unknown consolidation %q: register it with gather.Register", c.Type)
	}
	return build(c)
}

func marshal(v any) (json.RawMessage, error) {
	b, err := payload.Marshal(v)
	return json.RawMessage(b), err
}

// answerOut is how consolidations show one answer in their result.
type answerOut struct {
	Target string          `json:"target"`
	TaskID string          `json:"task_id"`
	Item   *int32          `json:"item,omitempty"`
	Value  json.RawMessage `json:"value"`
}

func itemPtr(i int32) *int32 {
	if i < 0 {
		return nil
	}
	return &i
}

// compact re-encodes a JSON payload without insignificant space, so that
// results do not depend on a provider's formatting.
func compact(b []byte) (json.RawMessage, error) {
	v, err := payload.Parse(b)
	if err != nil {
		return nil, err
	}
	return marshal(v)
}

// Collect returns every OK answer: {"answers":[{"target","task_id","value"}]}.
func Collect() Consolidator {
	return ConsolidatorFunc(func(in []Input) (json.RawMessage, error) {
		out := struct {
			Answers []answerOut `json:"answers"`
		}{Answers: make([]answerOut, 0, len(in))}
		for _, a := range in {
			v, err := compact(a.Payload)
			if err != nil {
				return nil, fmt.Errorf("target %s: %w", a.Target, err)
			}
			out.Answers = append(out.Answers, answerOut{Target: a.Target, TaskID: a.TaskID, Item: itemPtr(a.Item), Value: v})
		}
		return marshal(out)
	})
}

type fieldCheck struct {
	check func(doc any) error
}

func (f fieldCheck) Check(b []byte) error {
	doc, err := payload.Parse(b)
	if err != nil {
		return err
	}
	return f.check(doc)
}

type extreme struct {
	fieldCheck
	field string
	max   bool
}

// MinBy returns the answer with the smallest number at field:
// {"target","task_id","value":<number>,"answer":<payload>}. Ties go to the
// earlier target. With no OK answer the result is null.
func MinBy(field string) Consolidator { return newExtreme(field, false) }

// MaxBy is MinBy for the largest number.
func MaxBy(field string) Consolidator { return newExtreme(field, true) }

func newExtreme(field string, max bool) Consolidator {
	return &extreme{
		fieldCheck: fieldCheck{check: func(doc any) error { _, _, err := payload.Number(doc, field); return err }},
		field:      field, max: max,
	}
}

func (e *extreme) Consolidate(in []Input) (json.RawMessage, error) {
	best, bestDoc := -1, any(nil)
	var bestNum json.Number
	var bestVal float64
	for i, a := range in {
		doc, err := payload.Parse(a.Payload)
		if err != nil {
			return nil, fmt.Errorf("target %s: %w", a.Target, err)
		}
		n, f, err := payload.Number(doc, e.field)
		if err != nil {
			return nil, fmt.Errorf("target %s: %w", a.Target, err)
		}
		if best < 0 || (e.max && f > bestVal) || (!e.max && f < bestVal) {
			best, bestDoc, bestNum, bestVal = i, doc, n, f
		}
	}
	if best < 0 {
		return json.RawMessage("null"), nil
	}
	answer, err := marshal(bestDoc)
	if err != nil {
		return nil, err
	}
	return marshal(struct {
		Target string          `json:"target"`
		TaskID string          `json:"task_id"`
		Item   *int32          `json:"item,omitempty"`
		Value  json.Number     `json:"value"`
		Answer json.RawMessage `json:"answer"`
	}{in[best].Target, in[best].TaskID, itemPtr(in[best].Item), bestNum, answer})
}

type vote struct {
	fieldCheck
	field string
}

// Vote returns the most frequent value at field among the OK answers, with
// its agreement: {"value","votes","voters","agreement","tally":[...]}.
// Values are compared as canonical JSON; a tie goes to the value first seen
// in target order.
func Vote(field string) Consolidator {
	return &vote{
		fieldCheck: fieldCheck{check: func(doc any) error { _, err := payload.Lookup(doc, field); return err }},
		field:      field,
	}
}

type tallyEntry struct {
	Value   json.RawMessage `json:"value"`
	Votes   int             `json:"votes"`
	Targets []string        `json:"targets"`
}

func (v *vote) Consolidate(in []Input) (json.RawMessage, error) {
	var tally []*tallyEntry
	index := map[string]*tallyEntry{}
	for _, a := range in {
		doc, err := payload.Parse(a.Payload)
		if err != nil {
			return nil, fmt.Errorf("target %s: %w", a.Target, err)
		}
		val, err := payload.Lookup(doc, v.field)
		if err != nil {
			return nil, fmt.Errorf("target %s: %w", a.Target, err)
		}
		canon, err := marshal(val)
		if err != nil {
			return nil, err
		}
		e, ok := index[string(canon)]
		if !ok {
			e = &tallyEntry{Value: canon}
			index[string(canon)] = e
			tally = append(tally, e)
		}
		e.Votes++
		e.Targets = append(e.Targets, a.Target)
	}
	if len(tally) == 0 {
		return json.RawMessage("null"), nil
	}
	// Stable: equal votes keep first-seen (target) order.
	slices.SortStableFunc(tally, func(a, b *tallyEntry) int { return cmp.Compare(b.Votes, a.Votes) })
	win := tally[0]
	agreement, _ := strconv.ParseFloat(strconv.FormatFloat(float64(win.Votes)/float64(len(in)), 'f', 4, 64), 64)
	return marshal(struct {
		Value     json.RawMessage `json:"value"`
		Votes     int             `json:"votes"`
		Voters    int             `json:"voters"`
		Agreement float64         `json:"agreement"`
		Tally     []*tallyEntry   `json:"tally"`
	}{win.Value, win.Votes, len(in), agreement, tally})
}

type sum struct {
	fieldCheck
	field string
}

// Sum adds the numbers at field over the OK answers: {"sum","count"}.
func Sum(field string) Consolidator {
	return &sum{
		fieldCheck: fieldCheck{check: func(doc any) error { _, _, err := payload.Number(doc, field); return err }},
		field:      field,
	}
}

func (s *sum) Consolidate(in []Input) (json.RawMessage, error) {
	var total float64
	for _, a := range in {
		doc, err := payload.Parse(a.Payload)
		if err != nil {
			return nil, fmt.Errorf("target %s: %w", a.Target, err)
		}
		_, f, err := payload.Number(doc, s.field)
		if err != nil {
			return nil, fmt.Errorf("target %s: %w", a.Target, err)
		}
		total += f
	}
	return marshal(struct {
		Sum   json.Number `json:"sum"`
		Count int         `json:"count"`
	}{json.Number(strconv.FormatFloat(total, 'g', -1, 64)), len(in)})
}

type merge struct {
	path, key, sort string
	asc             bool
	top             int
}

// Merge concatenates the lists at path of the OK answers, in target order;
// sorts them by the number at sort (descending unless asc; stable, so ties
// keep target order) when sort is set; keeps the first item of each key
// when key is set; and keeps the first top items when top > 0:
// {"items":[...],"count":n,"total":m} where total counts items before the
// cut.
func Merge(path, key, sort string, asc bool, top int) Consolidator {
	return &merge{path: path, key: key, sort: sort, asc: asc, top: top}
}

type mergeItem struct {
	v     any
	score float64
}

func (m *merge) items(doc any) ([]mergeItem, error) {
	list, err := payload.Array(doc, m.path)
	if err != nil {
		return nil, err
	}
	out := make([]mergeItem, len(list))
	for i, it := range list {
		out[i].v = it
		if m.key != "" {
			if _, err := payload.Lookup(it, m.key); err != nil {
				return nil, fmt.Errorf("%s[%d]: %w", m.path, i, err)
			}
		}
		if m.sort != "" {
			_, f, err := payload.Number(it, m.sort)
			if err != nil {
				return nil, fmt.Errorf("%s[%d]: %w", m.path, i, err)
			}
			out[i].score = f
		}
	}
	return out, nil
}

func (m *merge) Check(b []byte) error {
	doc, err := payload.Parse(b)
	if err != nil {
		return err
	}
	_, err = m.items(doc)
	return err
}

func (m *merge) Consolidate(in []Input) (json.RawMessage, error) {
	var all []mergeItem
	for _, a := range in {
		doc, err := payload.Parse(a.Payload)
		if err != nil {
			return nil, fmt.Errorf("target %s: %w", a.Target, err)
		}
		items, err := m.items(doc)
		if err != nil {
			return nil, fmt.Errorf("target %s: %w", a.Target, err)
		}
		all = append(all, items...)
	}
	if m.sort != "" {
		slices.SortStableFunc(all, func(a, b mergeItem) int {
			if m.asc {
				return cmp.Compare(a.score, b.score)
			}
			return cmp.Compare(b.score, a.score)
		})
	}
	out := make([]any, 0, len(all))
	seen := map[string]bool{}
	for _, it := range all {
		if m.key != "" {
			k, _ := payload.Lookup(it.v, m.key)
			kb, err := marshal(k)
			if err != nil {
				return nil, err
			}
			if seen[string(kb)] {
				continue
			}
			seen[string(kb)] = true
		}
		out = append(out, it.v)
	}
	total := len(out)
	if m.top > 0 && len(out) > m.top {
		out = out[:m.top]
	}
	return marshal(struct {
		Items []any `json:"items"`
		Count int   `json:"count"`
		Total int   `json:"total"`
	}{out, len(out), total})
}
