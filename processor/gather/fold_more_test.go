package gather_test

import (
	"bytes"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/scattergather/scattergather/processor/gather"
	"github.com/scattergather/scattergather/processor/topology"
	"github.com/scattergather/scattergather/schemas"
	"github.com/scattergather/scattergather/store"
)

// flowWith parses a flow f with targets a, b, c, a 1s timeout and the
// extra keys given (YAML at the flow's indentation).
func flowWith(t *testing.T, extra string) *topology.Flow {
	t.Helper()
	doc := "flows:\n  - name: f\n    timeout: 1s\n    targets: [{name: a}, {name: b}, {name: c}]\n" + extra
	topo, err := topology.Parse("test.yaml", []byte(doc), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("topology: %v", err)
	}
	return topo.Flows[0]
}

// outputs lists the outputs as kind@offset, with the reason of late and
// dead-letter records.
func (h *harness) outputs() []string {
	var s []string
	for _, o := range h.out {
		switch o.Kind {
		case gather.ToAggregated:
			s = append(s, fmt.Sprintf("aggregate %s %s", o.Key, o.Aggregate.Outcome))
		case gather.ToLate:
			s = append(s, fmt.Sprintf("late@%d: %s", o.Offset, o.Reason))
		case gather.ToDeadLetter:
			s = append(s, fmt.Sprintf("dead@%d: %s", o.Offset, o.Reason))
		}
	}
	return s
}

func (h *harness) wantOutputs(want ...string) {
	h.t.Helper()
	got := h.outputs()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		h.t.Errorf("outputs:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func (h *harness) result(ms int64, r *schemas.Result) {
	h.t.Helper()
	if r.Flow == "" {
		r.Flow = h.flow.Name
	}
	if r.Status == "" {
		r.Status = schemas.StatusOK
	}
	h.apply(ms, r)
}

func TestFirstStrategyInFold(t *testing.T) {
	h := newHarness(t, flowConfig(t, "{type: first}", "{type: collect}"))
	h.manifest(1000, "r1", "first", 0, -1, "a", "b", "c")
	h.fail(1010, "r1", "a", "down")
	h.wantOutputs()
	h.ok(1020, "r1", "b", `{"v":"b"}`)
	h.ok(1030, "r1", "c", `{"v":"c"}`)
	h.fail(1040, "r1", "a", "down again")
	h.wantOutputs(
		"aggregate r1 first",
		"late@3: request already completed",
		"late@4: request already completed",
	)
	agg := h.aggregates()[0]
	if targets(agg.Answered) != "b" || targets(agg.Failed) != "a" || missing(agg.Missing) != "c" || agg.CompletedMs != 1020 {
		t.Errorf("answered %s failed %s missing %s completed %d", targets(agg.Answered), targets(agg.Failed), missing(agg.Missing), agg.CompletedMs)
	}
	if string(agg.Result) != `{"answers":[{"target":"b","task_id":"r1/b","value":{"v":"b"}}]}` {
		t.Errorf("result %s", agg.Result)
	}

	// Every task failed: failed, at the last failure.
	h = newHarness(t, flowConfig(t, "{type: first}", "{type: collect}"))
	h.manifest(1000, "r2", "first", 0, -1, "a", "b")
	h.fail(1010, "r2", "a", "x")
	h.fail(1020, "r2", "b", "y")
	agg = h.only()
	if agg.Outcome != schemas.OutcomeFailed || agg.Reason != "all 2 tasks failed" || agg.CompletedMs != 1020 {
		t.Errorf("outcome %s reason %q completed %d", agg.Outcome, agg.Reason, agg.CompletedMs)
	}
}

func TestQuorumMajorityInFold(t *testing.T) {
	for _, tc := range []struct {
		name    string
		steps   func(h *harness)
		outcome schemas.Outcome
		reason  string
		at      int64
	}{
		{"two OK of three", func(h *harness) {
			h.ok(1010, "r1", "a", `{"price":3}`)
			h.fail(1020, "r1", "b", "down")
			h.ok(1030, "r1", "c", `{"price":2}`)
		}, schemas.OutcomeQuorum, "", 1030},
		{"unreachable after two failures", func(h *harness) {
			h.fail(1010, "r1", "a", "down")
			h.fail(1020, "r1", "b", "down")
		}, schemas.OutcomeFailed, "a quorum of 2 OK answers can no longer be reached (0 OK, 2 failed of 3)", 1020},
		{"deadline one short", func(h *harness) {
			h.ok(1010, "r1", "a", `{"price":3}`)
			h.tick(2001)
		}, schemas.OutcomeTimeout, "1 of the 2 OK answers needed before the deadline", 2001},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, flowConfig(t, "{type: quorum, quorum: majority}", "{type: min, field: price}"))
			h.manifest(1000, "r1", "quorum", 2, -1, "a", "b", "c")
			tc.steps(h)
			agg := h.only()
			if agg.Outcome != tc.outcome || agg.Reason != tc.reason || agg.CompletedMs != tc.at {
				t.Errorf("outcome %s reason %q completed %d, want %s %q %d", agg.Outcome, agg.Reason, agg.CompletedMs, tc.outcome, tc.reason, tc.at)
			}
		})
	}
}

