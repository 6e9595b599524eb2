package store_test

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/scattergather/scattergather/schemas"
	"github.com/scattergather/scattergather/store"
)

// BenchmarkBatch opens a request, stores three answers, reads them back and
// closes it in a Txn, committing every 100 requests: the store's work for
// one request.
func BenchmarkBatch(b *testing.B) {
	db, err := store.Open("", store.WithFS(vfs.NewMem()))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	p := db.Partition(0)
	tx := p.Begin(store.Position{})
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		id := fmt.Sprintf("req-%09d", i)
		r := &store.Request{RequestID: id, Strategy: "all", MaxFailures: -1, OpenedMs: int64(i), DeadlineMs: int64(i) + 60_000, ManifestOffset: int64(i),
			Tasks: []schemas.TaskRef{{TaskID: id + "/a", Target: "a", Item: -1}, {TaskID: id + "/b", Target: "b", Item: -1}, {TaskID: id + "/c", Target: "c", Item: -1}}}
		if err := tx.OpenRequest(r); err != nil {
			b.Fatal(err)
		}
		for j := range int32(3) {
			if err := tx.PutAnswer(id, &store.Answer{Index: j, OK: true, Payload: []byte(`{"price": 1}`), LogMs: int64(i)}); err != nil {
				b.Fatal(err)
			}
		}
		if as, err := tx.Answers(id); err != nil || len(as) != 3 {
			b.Fatalf("answers: %d, %v", len(as), err)
		}
		if err := tx.CloseRequest(r, int64(i)+120_000); err != nil {
			b.Fatal(err)
		}
		i++
		if i%100 == 0 {
			if err := tx.Commit(store.Position{Next: int64(i)}); err != nil {
				b.Fatal(err)
			}
			tx = p.Begin(store.Position{})
		}
	}
	tx.Discard()
}

// BenchmarkNextDeadline reads the next deadline of a partition's committed
// state, as the gather does after each transaction, where most requests
// closed before their deadline: one request opened and closed per
// millisecond of log time for a minute, with a 30 s timeout, the last few
// still open, then one more request opened and closed between reads
// (stream time stays before the open ones' deadlines). The tombstones of
// the closed requests' deadline entries (30,000 within the timeout) lie
// between the fired deadlines and the earliest open one.
func BenchmarkNextDeadline(b *testing.B) {
	db, err := store.Open("", store.WithFS(vfs.NewMem()))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	p := db.Partition(0)
	const timeout = 30_000
	now := int64(0)
	var open int64
	step := func(tx *store.Txn, close bool) {
		now++
		r := &store.Request{RequestID: fmt.Sprintf("req-%09d", now), Strategy: "all", MaxFailures: -1, OpenedMs: now, DeadlineMs: now + timeout, ManifestOffset: now,
			Tasks: []schemas.TaskRef{{TaskID: "a", Target: "a", Item: -1}}}
		if err := tx.OpenRequest(r); err != nil {
			b.Fatal(err)
		}
		if close {
			if err := tx.CloseRequest(r, now+60_000); err != nil {
				b.Fatal(err)
			}
		} else {
			open++
		}
	}
	tx := p.Begin(store.Position{})
	for i := range 60_003 {
		step(tx, i < 60_000) // the last few stay open
		tx.FiredBefore(now)
		if i%1000 == 999 {
			if err := tx.Commit(store.Position{Next: now + 1}); err != nil {
				b.Fatal(err)
			}
			tx = p.Begin(store.Position{Next: now + 1, Open: open})
		}
	}
	if err := tx.Commit(store.Position{Next: now + 1}); err != nil {
		b.Fatal(err)
	}
	if _, ok, err := p.NextDeadline(); !ok || err != nil {
		b.Fatalf("no next deadline (%v)", err)
	}
	b.ReportAllocs()
	for b.Loop() {
		tx := p.Begin(store.Position{Next: now + 1, Open: open})
		step(tx, true)
		if err := tx.Commit(store.Position{Next: now + 1}); err != nil {
			b.Fatal(err)
		}
		if _, ok, err := p.NextDeadline(); !ok || err != nil {
			b.Fatalf("no next deadline (%v)", err)
		}
	}
}

// BenchmarkClosedMiss asks whether a new request was closed, as the gather
// does for every manifest, in a store that remembers 200,000 closed
// requests on disk (gather.closed_retention): the answer is no, and every
// table that may hold the key is searched for it.
func BenchmarkClosedMiss(b *testing.B) {
	db, err := store.Open("", store.WithFS(vfs.NewMem()))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	p := db.Partition(0)
	const closed = 200_000
	tx := p.Begin(store.Position{})
	for i := range closed {
		id := fmt.Sprintf("req-%09d", 2*i)
		r := &store.Request{RequestID: id, Strategy: "all", MaxFailures: -1, OpenedMs: int64(i), DeadlineMs: int64(i) + 60_000, ManifestOffset: int64(i),
			Tasks: []schemas.TaskRef{{TaskID: id + "/a", Target: "a", Item: -1}}}
		if err := tx.OpenRequest(r); err != nil {
			b.Fatal(err)
		}
		if err := tx.CloseRequest(r, int64(i)+600_000); err != nil {
			b.Fatal(err)
		}
		if (i+1)%10_000 == 0 {
			if err := tx.Commit(store.Position{Next: int64(i + 1)}); err != nil {
				b.Fatal(err)
			}
			if err := db.Flush(); err != nil {
				b.Fatal(err)
			}
			tx = p.Begin(store.Position{})
		}
	}
	tx.Discard()
	tx = p.Begin(store.Position{})
	defer tx.Discard()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		// Odd numbers were never opened: they fall between closed keys.
		if _, ok, err := tx.Closed(fmt.Sprintf("req-%09d", 2*(i%closed)+1)); err != nil || ok {
			b.Fatalf("closed: %v, %v", ok, err)
		}
		i++
	}
}
