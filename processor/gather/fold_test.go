package gather_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/scattergather/scattergather/processor/gather"
	"github.com/scattergather/scattergather/processor/topology"
	"github.com/scattergather/scattergather/schemas"
	"github.com/scattergather/scattergather/store"
)

// harness folds hand-made records through a Partition on an in-memory store.
type harness struct {
	t      *testing.T
	flow   *topology.Flow
	db     *store.DB
	part   *gather.Partition
	offset int64
	out    []gather.Output
}

func flowConfig(t *testing.T, strategy, consolidate string) *topology.Flow {
	t.Helper()
	doc := fmt.Sprintf(`
flows:
  - name: f
    timeout: 1s
    targets: [{name: a}, {name: b}, {name: c}]
    strategy: %s
    consolidate: %s
`, strategy, consolidate)
	topo, err := topology.Parse("test.yaml", []byte(doc), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("topology: %v", err)
	}
	return topo.Flows[0]
}

func newHarness(t *testing.T, flow *topology.Flow) *harness {
	t.Helper()
	return newHarnessAt(t, flow, store.Position{})
}

// newHarnessAt is newHarness with a fold that starts at start, as a
// rebuild does.
func newHarnessAt(t *testing.T, flow *topology.Flow, start store.Position) *harness {
	t.Helper()
	db, err := store.Open("", store.WithFS(vfs.NewMem()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f, err := gather.NewFlow(flow, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, flow: flow, db: db, offset: start.Next}
	h.part = f.NewPartition(0, db.Partition(0), start)
	return h
}

func (h *harness) apply(ms int64, v any) {
	h.t.Helper()
	var b []byte
	switch v := v.(type) {
	case []byte:
		b = v
	default:
		var err error
		if b, err = schemas.Encode(v); err != nil {
			h.t.Fatal(err)
		}
	}
	err := h.part.Apply(gather.Record{Offset: h.offset, TimeMs: ms, Value: b}, func(o gather.Output) { h.out = append(h.out, o) })
	if err != nil {
		h.t.Fatalf("apply at offset %d: %v", h.offset, err)
	}
	h.offset++
}

func (h *harness) manifest(ms int64, id string, strategy string, quorum, maxFailures int32, targets ...string) {
	h.t.Helper()
	m := &schemas.Manifest{RequestID: id, Flow: h.flow.Name, Strategy: strategy, Quorum: quorum, MaxFailures: maxFailures, TimeoutMs: 1000}
	for _, tg := range targets {
		m.Tasks = append(m.Tasks, schemas.TaskRef{TaskID: id + "/" + tg, Target: tg, Item: -1})
	}
	h.apply(ms, m)
}

func (h *harness) ok(ms int64, id, target, payload string) {
	h.t.Helper()
	h.apply(ms, &schemas.Result{RequestID: id, Flow: h.flow.Name, TaskID: id + "/" + target, Target: target, Item: -1,
		Status: schemas.StatusOK, Payload: []byte(payload), Attempts: 1})
}

func (h *harness) fail(ms int64, id, target, reason string) {
	h.t.Helper()
	h.apply(ms, &schemas.Result{RequestID: id, Flow: h.flow.Name, TaskID: id + "/" + target, Target: target, Item: -1,
		Status: schemas.StatusError, Error: reason, Attempts: 1})
}

func (h *harness) tick(ms int64) { h.t.Helper(); h.apply(ms, &schemas.Tick{SentMs: ms}) }

func (h *harness) aggregates() []*schemas.Aggregate {
	var out []*schemas.Aggregate
	for _, o := range h.out {
		if o.Kind == gather.ToAggregated {
			out = append(out, o.Aggregate)
		}
	}
	return out
}

func (h *harness) only() *schemas.Aggregate {
	h.t.Helper()
	aggs := h.aggregates()
	if len(aggs) != 1 {
		h.t.Fatalf("want 1 aggregate, have %d: %+v", len(aggs), aggs)
	}
	return aggs[0]
}

func targets(as []schemas.Answer) string {
	var s []string
	for _, a := range as {
		s = append(s, a.Target)
	}
	return strings.Join(s, ",")
}

func missing(ts []schemas.TaskRef) string {
	var s []string
	for _, t := range ts {
		s = append(s, t.Target)
	}
	return strings.Join(s, ",")
}

func TestAllCompletesWhenEveryTaskAnswered(t *testing.T) {
	h := newHarness(t, flowConfig(t, "{type: all}", "{type: min, field: price}"))
	h.manifest(1000, "r1", "all", 0, -1, "a", "b", "c")
	h.ok(1010, "r1", "a", `{"price": 30}`)
	h.fail(1020, "r1", "b", "provider down")
	if n := len(h.aggregates()); n != 0 {
		t.Fatalf("aggregate before every task answered: %d", n)
	}
	h.ok(1030, "r1", "c", `{"price": 20.5, "airline": "X"}`)
	agg := h.only()
	if agg.Outcome != schemas.OutcomeComplete {
		t.Errorf("outcome %s, want complete", agg.Outcome)
	}
	if got, want := string(agg.Result), `{"target":"c","task_id":"r1/c","value":20.5,"answer":{"airline":"X","price":20.5}}`; got != want {
		t.Errorf("result\n got %s\nwant %s", got, want)
	}
	if targets(agg.Answered) != "a,c" || targets(agg.Failed) != "b" || len(agg.Missing) != 0 {
		t.Errorf("answered %s failed %s missing %s", targets(agg.Answered), targets(agg.Failed), missing(agg.Missing))
	}
	if agg.OpenedMs != 1000 || agg.DeadlineMs != 2000 || agg.CompletedMs != 1030 || agg.Answered[1].LatencyMs != 30 {
		t.Errorf("times: opened %d deadline %d completed %d latency %d", agg.OpenedMs, agg.DeadlineMs, agg.CompletedMs, agg.Answered[1].LatencyMs)
	}
	if h.out[len(h.out)-1].TimeMs != 1030 {
		t.Errorf("aggregate record time %d, want the completion stream time 1030", h.out[len(h.out)-1].TimeMs)
	}
}

func TestDeadlineBoundary(t *testing.T) {
	for _, tc := range []struct {
		name       string
		at         int64
		wantCounts bool
	}{
		{"just before", 1999, true},
		{"at the deadline", 2000, true},
		{"just after", 2001, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, flowConfig(t, "{type: all}", "{type: collect}"))
			h.manifest(1000, "r1", "all", 0, -1, "a", "b")
			h.ok(1100, "r1", "a", `{"v":1}`)
			h.ok(tc.at, "r1", "b", `{"v":2}`)
			if !tc.wantCounts {
				h.tick(5000)
			}
			agg := h.only()
			var late int
			for _, o := range h.out {
				if o.Kind == gather.ToLate {
					late++
				}
			}
			if tc.wantCounts {
				if agg.Outcome != schemas.OutcomeComplete || late != 0 {
					t.Errorf("outcome %s late %d, want complete and 0", agg.Outcome, late)
				}
				return
			}
			if agg.Outcome != schemas.OutcomeTimeout || missing(agg.Missing) != "b" || late != 1 {
				t.Errorf("outcome %s missing %q late %d, want timeout, b, 1", agg.Outcome, missing(agg.Missing), late)
			}
			if agg.CompletedMs != tc.at {
				t.Errorf("completed at %d, want the stream time that passed the deadline (%d)", agg.CompletedMs, tc.at)
			}
		})
	}
}