func TestTimeoutStrategyInFold(t *testing.T) {
	t.Run("deadline with what arrived", func(t *testing.T) {
		h := newHarness(t, flowConfig(t, "{type: timeout}", "{type: sum, field: n}"))
		h.manifest(1000, "r1", "timeout", 0, -1, "a", "b", "c")
		h.ok(1100, "r1", "a", `{"n": 2}`)
		h.fail(1200, "r1", "b", "down")
		h.tick(2000) // at the deadline: not passed yet
		h.wantOutputs()
		h.tick(2001)
		agg := h.only()
		if agg.Outcome != schemas.OutcomeDeadline || agg.Reason != "" || agg.CompletedMs != 2001 || agg.DeadlineMs != 2000 {
			t.Errorf("outcome %s reason %q completed %d deadline %d", agg.Outcome, agg.Reason, agg.CompletedMs, agg.DeadlineMs)
		}
		if targets(agg.Answered) != "a" || targets(agg.Failed) != "b" || missing(agg.Missing) != "c" || string(agg.Result) != `{"sum":2,"count":1}` {
			t.Errorf("answered %s failed %s missing %s result %s", targets(agg.Answered), targets(agg.Failed), missing(agg.Missing), agg.Result)
		}
		// The last answer, after the deadline, is late.
		h.ok(2002, "r1", "c", `{"n": 1}`)
		if o := h.out[len(h.out)-1]; o.Kind != gather.ToLate || o.Reason != "request already completed" {
			t.Errorf("last output %+v", o)
		}
	})
	t.Run("complete when all answered early", func(t *testing.T) {
		h := newHarness(t, flowConfig(t, "{type: timeout}", "{type: sum, field: n}"))
		h.manifest(1000, "r1", "timeout", 0, -1, "a", "b", "c")
		h.ok(1100, "r1", "a", `{"n": 2}`)
		h.ok(1200, "r1", "b", `{"n": 3}`)
		h.fail(1300, "r1", "c", "down")
		agg := h.only()
		if agg.Outcome != schemas.OutcomeComplete || agg.CompletedMs != 1300 || string(agg.Result) != `{"sum":5,"count":2}` {
			t.Errorf("outcome %s completed %d result %s", agg.Outcome, agg.CompletedMs, agg.Result)
		}
		h.tick(5000)
		if len(h.aggregates()) != 1 {
			t.Error("a second aggregate at the deadline")
		}
	})
	t.Run("a deadline fires on any record that passes it", func(t *testing.T) {
		h := newHarness(t, flowConfig(t, "{type: timeout}", "{type: collect}"))
		h.manifest(1000, "r1", "timeout", 0, -1, "a")
		h.manifest(1500, "r2", "timeout", 0, -1, "a")
		// A result of r2 after r1's deadline: r1 completes first, then r2 gets its answer.
		h.ok(2100, "r2", "a", `{}`)
		h.wantOutputs("aggregate r1 timeout", "aggregate r2 complete") // r1 had no OK answer
	})
}

