package gather_test

import (
	"strings"
	"testing"

	"github.com/scattergather/scattergather/processor/gather"
	"github.com/scattergather/scattergather/schemas"
	"github.com/scattergather/scattergather/store"
)

func TestPlanResume(t *testing.T) {
	const v = store.FormatVersion
	meta := func(version int, epoch string, oldest int64) string {
		return gather.CommitMeta{Version: version, Epoch: epoch, Oldest: oldest, StreamTime: 1700000000000}.String()
	}
	// local is a state of epoch r1 at offset 100 holding requests from 40.
	local := store.Position{Version: v, Epoch: "r1", Next: 100, Oldest: 40, StreamTime: 1700000000000, Open: 3}
	at := func(next int64) store.Position { p := local; p.Next = next; return p }
	withVersion := func(version int32) store.Position { p := local; p.Version = version; return p }
	rebuildFrom := func(epoch string, oldest int64) store.Position {
		return store.Position{Epoch: epoch, Next: oldest, Oldest: oldest}
	}

	tests := []struct {
		name      string
		local     store.Position
		hasLocal  bool
		committed int64
		meta      string
		action    gather.Action
		discard   bool
		start     store.Position
		reason    string // a part of the reason
		warn      bool
	}{
		{"nothing committed, nothing local", store.Position{}, false, -1, "", gather.StartEmpty, false, store.Position{}, "no committed offset", false},
		{"nothing committed: local state of an old group is dropped", local, true, -1, meta(v, "r1", 40), gather.StartEmpty, true, store.Position{}, "no committed offset", false},
		{"current at the committed offset", local, true, 100, meta(v, "r1", 40), gather.Resume, false, local, "stands at the committed offset", false},
		{"current and behind: re-fold the tail", local, true, 250, meta(v, "r1", 90), gather.Refold, false, local, "behind the committed offset", false},
		{"behind by exactly the oldest needed manifest", at(90), true, 250, meta(v, "r1", 90), gather.Refold, false, at(90), "behind the committed offset", false},
		{"at the committed offset although oldest is past it", local, true, 100, meta(v, "r1", 120), gather.Resume, false, local, "stands at the committed offset", false},
		{"behind the oldest needed manifest", at(80), true, 250, meta(v, "r1", 90), gather.Rebuild, true, rebuildFrom("r1", 90), "behind the oldest needed manifest at 90", false},
		{"ahead of the committed offset", local, true, 60, meta(v, "r1", 40), gather.Rebuild, true, rebuildFrom("r1", 40), "ahead of the committed offset 60", false},
		{"another epoch (replayed)", local, true, 0, meta(v, "r2", 0), gather.Rebuild, true, rebuildFrom("r2", 0), `local state of epoch "r1", the committed offset of epoch "r2"`, false},
		{"replayed to a later offset", local, true, 500, meta(v, "r2", 500), gather.Rebuild, true, rebuildFrom("r2", 500), "epoch", false},
		{"local state of another format version", withVersion(v - 1), true, 100, meta(v, "r1", 40), gather.Rebuild, true, rebuildFrom("r1", 40), "local state of format version", false},
		{"committed by another format version", local, true, 100, meta(v+1, "r1", 40), gather.Rebuild, true, rebuildFrom("r1", 40), "written with format version", false},
		{"committed by another format version, local behind", at(90), true, 250, meta(v-1, "r1", 40), gather.Rebuild, true, rebuildFrom("r1", 40), "written with format version", false},
		{"no local state", store.Position{}, false, 250, meta(v, "r1", 40), gather.Rebuild, false, rebuildFrom("r1", 40), "no local state", false},
		{"no local state, another format version committed", store.Position{}, false, 250, meta(v+1, "", 7), gather.Rebuild, false, rebuildFrom("", 7), "no local state", false},
		{"metadata of another tool", local, true, 250, "member-1", gather.StartEmpty, true, store.Position{Next: 250, Oldest: 250}, "no scattergather metadata", true},
		{"empty metadata, nothing local", store.Position{}, false, 250, "", gather.StartEmpty, false, store.Position{Next: 250, Oldest: 250}, "no scattergather metadata", true},
		{"corrupt metadata", local, true, 100, "sg2;e=r1;o=forty;t=0", gather.StartEmpty, true, store.Position{Next: 100, Oldest: 100}, "no scattergather metadata", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := gather.PlanResume(tc.local, tc.hasLocal, tc.committed, tc.meta)
			if got.Action != tc.action || got.Discard != tc.discard || got.Start != tc.start {
				t.Errorf("PlanResume = %v discard=%v start=%+v, want %v discard=%v start=%+v", got.Action, got.Discard, got.Start, tc.action, tc.discard, tc.start)
			}
			if !strings.Contains(got.Reason, tc.reason) {
				t.Errorf("reason %q, want it to contain %q", got.Reason, tc.reason)
			}
			if (got.Warning != "") != tc.warn {
				t.Errorf("warning %q, want one: %v", got.Warning, tc.warn)
			}
		})
	}
}

