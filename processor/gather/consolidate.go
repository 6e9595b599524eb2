package gather

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"

	"github.com/cockroachdb/apd/v3"

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
// Implementations must be deterministic and safe for concurrent use, and
// must not change the payloads they are given: the fold keeps them in
// memory, and folds them again when its transaction aborts.
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
// consolidate.type: name. It also registers name with the topology package,
// so that loading a topology (run, validate) calls build for each flow that
// names it and reports its error at flows[i].consolidate, and reports any
// other unknown type at flows[i].consolidate.type. It panics if name is
// registered twice or is a built-in name; call it from an init function,
// before any topology is loaded.
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
	topology.RegisterConsolidation(name, func(c topology.Consolidate) error {
		_, err := build(c)
		return err
	})
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
// {"target","task_id","value":<number>,"answer":<payload>}. Numbers compare
// exactly as decimals (9007199254740993 > 9007199254740992, 1 == 1.0);
// value is written as the winning answer wrote it. Ties go to the earlier
// target. With no OK answer the result is null.
func MinBy(field string) Consolidator { return newExtreme(field, false) }

// MaxBy is MinBy for the largest number.
func MaxBy(field string) Consolidator { return newExtreme(field, true) }

func newExtreme(field string, max bool) Consolidator {
	return &extreme{
		fieldCheck: fieldCheck{check: func(doc any) error { _, _, err := numberAt(doc, field); return err }},
		field:      field, max: max,
	}
}