func TestMaxFailuresInFold(t *testing.T) {
	h := newHarness(t, flowWith(t, "    strategy: {type: all, max_failures: 1}\n"))
	h.manifest(1000, "r1", "all", 0, 1, "a", "b", "c")
	h.fail(1010, "r1", "a", "down")
	h.wantOutputs()
	h.fail(1020, "r1", "b", "down")
	agg := h.only()
	if agg.Outcome != schemas.OutcomeFailed || agg.Reason != "2 of 3 tasks failed, more than max_failures 1" || missing(agg.Missing) != "c" {
		t.Errorf("outcome %s reason %q missing %s", agg.Outcome, agg.Reason, missing(agg.Missing))
	}
}

func TestMaxOpenRequests(t *testing.T) {
	h := newHarness(t, flowWith(t, "    limits: {max_open_requests: 1}\n"))
	h.manifest(1000, "r1", "all", 0, -1, "a")
	h.manifest(1001, "r2", "all", 0, -1, "a", "b")
	h.wantOutputs("aggregate r2 failed")
	agg := h.only()
	if agg.Reason != "partition 0 already holds 1 open requests (limits.max_open_requests)" || missing(agg.Missing) != "a,b" || agg.CompletedMs != 1001 {
		t.Errorf("reason %q missing %s completed %d", agg.Reason, missing(agg.Missing), agg.CompletedMs)
	}
	h.ok(1002, "r2", "a", `{}`)
	h.ok(1003, "r1", "a", `{}`)
	// r1 is closed: there is room again.
	h.manifest(1004, "r3", "all", 0, -1, "a")
	h.ok(1005, "r3", "a", `{}`)
	h.wantOutputs("aggregate r2 failed", "late@2: request already completed", "aggregate r1 complete", "aggregate r3 complete")
}

func TestOversizeResultPayload(t *testing.T) {
	h := newHarness(t, flowWith(t, "    limits: {max_payload_bytes: 10}\n"))
	h.manifest(1000, "r1", "all", 0, -1, "a", "b")
	h.ok(1010, "r1", "a", `{"n":12345}`) // 11 bytes
	h.ok(1020, "r1", "b", `{"n":1234}`)  // 10 bytes
	agg := h.only()
	if targets(agg.Failed) != "a" || targets(agg.Answered) != "b" {
		t.Fatalf("failed %s answered %s", targets(agg.Failed), targets(agg.Answered))
	}
	if got := agg.Failed[0].Error; got != "payload of 11 bytes exceeds limits.max_payload_bytes 10" {
		t.Errorf("reason %q", got)
	}
}

