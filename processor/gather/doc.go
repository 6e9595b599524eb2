// Package gather is the gather's fold: it reads one partition of a flow's
// results topic, record by record, and decides when each request is
// complete and what its aggregate is.
//
// The fold is a pure function of the log. Apply takes a record (manifest,
// result or tick) with its offset and its log time, and passes its effects
// to emit as Outputs: aggregates for <flow>.aggregated, results of
// completed or unknown requests for <flow>.late, and records it cannot read
// for the dead-letter topic, each late and dead-lettered record with a
// reason of one of the kinds of package schemas. It reads no clock. Stream
// time is the largest log time read so far: a manifest opens a request
// whose deadline is stream time plus its timeout; the request's Strategy
// decides at each answer whether it is complete, and decides for good once
// stream time passes the deadline. A tick, which the Kafka glue writes to a
// quiet partition, only moves stream time. A completed
// request is remembered for gather.closed_retention, so that a second
// manifest is recognised and a late result is told apart from an unknown
// one. The Consolidator builds the aggregate's result from the OK answers.
// Replaying the log therefore yields the same aggregates, byte for byte.
//
// The state lives in package store. The changes of a poll go into an
// overlay (a store.Txn) that reads its own writes; Commit applies it once
// the Kafka transaction holding its outputs and the consumed offsets has
// committed, and Abort drops it when that transaction aborts, so the state
// always matches a committed transaction. Its position (next offset, stream
// time, epoch, and the oldest manifest still needed) is committed with it,
// and CommitMeta carries the same in the metadata of the group's committed
// offset.
//
// When the gather is assigned a partition, PlanResume compares the local
// state's position with the committed offset and its metadata and decides:
// start empty, resume the local state, re-fold the records from its
// position up to the committed offset, or discard it and rebuild it by
// folding from the oldest needed manifest. Re-folded records produce
// nothing: their outputs were written when their offsets were committed.
// The Kafka glue fetches the offsets and carries the plan out.
package gather