func TestDuplicateResultCountedOnce(t *testing.T) {
	h := newHarness(t, flowConfig(t, "{type: all}", "{type: sum, field: n}"))
	h.manifest(1000, "r1", "all", 0, -1, "a", "b")
	h.ok(1010, "r1", "a", `{"n": 2}`)
	h.ok(1011, "r1", "a", `{"n": 2}`)
	h.ok(1012, "r1", "b", `{"n": 3}`)
	agg := h.only()
	if string(agg.Result) != `{"sum":5,"count":2}` || agg.Duplicates != 1 {
		t.Errorf("result %s duplicates %d, want sum 5 over 2 and 1 duplicate", agg.Result, agg.Duplicates)
	}
}

func TestSecondManifestIgnored(t *testing.T) {
	h := newHarness(t, flowConfig(t, "{type: all}", "{type: collect}"))
	h.manifest(1000, "r1", "all", 0, -1, "a")
	h.manifest(1001, "r1", "all", 0, -1, "a")
	h.ok(1010, "r1", "a", `{}`)
	h.manifest(1020, "r1", "all", 0, -1, "a")
	h.tick(9000)
	if n := len(h.aggregates()); n != 1 {
		t.Fatalf("%d aggregates, want 1", n)
	}
	if h.part.Stats.DuplicateManifests != 2 {
		t.Errorf("duplicate manifests %d, want 2", h.part.Stats.DuplicateManifests)
	}
}