func TestDeadLetters(t *testing.T) {
	manifest := func(mod func(m *schemas.Manifest)) *schemas.Manifest {
		m := &schemas.Manifest{RequestID: "r1", Flow: "f", Strategy: "all", MaxFailures: -1, TimeoutMs: 1000,
			Tasks: []schemas.TaskRef{{TaskID: "r1/a", Target: "a", Item: -1}}}
		mod(m)
		return m
	}
	for _, tc := range []struct {
		name   string
		v      any
		reason string
	}{
		{"manifest of another flow", manifest(func(m *schemas.Manifest) { m.Flow = "other" }), `manifest of flow "other" in the results topic of flow "f"`},
		{"manifest without id", manifest(func(m *schemas.Manifest) { m.RequestID = "" }), "invalid manifest: empty request id"},
		{"manifest with a long id", manifest(func(m *schemas.Manifest) { m.RequestID = strings.Repeat("x", schemas.MaxRequestIDBytes+1) }), "invalid manifest: request id of 1025 bytes exceeds 1024"},
		{"manifest without tasks", manifest(func(m *schemas.Manifest) { m.Tasks = nil }), "invalid manifest: no tasks"},
		{"manifest without timeout", manifest(func(m *schemas.Manifest) { m.TimeoutMs = 0 }), "invalid manifest: timeout_ms 0 is not positive"},
		{"manifest with a negative timeout", manifest(func(m *schemas.Manifest) { m.TimeoutMs = -5 }), "invalid manifest: timeout_ms -5 is not positive"},
		{"manifest with a timeout beyond limits.max_timeout", manifest(func(m *schemas.Manifest) { m.TimeoutMs = 3_600_001 }), "invalid manifest: timeout_ms 3600001 exceeds limits.max_timeout 1h0m0s"},
		{"manifest with the largest timeout", manifest(func(m *schemas.Manifest) { m.TimeoutMs = math.MaxInt64 }), "invalid manifest: timeout_ms 9223372036854775807 exceeds limits.max_timeout 1h0m0s"},
		{"manifest with CR LF in its id", manifest(func(m *schemas.Manifest) { m.RequestID = "r1\r\n" }), "invalid manifest: request id has control character U+000D"},
		{"manifest with a space after its id", manifest(func(m *schemas.Manifest) { m.RequestID = "r1 " }), "invalid manifest: request id begins or ends with white space"},
		{"manifest with a task twice", manifest(func(m *schemas.Manifest) { m.Tasks = append(m.Tasks, m.Tasks[0]) }), `invalid manifest: task id "r1/a" appears twice`},
		{"manifest with an unknown strategy", manifest(func(m *schemas.Manifest) { m.Strategy = "fastest" }), `invalid manifest: gather: unknown strategy "fastest"`},
		{"manifest with quorum 0", manifest(func(m *schemas.Manifest) { m.Strategy = "quorum" }), `invalid manifest: gather: quorum 0: want at least 1`},
		{"result of another flow", &schemas.Result{RequestID: "r0", Flow: "other", TaskID: "r0/a", Target: "a", Status: schemas.StatusOK}, `result of flow "other" in the results topic of flow "f"`},
		{"result without request id", &schemas.Result{Flow: "f", TaskID: "r0/a", Target: "a", Status: schemas.StatusOK}, "result without a valid request id"},
		{"result for an unknown task", &schemas.Result{RequestID: "r0", Flow: "f", TaskID: "r0/zzz", Target: "a", Status: schemas.StatusOK, Payload: []byte(`{}`)}, `request "r0" has no task "r0/zzz"`},
		{"a request record", &schemas.Request{RequestID: "r0", Flow: "f"}, "a *schemas.Request record does not belong in the results topic"},
		{"garbage", []byte("garbage"), "undecodable record: schemas: not an Avro single-object encoding"},
		{"empty", []byte{}, "undecodable record: schemas: not an Avro single-object encoding"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, flowConfig(t, "{type: all}", "{type: collect}"))
			h.manifest(1000, "r0", "all", 0, -1, "a", "b")
			h.apply(1001, tc.v)
			if len(h.out) != 1 || h.out[0].Kind != gather.ToDeadLetter || !strings.HasPrefix(h.out[0].Reason, tc.reason) || h.out[0].Offset != 1 {
				t.Fatalf("outputs %q, want one dead letter: %s", h.outputs(), tc.reason)
			}
			if b, ok := tc.v.([]byte); ok && !bytes.Equal(h.out[0].Value, b) {
				t.Error("the dead letter does not carry the original bytes")
			}
			if h.part.Stats.DeadLettered != 1 {
				t.Errorf("dead-lettered %d", h.part.Stats.DeadLettered)
			}
			// The open request is untouched.
			h.ok(1002, "r0", "a", `{}`)
			h.ok(1003, "r0", "b", `{}`)
			if agg := h.only(); agg.Outcome != schemas.OutcomeComplete || agg.Duplicates != 0 {
				t.Errorf("r0: %s duplicates %d", agg.Outcome, agg.Duplicates)
			}
		})
	}
}

// TestManifestDeadlineOverflow: a manifest whose log time plus timeout_ms
// overflows is dead-lettered; its deadline never wraps into the past.
func TestManifestDeadlineOverflow(t *testing.T) {
	m := &schemas.Manifest{RequestID: "r1", Flow: "f", Strategy: "all", MaxFailures: -1, TimeoutMs: 1000,
		Tasks: []schemas.TaskRef{{TaskID: "r1/a", Target: "a", Item: -1}}}
	for _, start := range []int64{
		math.MaxInt64 - 500,  // the deadline would wrap into the past
		math.MaxInt64 - 1000, // the deadline would be the largest log time, which no record passes
	} {
		h := newHarness(t, flowConfig(t, "{type: all}", "{type: collect}"))
		h.apply(start, m)
		h.ok(math.MaxInt64-1, "r1", "a", `{}`)
		h.wantOutputs(
			fmt.Sprintf("dead@0: invalid manifest: timeout_ms 1000 from log time %d overflows the deadline", start),
			"late@1: unknown request (never opened, or forgotten after gather.closed_retention)",
		)
	}
	// At the latest log time whose deadline can pass, the request opens.
	h := newHarness(t, flowConfig(t, "{type: all}", "{type: collect}"))
	start := int64(math.MaxInt64 - 1001)
	h.apply(start, m)
	h.tick(start + 1000)
	h.wantOutputs()
	h.tick(math.MaxInt64)
	h.wantOutputs("aggregate r1 timeout")
	if agg := h.only(); agg.DeadlineMs != math.MaxInt64-1 {
		t.Errorf("deadline %d, want %d", agg.DeadlineMs, int64(math.MaxInt64-1))
	}
}

