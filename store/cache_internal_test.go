package store

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/scattergather/scattergather/schemas"
)

// Pebble charges its memtables to the block cache. Once they have grown to
// their full size, the block cache must still hold the blocks the store
// reads, or every lookup of a flushed key decompresses its blocks again.
func TestBlockCacheHoldsBlocksBesideFullMemtables(t *testing.T) {
	db, err := Open("", WithFS(vfs.NewMem()))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	p := db.Partition(0)
	n := 0
	closeSome := func(count int, answer []byte) {
		t.Helper()
		tx := p.Begin(Position{})
		for range count {
			id := fmt.Sprintf("req-%09d", n)
			r := &Request{RequestID: id, Strategy: "all", MaxFailures: -1, DeadlineMs: int64(n) + 60_000,
				Tasks: []schemas.TaskRef{{TaskID: id + "/a", Target: "a", Item: -1}}}
			if err := tx.OpenRequest(r); err != nil {
				t.Fatal(err)
			}
			if answer != nil {
				if err := tx.PutAnswer(id, &Answer{OK: true, Payload: answer}); err != nil {
					t.Fatal(err)
				}
			}
			if err := tx.CloseRequest(r, int64(n)+600_000); err != nil {
				t.Fatal(err)
			}
			n++
		}
		if err := tx.Commit(Position{Next: int64(n)}); err != nil {
			t.Fatal(err)
		}
	}
	// Each memtable is twice as large as the one before, up to
	// memTableSize: from 256 KiB, answers of 64 KiB fill all of them in a
	// thousand requests or so.
	answer := make([]byte, 64<<10)
	for i := 0; db.pdb.Metrics().MemTable.Size < memTableSize; i++ {
		if i == 1_000 {
			t.Fatalf("memtables hold %d bytes after 10,000 answers of 64 KiB; want %d", db.pdb.Metrics().MemTable.Size, memTableSize)
		}
		closeSome(10, answer)
	}
	closeSome(5_000, nil)
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	lookUp := func() {
		t.Helper()
		tx := p.Begin(Position{})
		defer tx.Discard()
		for i := range n {
			if _, ok, err := tx.Closed(fmt.Sprintf("req-%09d", i)); err != nil || !ok {
				t.Fatalf("closed %d: %v, %v", i, ok, err)
			}
		}
	}
	lookUp()
	before := db.pdb.Metrics().BlockCache
	lookUp()
	after := db.pdb.Metrics().BlockCache
	hits, misses := after.Hits-before.Hits, after.Misses-before.Misses
	if hits == 0 || misses > hits/100 {
		t.Fatalf("reading %d keys a second time: %d block cache hits, %d misses (cache holds %d bytes); want them read from the cache", n, hits, misses, after.Size)
	}
}