// TestPlanResumeOfOwnMetadata: what the gather commits (MetaOf its
// position) resumes that same state, and what a replay commits
// (ReplayMeta) makes every earlier state start over at the replay's offset.
func TestPlanResumeOfOwnMetadata(t *testing.T) {
	pos := store.Position{Version: store.FormatVersion, Epoch: "r7", Next: 1234, Oldest: 1000, StreamTime: 1700000000000, Open: 12}
	if got := gather.PlanResume(pos, true, pos.Next, gather.MetaOf(pos).String()); got.Action != gather.Resume || got.Start != pos {
		t.Errorf("own metadata: %v from %+v, want resume", got.Action, got.Start)
	}
	replay := gather.ReplayMeta("r8", 500).String()
	got := gather.PlanResume(pos, true, 500, replay)
	if want := (store.Position{Epoch: "r8", Next: 500, Oldest: 500}); got.Action != gather.Rebuild || !got.Discard || got.Start != want {
		t.Errorf("after a replay: %v discard=%v from %+v, want rebuild from %+v", got.Action, got.Discard, got.Start, want)
	}
}

func TestActionString(t *testing.T) {
	for a, want := range map[gather.Action]string{gather.StartEmpty: "start_empty", gather.Resume: "resume", gather.Refold: "refold", gather.Rebuild: "rebuild", 0: "Action(0)"} {
		if got := a.String(); got != want {
			t.Errorf("%d: %q, want %q", uint8(a), got, want)
		}
	}
}

// TestRebuildDecidesAsTheFirstRun: log times that go back (a leader
// failover with clock skew) do not change what a rebuild decides. The
// oldest open request's manifest was appended with a log time far below
// the stream time; a rebuild that started its stream time at 0 opened it
// with an earlier deadline and timed it out on a result that the first run
// counted.
func TestRebuildDecidesAsTheFirstRun(t *testing.T) {
	flow := flowConfig(t, "{type: all}", "{type: collect}")
	first := newHarness(t, flow)
	first.tick(5000)                              // offset 0: stream time 5000
	first.manifest(1000, "r1", "all", 0, -1, "a") // offset 1: appended with a skewed clock; opened at 5000, deadline 6000
	if err := first.part.Commit(); err != nil {
		t.Fatal(err)
	}
	pos, err := first.part.Pending()
	if err != nil {
		t.Fatal(err)
	}
	meta := gather.MetaOf(pos).String()

	// A result at 5500 comes after the committed offset: the first run
	// counts it (r1's deadline is 6000).
	first.ok(5500, "r1", "a", `{"p":1}`)
	if a := first.only(); a.Outcome != schemas.OutcomeComplete {
		t.Fatalf("first run: %s", a.Outcome)
	}

	// Another instance rebuilds from the committed metadata alone.
	plan := gather.PlanResume(store.Position{}, false, pos.Next, meta)
	if plan.Action != gather.Rebuild || plan.Start.Next != 1 {
		t.Fatalf("plan %+v", plan)
	}
	second := newHarnessAt(t, flow, plan.Start)
	second.manifest(1000, "r1", "all", 0, -1, "a") // offset 1 again
	second.ok(5500, "r1", "a", `{"p":1}`)
	got := second.only()
	if got.Outcome != schemas.OutcomeComplete || got.OpenedMs != 5000 || got.DeadlineMs != 6000 {
		t.Errorf("rebuilt: outcome %s opened %d deadline %d, want complete 5000 6000 as the first run", got.Outcome, got.OpenedMs, got.DeadlineMs)
	}
}