func TestAggregateTooLarge(t *testing.T) {
	h := newHarness(t, flowWith(t, "    limits: {max_aggregate_bytes: 1KiB}\n"))
	big := `{"s":"` + strings.Repeat("x", 600) + `"}`
	h.manifest(1000, "r1", "all", 0, -1, "a", "b")
	h.ok(1010, "r1", "a", big)
	h.ok(1020, "r1", "b", big)
	agg := h.only()
	if agg.Outcome != schemas.OutcomeFailed || !strings.HasPrefix(agg.Reason, "aggregate of ") ||
		!strings.HasSuffix(agg.Reason, " bytes exceeds limits.max_aggregate_bytes 1024") || string(agg.Result) != "null" {
		t.Errorf("outcome %s reason %q result %.40s", agg.Outcome, agg.Reason, agg.Result)
	}
	// The record written is the failed aggregate, within the limit.
	o := h.out[0]
	if len(o.Value) > 1024 {
		t.Errorf("record of %d bytes", len(o.Value))
	}
	dec, err := schemas.Decode(o.Value)
	if err != nil || dec.(*schemas.Aggregate).Outcome != schemas.OutcomeFailed || targets(dec.(*schemas.Aggregate).Answered) != "a,b" {
		t.Errorf("written aggregate %+v (%v)", dec, err)
	}
	if h.part.Stats.Aggregates[schemas.OutcomeFailed] != 1 {
		t.Errorf("stats %v", h.part.Stats.Aggregates)
	}
}

func TestClosedRetention(t *testing.T) {
	h := newHarness(t, flowWith(t, "    gather: {closed_retention: 10s}\n"))
	h.manifest(1000, "r1", "all", 0, -1, "a")
	h.ok(1010, "r1", "a", `{}`) // closed at 1010, remembered until 11010
	h.ok(11009, "r1", "a", `{}`)
	h.ok(11010, "r1", "a", `{}`)
	h.wantOutputs(
		"aggregate r1 complete",
		"late@2: request already completed",
		"late@3: unknown request (never opened, or forgotten after gather.closed_retention)",
	)
	// A second manifest within the retention is ignored, after it a new run.
	h = newHarness(t, flowWith(t, "    gather: {closed_retention: 10s}\n"))
	h.manifest(1000, "r1", "all", 0, -1, "a")
	h.ok(1010, "r1", "a", `{}`)
	h.manifest(11009, "r1", "all", 0, -1, "a")
	h.wantOutputs("aggregate r1 complete")
	h.manifest(11010, "r1", "all", 0, -1, "a")
	h.ok(11011, "r1", "a", `{}`)
	h.wantOutputs("aggregate r1 complete", "aggregate r1 complete")
	if h.part.Stats.DuplicateManifests != 1 {
		t.Errorf("duplicate manifests %d, want 1", h.part.Stats.DuplicateManifests)
	}
}

type step struct {
	ms int64
	v  any
}