func TestUnconsolidatablePayloadIsAFailedAnswer(t *testing.T) {
	h := newHarness(t, flowConfig(t, "{type: all}", "{type: min, field: price}"))
	h.manifest(1000, "r1", "all", 0, -1, "a", "b", "c")
	h.ok(1010, "r1", "a", `not json`)
	h.ok(1011, "r1", "b", `{"cost": 1}`)
	h.ok(1012, "r1", "c", `{"price": "cheap"}`)
	agg := h.only()
	if targets(agg.Failed) != "a,b,c" || string(agg.Result) != "null" {
		t.Fatalf("failed %s result %s", targets(agg.Failed), agg.Result)
	}
	for _, f := range agg.Failed {
		if !strings.HasPrefix(f.Error, "cannot consolidate: ") {
			t.Errorf("%s: reason %q", f.Target, f.Error)
		}
	}
}

func TestLateAndDeadLetter(t *testing.T) {
	h := newHarness(t, flowConfig(t, "{type: all}", "{type: collect}"))
	h.ok(1000, "nope", "a", `{}`)
	h.apply(1001, []byte("garbage"))
	h.manifest(1002, "r1", "all", 0, -1, "a")
	h.ok(1003, "r1", "a", `{}`)
	h.ok(1004, "r1", "a", `{}`)
	var kinds []string
	for _, o := range h.out {
		kinds = append(kinds, fmt.Sprintf("%d@%d", o.Kind, o.Offset))
	}
	// late (unknown), dead letter, aggregate, late (closed)
	want := fmt.Sprintf("%d@0 %d@1 %d@0 %d@4", gather.ToLate, gather.ToDeadLetter, gather.ToAggregated, gather.ToLate)
	if got := strings.Join(kinds, " "); got != want {
		t.Errorf("outputs %s, want %s", got, want)
	}
}

func TestAbortRestoresCommittedState(t *testing.T) {
	h := newHarness(t, flowConfig(t, "{type: all}", "{type: collect}"))
	h.manifest(1000, "r1", "all", 0, -1, "a", "b")
	if err := h.part.Commit(); err != nil {
		t.Fatal(err)
	}
	h.ok(1010, "r1", "a", `{"x":1}`)
	h.ok(1020, "r1", "b", `{"x":2}`)
	if len(h.aggregates()) != 1 {
		t.Fatal("no aggregate")
	}
	h.part.Abort()
	h.out = nil
	// The rewind re-delivers the same records: the aggregate comes again.
	h.offset = 1
	h.ok(1010, "r1", "a", `{"x":1}`)
	h.ok(1020, "r1", "b", `{"x":2}`)
	agg := h.only()
	var v struct{ Answers []json.RawMessage }
	if err := json.Unmarshal(agg.Result, &v); err != nil || len(v.Answers) != 2 || agg.Duplicates != 0 {
		t.Fatalf("after abort and re-read: %s duplicates %d (%v)", agg.Result, agg.Duplicates, err)
	}
}
