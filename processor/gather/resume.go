package gather

import (
	"fmt"

	"github.com/scattergather/scattergather/store"
)

// Action is what the gather does with the local state of a partition it is
// assigned, as PlanResume decides.
type Action uint8

// Actions.
const (
	// StartEmpty: the fold starts with empty state at ResumePlan.Start.Next:
	// offset 0 when nothing is committed, the committed offset when it
	// carries no scattergather metadata (and so no oldest needed manifest).
	StartEmpty Action = iota + 1
	// Resume: the local state stands at the committed offset; it is used as
	// it is.
	Resume
	// Refold: the local state is of the committed epoch but behind the
	// committed offset, and still holds every request opened before its
	// position: the records from its position up to the committed offset
	// are folded again silently.
	Refold
	// Rebuild: the local state cannot be used (there is none, or it is of
	// another format version or epoch, ahead of the committed offset, or
	// behind the oldest manifest still needed): the state is rebuilt by
	// folding silently from the oldest needed manifest, as the committed
	// metadata names it, up to the committed offset.
	Rebuild
)

// String returns the action's name: start_empty, resume, refold or
// rebuild.
func (a Action) String() string {
	switch a {
	case StartEmpty:
		return "start_empty"
	case Resume:
		return "resume"
	case Refold:
		return "refold"
	case Rebuild:
		return "rebuild"
	}
	return fmt.Sprintf("Action(%d)", uint8(a))
}

// ResumePlan is how the gather resumes a partition it is assigned.
type ResumePlan struct {
	Action Action
	// Discard is true when there is local state and it must be discarded
	// before the fold is made.
	Discard bool
	// Start is the position the partition's fold starts from. While
	// Start.Next is below the committed offset, the fold reads up to the
	// committed offset silently (Refold, Rebuild) before it takes new
	// records: their outputs were written by the transactions that
	// committed those offsets.
	Start store.Position
	// Reason says why, for the log.
	Reason string
	// Warning, when not empty, is to be logged as a warning: something is
	// lost (requests opened before the start will not complete here).
	Warning string
}

// PlanResume decides how the gather resumes a partition: from local, the
// position of the partition's local state (hasLocal is false when there is
// none), committed, the group's committed offset of the partition (-1 when
// nothing is committed), and meta, the metadata committed with it
// (CommitMeta.String, or anything another tool wrote). It is pure.
//
// Local state is current when it has this gather's format version
// (store.FormatVersion), the committed metadata parses, was written by a
// gather of the same format version and names the local state's epoch. A
// current state standing at the committed offset is resumed; one behind it,
// but not behind the oldest manifest still needed, is re-folded up to it.
// Any other state is discarded and rebuilt from that oldest manifest.
//
// The committed metadata's version counts because it is the format of the
// gather that committed last: when it differs (during an upgrade, gathers
// of two versions may take a partition in turns), the local state was left
// by this version before the other one took over, and it is rebuilt rather
// than trusted to continue the other's work. The epoch and offsets of the
// metadata mean the same in every version, so the rebuild still starts at
// its oldest needed manifest. Every gather of this version writes
// store.FormatVersion, and so does a replay, so for their offsets the
// version check never decides alone.
func PlanResume(local store.Position, hasLocal bool, committed int64, meta string) ResumePlan {
	plan := ResumePlan{Discard: hasLocal}
	if committed < 0 {
		plan.Action, plan.Reason = StartEmpty, "no committed offset"
		return plan
	}
	m, ok := ParseCommitMeta(meta)
	if !ok {
		plan.Action, plan.Reason = StartEmpty, "the committed offset carries no scattergather metadata"
		plan.Start = store.Position{Next: committed, Oldest: committed}
		plan.Warning = "committed offset carries no scattergather metadata: starting empty at it; requests opened before it will not complete here"
		return plan
	}
	switch {
	case !hasLocal:
		plan.Reason = "no local state"
	case local.Version != store.FormatVersion:
		plan.Reason = fmt.Sprintf("local state of format version %d, this gather's is %d", local.Version, store.FormatVersion)
	case m.Version != store.FormatVersion:
		plan.Reason = fmt.Sprintf("the committed offset was written with format version %d, this gather's is %d", m.Version, store.FormatVersion)
	case local.Epoch != m.Epoch:
		plan.Reason = fmt.Sprintf("local state of epoch %q, the committed offset of epoch %q", local.Epoch, m.Epoch)
	case local.Next == committed:
		return ResumePlan{Action: Resume, Start: local, Reason: "local state stands at the committed offset"}
	case local.Next > committed:
		plan.Reason = fmt.Sprintf("local state at offset %d is ahead of the committed offset %d", local.Next, committed)
	case local.Next < m.Oldest:
		plan.Reason = fmt.Sprintf("local state at offset %d is behind the oldest needed manifest at %d", local.Next, m.Oldest)
	default:
		return ResumePlan{Action: Refold, Start: local, Reason: "local state is behind the committed offset"}
	}
	plan.Action = Rebuild
	plan.Start = store.Position{Epoch: m.Epoch, Next: m.Oldest, Oldest: m.Oldest, StreamTime: m.OldestStreamTime, OldestStreamTime: m.OldestStreamTime}
	return plan
}