// scenario is a record sequence touching every strategy, duplicates, late
// results, dead letters and deadlines.
func scenario() []step {
	m := func(id, strategy string, quorum, maxFailures int32, timeoutMs int64, tgts ...string) *schemas.Manifest {
		mf := &schemas.Manifest{RequestID: id, Flow: "f", Strategy: strategy, Quorum: quorum, MaxFailures: maxFailures, TimeoutMs: timeoutMs,
			Attributes: schemas.AttributesOf(map[string]string{"n": id})}
		for _, tg := range tgts {
			mf.Tasks = append(mf.Tasks, schemas.TaskRef{TaskID: id + "/" + tg, Target: tg, Item: -1})
		}
		return mf
	}
	ok := func(id, tg, p string) *schemas.Result {
		return &schemas.Result{RequestID: id, Flow: "f", TaskID: id + "/" + tg, Target: tg, Item: -1, Status: schemas.StatusOK, Payload: []byte(p), Attempts: 1, DurationMs: 3, Worker: "w"}
	}
	fail := func(id, tg string) *schemas.Result {
		return &schemas.Result{RequestID: id, Flow: "f", TaskID: id + "/" + tg, Target: tg, Item: -1, Status: schemas.StatusError, Error: "down", Attempts: 2}
	}
	return []step{
		{1000, m("all", "all", 0, -1, 1000, "a", "b", "c")},
		{1001, m("first", "first", 0, -1, 500, "a", "b")},
		{1002, m("quorum", "quorum", 2, -1, 800, "a", "b", "c")},
		{1003, m("timeout", "timeout", 0, -1, 300, "a", "b", "c")},
		{1004, m("maxf", "all", 0, 0, 2000, "a", "b")},
		{1010, ok("all", "b", `{"price": 2.50, "x": [1e3]}`)},
		{1011, fail("first", "a")},
		{1012, ok("quorum", "c", `{"price": 0.1}`)},
		{1013, ok("timeout", "a", `{"price": 7}`)},
		{1014, ok("all", "b", `{"price": 2.50}`)}, // duplicate
		{1015, []byte("junk")},
		{1016, fail("maxf", "b")},
		{1017, ok("first", "b", `{"price": 1}`)},
		{1018, ok("first", "a", `{"price": 1}`)}, // late
		{1019, ok("quorum", "a", `{"cost": 1}`)}, // cannot consolidate
		{1200, &schemas.Tick{SentMs: 1200}},
		{1350, &schemas.Tick{SentMs: 1350}}, // timeout's deadline passes
		{1400, ok("quorum", "b", `{"price": 3}`)},
		{1500, ok("all", "a", `{"price": 9}`)},
		{1500, m("late-open", "all", 0, -1, 100, "a")},
		{1990, ok("nobody", "a", `{}`)},
		{2100, &schemas.Tick{SentMs: 2100}}, // all and late-open pass their deadlines
	}
}

// run folds steps on a fresh store, committing every commitEvery records
// and, when abortAt > 0, aborting once at that record and re-reading from
// the committed offset, as a Kafka rewind would. It returns the outputs of
// committed transactions.
func run(t *testing.T, steps []step, commitEvery, abortAt int) []gather.Output {
	t.Helper()
	h := newHarness(t, flowConfig(t, "{type: all}", "{type: min, field: price}"))
	var committed []gather.Output
	aborted := false
	for i := 0; i < len(steps); {
		h.offset = int64(i)
		h.apply(steps[i].ms, steps[i].v)
		i++
		if !aborted && abortAt > 0 && i == abortAt {
			aborted = true
			h.part.Abort()
			h.out = nil
			i = int(h.part.Position().Next)
			continue
		}
		if i%commitEvery == 0 || i == len(steps) {
			if err := h.part.Commit(); err != nil {
				t.Fatal(err)
			}
			committed = append(committed, h.out...)
			h.out = nil
		}
	}
	return committed
}

func TestFoldIsDeterministic(t *testing.T) {
	steps := scenario()
	ref := run(t, steps, len(steps), 0)
	var kinds []string
	for _, o := range ref {
		if o.Kind == gather.ToAggregated {
			kinds = append(kinds, fmt.Sprintf("%s:%s", o.Key, o.Aggregate.Outcome))
		} else {
			kinds = append(kinds, fmt.Sprintf("%d@%d", o.Kind, o.Offset))
		}
	}
	// Guard the scenario itself, so that it keeps covering what it should.
	want := "3@10 maxf:failed first:first 2@13 timeout:deadline quorum:quorum late-open:timeout 2@20 all:timeout"
	if got := strings.Join(kinds, " "); got != want {
		t.Fatalf("scenario outputs\n got %s\nwant %s", got, want)
	}
	for _, v := range []struct{ commitEvery, abortAt int }{{len(steps), 0}, {1, 0}, {3, 0}, {4, 10}, {5, 17}, {len(steps), 21}} {
		t.Run(fmt.Sprintf("commit every %d abort at %d", v.commitEvery, v.abortAt), func(t *testing.T) {
			got := run(t, steps, v.commitEvery, v.abortAt)
			if len(got) != len(ref) {
				t.Fatalf("%d outputs, want %d", len(got), len(ref))
			}
			for i := range ref {
				a, b := ref[i], got[i]
				if a.Kind != b.Kind || !bytes.Equal(a.Key, b.Key) || !bytes.Equal(a.Value, b.Value) || a.TimeMs != b.TimeMs || a.Reason != b.Reason || a.Offset != b.Offset {
					t.Errorf("output %d differs:\n%+v\n%+v", i, a, b)
				}
			}
		})
	}
}

