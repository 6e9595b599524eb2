// Package store keeps the gather's state in Pebble: for each partition of a
// flow's results topic, the open requests (manifest and counters), their
// answers, a deadline index scanned by key range, closed-request markers
// with their expiry index, an index of the manifest offsets still needed to
// rebuild the state, and the position (offset, stream time, epoch) the state
// stands at, written in the same batch as the state.
//
// The store is a cache of the fold of the log: Kafka holds the truth. Every
// change goes through a Txn, an indexed batch that reads its own writes and
// is applied only after the Kafka transaction that produced its outputs has
// committed. Each Partition keeps the open requests it opened or read,
// with their answers, in memory within a budget (WithRequestCache), written
// through to Pebble: a Txn's changes reach that cache when it commits and
// are dropped with it.
package store