func (e *extreme) Consolidate(in []Input) (json.RawMessage, error) {
	best, bestDoc := -1, any(nil)
	var bestNum json.Number
	var bestVal *apd.Decimal
	for i, a := range in {
		doc, err := payload.Parse(a.Payload)
		if err != nil {
			return nil, fmt.Errorf("target %s: %w", a.Target, err)
		}
		n, d, err := numberAt(doc, e.field)
		if err != nil {
			return nil, fmt.Errorf("target %s: %w", a.Target, err)
		}
		// Strictly better only: a tie keeps the earlier target.
		if best < 0 || (e.max && d.Cmp(bestVal) > 0) || (!e.max && d.Cmp(bestVal) < 0) {
			best, bestDoc, bestNum, bestVal = i, doc, n, d
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
// Values are grouped by what they mean: numbers by numeric value, exactly
// as decimals (1, 1.0 and 1e0 are one value), strings by their exact
// characters, objects whatever the order of their keys. Each value is
// written as the first answer of its group, in target order, wrote it. A
// tie goes to the value first seen in target order.
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
		key, err := valueKey(val)
		if err != nil {
			return nil, err
		}
		e, ok := index[key]
		if !ok {
			shown, err := marshal(val)
			if err != nil {
				return nil, err
			}
			e = &tallyEntry{Value: shown}
			index[key] = e
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

// maxSumDigits bounds the significant digits of a sum. A sum that needs
// more (1e500 + 1e-500) fails the aggregate rather than being rounded.
const maxSumDigits = 1000

// sumContext adds exactly: Inexact is trapped, so a sum that would be
// rounded is an error; exponents beyond ±100000 are errors too.
var sumContext = apd.Context{
	Precision:   maxSumDigits,
	MaxExponent: apd.MaxExponent,
	MinExponent: apd.MinExponent,
	Traps:       apd.DefaultTraps | apd.Inexact,
}

// errSumNotExact fails an aggregate whose sum needs more than maxSumDigits.
var errSumNotExact = fmt.Errorf("gather: sum needs more than %d significant digits: not exact", maxSumDigits)

// Sum adds the numbers at field over the OK answers: {"sum","count"}. The
// numbers are added exactly as decimals (0.1 + 0.2 is 0.3, 1e308 + 1e308 is
// 2E+308), and the sum is written as a JSON number without trailing zeros:
// in plain notation unless it is very large (from 1e21) or very small
// (below 1e-7), then in exponent notation (2E+308). A sum that needs more
// than 1000 significant digits fails the aggregate.
func Sum(field string) Consolidator {
	return &sum{
		fieldCheck: fieldCheck{check: func(doc any) error { _, _, err := numberAt(doc, field); return err }},
		field:      field,
	}
}

func (s *sum) Consolidate(in []Input) (json.RawMessage, error) {
	var total apd.Decimal
	for _, a := range in {
		doc, err := payload.Parse(a.Payload)
		if err != nil {
			return nil, fmt.Errorf("target %s: %w", a.Target, err)
		}
		_, d, err := numberAt(doc, s.field)
		if err != nil {
			return nil, fmt.Errorf("target %s: %w", a.Target, err)
		}
		if err := addExact(&total, d); err != nil {
			return nil, fmt.Errorf("target %s: %w", a.Target, err)
		}
	}
	return marshal(struct {
		Sum   json.Number `json:"sum"`
		Count int         `json:"count"`
	}{decimalJSON(&total), len(in)})
}

// addExact adds d to total exactly, leaving total reduced (no trailing
// zeros). Both reduced and non-zero, exponents further apart than
// maxSumDigits+1 make a sum of more than maxSumDigits digits whose last
// digit is not zero: refused before the costly alignment.
func addExact(total, d *apd.Decimal) error {
	var x apd.Decimal
	x.Reduce(d)
	if !total.IsZero() && !x.IsZero() {
		gap := int64(total.Exponent) - int64(x.Exponent)
		if gap > maxSumDigits+1 || -gap > maxSumDigits+1 {
			return errSumNotExact
		}
	}
	if res, err := sumContext.Add(total, total, &x); err != nil {
		if res&apd.Inexact != 0 {
			return errSumNotExact
		}
		return fmt.Errorf("gather: sum out of range: %w", err)
	}
	total.Reduce(total)
	return nil
}

// decimalJSON writes a finite decimal as a JSON number: zero as 0, plain
// notation for ordinary magnitudes (1e-7 <= |d| < 1e21), else exponent
// notation (2E+308, 1.5E-9), both valid JSON. d is reduced first, so no
// trailing zeros are written.
func decimalJSON(d *apd.Decimal) json.Number {
	var r apd.Decimal
	r.Reduce(d)
	if r.IsZero() {
		return "0"
	}
	adjusted := r.NumDigits() + int64(r.Exponent) - 1
	if adjusted >= -7 && adjusted < 21 {
		return json.Number(r.Text('f'))
	}
	return json.Number(r.Text('E'))
}

// numberAt returns the number at path in doc as written and as an exact
// decimal. A value that is not a number, or a number whose exponent is
// beyond ±100000, is payload.ErrType.
func numberAt(doc any, path string) (json.Number, *apd.Decimal, error) {
	v, err := payload.Lookup(doc, path)
	if err != nil {
		return "", nil, err
	}
	n, ok := v.(json.Number)
	if !ok {
		return "", nil, fmt.Errorf("%w: %s is %s, want a number", payload.ErrType, path, payload.TypeName(v))
	}
	d, ok := parseDecimal(n)
	if !ok {
		return "", nil, fmt.Errorf("%w: %s: number out of range (exponent beyond ±%d)", payload.ErrType, path, apd.MaxExponent)
	}
	return n, d, nil
}

// parseDecimal reads a JSON number exactly; ok is false when its exponent
// is beyond what a decimal holds.
func parseDecimal(n json.Number) (*apd.Decimal, bool) {
	d, _, err := apd.NewFromString(string(n))
	if err != nil || d.Form != apd.Finite {
		return nil, false
	}
	return d, true
}

// valueKey is a parsed JSON value in a form where equal values give equal
// strings: object keys sorted, numbers by numeric value (1, 1.0, 10e-1 and
// 1e0 alike), strings, booleans and null as JSON writes them.
func valueKey(v any) (string, error) {
	b, err := marshal(canonical(v))
	return string(b), err
}

// canonical returns v with every number replaced by one spelling of its
// value: the reduced coefficient and exponent ("1e0", "-25e-2"). A number
// beyond a decimal's range keeps its spelling.
func canonical(v any) any {
	switch v := v.(type) {
	case json.Number:
		d, ok := parseDecimal(v)
		if !ok {
			return v
		}
		var r apd.Decimal
		r.Reduce(d)
		if r.IsZero() {
			return json.Number("0e0")
		}
		sign := ""
		if r.Negative {
			sign = "-"
		}
		return json.Number(sign + r.Coeff.String() + "e" + strconv.Itoa(int(r.Exponent)))
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = canonical(e)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = canonical(e)
		}
		return out
	}
	return v
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
// cut. Sort numbers compare exactly as decimals, and keys are compared as
// Vote compares values (1 and 1.0 are one key).
func Merge(path, key, sort string, asc bool, top int) Consolidator {
	return &merge{path: path, key: key, sort: sort, asc: asc, top: top}
}

type mergeItem struct {
	v     any
	score *apd.Decimal
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
			_, d, err := numberAt(it, m.sort)
			if err != nil {
				return nil, fmt.Errorf("%s[%d]: %w", m.path, i, err)
			}
			out[i].score = d
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
				return a.score.Cmp(b.score)
			}
			return b.score.Cmp(a.score)
		})
	}
	out := make([]any, 0, len(all))
	seen := map[string]bool{}
	for _, it := range all {
		if m.key != "" {
			k, _ := payload.Lookup(it.v, m.key)
			kb, err := valueKey(k)
			if err != nil {
				return nil, err
			}
			if seen[kb] {
				continue
			}
			seen[kb] = true
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