func TestPosition(t *testing.T) {
	h := newHarness(t, flowWith(t, "    gather: {closed_retention: 5s}\n"))
	pending := func() store.Position {
		t.Helper()
		p, err := h.part.Pending()
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	if p := pending(); p != (store.Position{}) {
		t.Errorf("fresh pending %+v", p)
	}
	if _, ok, _ := h.part.NextDeadline(); ok {
		t.Error("a deadline with nothing open")
	}

	h.tick(900)                                    // offset 0
	h.manifest(1000, "r1", "all", 0, -1, "a")      // offset 1, deadline 2000
	h.manifest(1100, "r2", "all", 0, -1, "a", "b") // offset 2, deadline 2100
	if p := pending(); p.Next != 3 || p.Oldest != 1 || p.Open != 2 || p.StreamTime != 1100 {
		t.Errorf("pending %+v, want next 3 oldest 1 open 2 stream time 1100", p)
	}
	if ms, ok, err := h.part.NextDeadline(); !ok || ms != 2000 || err != nil {
		t.Errorf("next deadline in the overlay %d %v %v", ms, ok, err)
	}
	if err := h.part.Commit(); err != nil {
		t.Fatal(err)
	}
	want := store.Position{Next: 3, Oldest: 1, StreamTime: 1100, Open: 2, OldestStreamTime: 1000}
	if p := h.part.Position(); p != want {
		t.Errorf("committed %+v, want %+v", p, want)
	}
	// The store writes the position with its format version.
	stored := want
	stored.Version = store.FormatVersion
	if p, ok, err := h.db.Partition(0).Position(); !ok || err != nil || p != stored {
		t.Errorf("stored %+v %v %v, want %+v", p, ok, err, stored)
	}
	if ms, ok, _ := h.part.NextDeadline(); !ok || ms != 2000 {
		t.Errorf("next deadline in the store %d %v", ms, ok)
	}

	// Abort goes back to the committed position, and the same records fold again.
	h.ok(1200, "r1", "a", `{}`)
	h.ok(1300, "r2", "a", `{}`)
	if h.part.Next() != 5 || h.part.StreamTime() != 1300 || len(h.aggregates()) != 1 {
		t.Fatalf("next %d stream time %d", h.part.Next(), h.part.StreamTime())
	}
	h.part.Abort()
	if h.part.Next() != 3 || h.part.StreamTime() != 1100 || pending() != want {
		t.Errorf("after abort: next %d stream time %d pending %+v", h.part.Next(), h.part.StreamTime(), pending())
	}
	h.out, h.offset = nil, 3
	h.ok(1200, "r1", "a", `{}`) // offset 3: r1 closes, still remembered
	if p := pending(); p.Oldest != 1 || p.Open != 1 {
		t.Errorf("pending %+v: a remembered closed request still holds Oldest", p)
	}
	h.tick(6200) // offset 4: r1 forgotten (closed at 1200 + 5s), r2 times out and is remembered
	if p := pending(); p.Oldest != 2 || p.Open != 0 || p.Next != 5 {
		t.Errorf("pending %+v, want oldest 2 (r2 closed at 6200 is remembered) open 0", p)
	}
	h.tick(11200) // offset 5: r2 forgotten
	if p := pending(); p.Oldest != 6 || p.Next != 6 {
		t.Errorf("pending %+v, want oldest = next = 6", p)
	}
	h.wantOutputs("aggregate r1 complete", "aggregate r2 timeout")

	// A record before Next is a re-delivery: ignored.
	before := len(h.out)
	h.offset = 2
	h.manifest(1100, "r2", "all", 0, -1, "a", "b")
	if len(h.out) != before || h.part.Next() != 6 {
		t.Errorf("re-delivered record folded again")
	}
	// SkipTo moves Next over offsets without records.
	h.part.SkipTo(9)
	h.part.SkipTo(4) // never back
	if err := h.part.Commit(); err != nil {
		t.Fatal(err)
	}
	if p := h.part.Position(); p.Next != 9 || p.Oldest != 9 || p.Open != 0 || p.StreamTime != 11200 {
		t.Errorf("committed %+v", p)
	}
	// Commit and Abort without an overlay do nothing.
	if err := h.part.Commit(); err != nil {
		t.Fatal(err)
	}
	h.part.Abort()
	if p := h.part.Position(); p.Next != 9 {
		t.Errorf("position %+v", p)
	}
}

// When even the failed aggregate without its result is too large (long
// error texts, many tasks), its task lists and attributes go too: the
// record written never exceeds the limit.
func TestAggregateTooLargeWithoutResult(t *testing.T) {
	h := newHarness(t, flowWith(t, "    limits: {max_aggregate_bytes: 1KiB}\n"))
	m := &schemas.Manifest{RequestID: "r1", Flow: "f", Strategy: "all", MaxFailures: -1, TimeoutMs: 1000,
		Attributes: schemas.AttributesOf(map[string]string{"trace": strings.Repeat("t", 100)})}
	for _, tg := range []string{"a", "b", "c"} {
		m.Tasks = append(m.Tasks, schemas.TaskRef{TaskID: "r1/" + tg, Target: tg, Item: -1})
	}
	h.apply(1000, m)
	h.ok(1010, "r1", "a", `{"s":"`+strings.Repeat("x", 900)+`"}`)
	h.fail(1011, "r1", "b", strings.Repeat("e", 600))
	h.fail(1012, "r1", "c", strings.Repeat("e", 600))
	agg := h.only()
	if len(h.out[0].Value) > 1024 {
		t.Errorf("record of %d bytes exceeds max_aggregate_bytes", len(h.out[0].Value))
	}
	if agg.Outcome != schemas.OutcomeFailed || !strings.HasSuffix(agg.Reason, "exceeds limits.max_aggregate_bytes 1024 (task lists and attributes dropped)") ||
		agg.Tasks != 3 || len(agg.Answered)+len(agg.Failed)+len(agg.Missing) != 0 {
		t.Errorf("outcome %s reason %q tasks %d", agg.Outcome, agg.Reason, agg.Tasks)
	}
	dec, err := schemas.Decode(h.out[0].Value)
	if err != nil || dec.(*schemas.Aggregate).Reason != agg.Reason {
		t.Errorf("written aggregate %+v (%v)", dec, err)
	}
}

// TestFailedCarriesNoResult: failed means no answer to consume, for every
// strategy, even when some tasks answered OK.
func TestFailedCarriesNoResult(t *testing.T) {
	t.Run("all, every task failed", func(t *testing.T) {
		h := newHarness(t, flowConfig(t, "{type: all}", "{type: sum, field: n}"))
		h.manifest(1000, "r1", "all", 0, -1, "a", "b")
		h.fail(1100, "r1", "a", "down")
		h.fail(1200, "r1", "b", "down")
		agg := h.only()
		if agg.Outcome != schemas.OutcomeFailed || string(agg.Result) != "null" || agg.Reason != "all 2 tasks failed" {
			t.Errorf("outcome %s reason %q result %s, want failed without a result", agg.Outcome, agg.Reason, agg.Result)
		}
	})
	t.Run("max_failures with an OK answer", func(t *testing.T) {
		h := newHarness(t, flowConfig(t, "{type: all}", "{type: sum, field: n}"))
		h.manifest(1000, "r1", "all", 0, 0, "a", "b", "c")
		h.ok(1100, "r1", "a", `{"n": 2}`)
		h.fail(1200, "r1", "b", "down")
		agg := h.only()
		if agg.Outcome != schemas.OutcomeFailed || string(agg.Result) != "null" || len(agg.Answered) != 1 {
			t.Errorf("outcome %s result %s answered %d, want failed without a result, a's answer listed", agg.Outcome, agg.Result, len(agg.Answered))
		}
	})
}
