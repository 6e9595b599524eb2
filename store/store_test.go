package store_test

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/scattergather/scattergather/schemas"
	"github.com/scattergather/scattergather/store"
)

func openMem(t *testing.T) *store.DB {
	t.Helper()
	db, err := store.Open("", store.WithFS(vfs.NewMem()), store.WithCacheSize(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func request(id string, deadline, offset int64, tasks ...string) *store.Request {
	r := &store.Request{RequestID: id, Strategy: "all", MaxFailures: -1, DeadlineMs: deadline, ManifestOffset: offset,
		Attributes: schemas.AttributesOf(map[string]string{})}
	for _, tg := range tasks {
		r.Tasks = append(r.Tasks, schemas.TaskRef{TaskID: id + "/" + tg, Target: tg, Item: -1})
	}
	return r
}

func commit(t *testing.T, tx *store.Txn, pos store.Position) {
	t.Helper()
	if err := tx.Commit(pos); err != nil {
		t.Fatal(err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestPartitionsAreIsolated(t *testing.T) {
	db := openMem(t)
	p0, p1 := db.Partition(0), db.Partition(1)
	tx := p0.Begin(store.Position{})
	must(t, tx.OpenRequest(request("r1", 2000, 5, "a")))
	must(t, tx.PutAnswer("r1", &store.Answer{Index: 0, OK: true, Payload: []byte(`{}`)}))
	commit(t, tx, store.Position{Next: 6})

	tx1 := p1.Begin(store.Position{})
	defer tx1.Discard()
	if _, ok, err := tx1.Request("r1"); ok || err != nil {
		t.Errorf("partition 1 sees partition 0's request (%v)", err)
	}
	if as, _ := tx1.Answers("r1"); len(as) != 0 {
		t.Errorf("partition 1 sees answers %+v", as)
	}
	if d, _ := tx1.DueBefore(1<<40, 10); len(d) != 0 {
		t.Errorf("partition 1 sees deadlines %+v", d)
	}
	if _, _, ok, _ := tx1.OldestOffset(); ok {
		t.Error("partition 1 sees an offset")
	}
	if _, ok, _ := p1.Position(); ok {
		t.Error("partition 1 has a position")
	}
	if _, ok, _ := p1.NextDeadline(); ok {
		t.Error("partition 1 has a deadline")
	}
	if ms, ok, _ := p0.NextDeadline(); !ok || ms != 2000 {
		t.Errorf("partition 0 next deadline %d %v", ms, ok)
	}
}

func TestPrefixIDsDoNotMix(t *testing.T) {
	db := openMem(t)
	tx := db.Partition(3).Begin(store.Position{})
	defer tx.Discard()
	ids := []string{"a", "ab", "a\x00", "a\x00\x00\x01", ""}
	for i, id := range ids {
		must(t, tx.OpenRequest(request(id, 1000, int64(i), "x", "y")))
		must(t, tx.PutAnswer(id, &store.Answer{Index: 0, OK: true, Payload: []byte(id)}))
		if i%2 == 0 {
			must(t, tx.PutAnswer(id, &store.Answer{Index: 1, Error: id}))
		}
	}
	for i, id := range ids {
		as, err := tx.Answers(id)
		must(t, err)
		want := 1 + (1 - i%2)
		if len(as) != want || string(as[0].Payload) != id || (want == 2 && as[1].Error != id) {
			t.Errorf("answers of %q: %+v", id, as)
		}
		r, ok, err := tx.Request(id)
		if !ok || err != nil || r.RequestID != id {
			t.Errorf("request %q: %+v %v %v", id, r, ok, err)
		}
		if has, _ := tx.HasAnswer(id, 1); has != (want == 2) {
			t.Errorf("HasAnswer(%q, 1) = %v", id, has)
		}
	}
	// Closing "a" leaves "ab" and the others untouched.
	r, _, _ := tx.Request("a")
	must(t, tx.CloseRequest(r, 5000))
	if _, ok, _ := tx.Request("a"); ok {
		t.Error("a is still open")
	}
	if as, _ := tx.Answers("a"); len(as) != 0 {
		t.Errorf("answers of a after close: %+v", as)
	}
	for _, id := range ids[1:] {
		if as, _ := tx.Answers(id); len(as) == 0 {
			t.Errorf("closing a removed the answers of %q", id)
		}
		if _, ok, _ := tx.Closed(id); ok {
			t.Errorf("%q is closed", id)
		}
	}
	if c, ok, _ := tx.Closed("a"); !ok || c != (store.Closed{ExpiresMs: 5000, ManifestOffset: 0}) {
		t.Errorf("closed a: %+v %v", c, ok)
	}
}

func TestDeadlineIndex(t *testing.T) {
	db := openMem(t)
	tx := db.Partition(0).Begin(store.Position{})
	defer tx.Discard()
	for i, r := range []struct {
		id       string
		deadline int64
	}{{"late", 3000}, {"b", 2000}, {"a", 2000}, {"first", 1000}, {"c", 2000}, {"bound", 2500}} {
		must(t, tx.OpenRequest(request(r.id, r.deadline, int64(i))))
	}
	str := func(ds []store.Due) string {
		var s []string
		for _, d := range ds {
			s = append(s, fmt.Sprintf("%s@%d", d.RequestID, d.DeadlineMs))
		}
		return strings.Join(s, " ")
	}
	for _, tc := range []struct {
		before int64
		limit  int
		want   string
	}{
		{1000, 10, ""}, // a deadline equal to the bound is not before it
		{1001, 10, "first@1000"},
		{2000, 10, "first@1000"},
		{2001, 10, "first@1000 a@2000 b@2000 c@2000"},
		{2001, 2, "first@1000 a@2000"},
		{2001, 0, ""},
		{2500, 10, "first@1000 a@2000 b@2000 c@2000"},
		{2501, 10, "first@1000 a@2000 b@2000 c@2000 bound@2500"},
		{1 << 50, 10, "first@1000 a@2000 b@2000 c@2000 bound@2500 late@3000"},
	} {
		got, err := tx.DueBefore(tc.before, tc.limit)
		must(t, err)
		if str(got) != tc.want {
			t.Errorf("DueBefore(%d, %d) = %s, want %s", tc.before, tc.limit, str(got), tc.want)
		}
	}
	if ms, ok, err := tx.NextDeadline(); !ok || ms != 1000 || err != nil {
		t.Errorf("next deadline %d %v %v", ms, ok, err)
	}
	r, _, _ := tx.Request("first")
	must(t, tx.CloseRequest(r, 9000))
	if ms, _, _ := tx.NextDeadline(); ms != 2000 {
		t.Errorf("next deadline after closing first: %d", ms)
	}
	if got, _ := tx.DueBefore(2001, 10); str(got) != "a@2000 b@2000 c@2000" {
		t.Errorf("after close: %s", str(got))
	}
}

// A scan of the deadline index starts at the smallest deadline the last one
// found: a request opened since with an earlier deadline must still be
// found, in the overlay and, once committed, in the store.
func TestNextDeadlineAfterTheBoundMoved(t *testing.T) {
	db := openMem(t)
	p := db.Partition(0)
	tx := p.Begin(store.Position{})
	for i, id := range []string{"a", "b", "c"} {
		must(t, tx.OpenRequest(request(id, 1000*int64(i+1), int64(i))))
	}
	for _, id := range []string{"a", "b"} {
		r, _, _ := tx.Request(id)
		must(t, tx.CloseRequest(r, 9000))
	}
	if ms, ok, err := tx.NextDeadline(); !ok || ms != 3000 || err != nil {
		t.Fatalf("overlay: next deadline %d %v %v, want 3000", ms, ok, err)
	}
	commit(t, tx, store.Position{Next: 3})
	if ms, ok, err := p.NextDeadline(); !ok || ms != 3000 || err != nil {
		t.Fatalf("store: next deadline %d %v %v, want 3000", ms, ok, err)
	}

	// Below the bound both scans started at.
	tx = p.Begin(store.Position{Next: 3, Open: 1})
	must(t, tx.OpenRequest(request("early", 1500, 3)))
	if ms, ok, err := tx.NextDeadline(); !ok || ms != 1500 || err != nil {
		t.Errorf("overlay: next deadline %d %v %v after opening one due at 1500", ms, ok, err)
	}
	if ms, _, _ := p.NextDeadline(); ms != 3000 {
		t.Errorf("store: next deadline %d before the overlay commits, want 3000", ms)
	}
	commit(t, tx, store.Position{Next: 4})
	if ms, ok, err := p.NextDeadline(); !ok || ms != 1500 || err != nil {
		t.Errorf("store: next deadline %d %v %v after opening one due at 1500", ms, ok, err)
	}
	tx = p.Begin(store.Position{Next: 4, Open: 2})
	defer tx.Discard()
	if ds, err := tx.DueBefore(3001, 10); err != nil || len(ds) != 2 || ds[0].RequestID != "early" || ds[1].RequestID != "c" {
		t.Errorf("due before 3001: %+v %v", ds, err)
	}

	// Everything closed, then one opened: none, then that one.
	for _, id := range []string{"early", "c"} {
		r, _, _ := tx.Request(id)
		must(t, tx.CloseRequest(r, 9000))
	}
	if _, ok, err := tx.NextDeadline(); ok || err != nil {
		t.Errorf("a next deadline with nothing open (%v)", err)
	}
	must(t, tx.OpenRequest(request("last", 500, 5)))
	if ms, ok, err := tx.NextDeadline(); !ok || ms != 500 || err != nil {
		t.Errorf("overlay: next deadline %d %v %v, want 500", ms, ok, err)
	}
}

// Ties are ordered by the length-prefixed id: shorter ids first, then bytes.
func TestDeadlineTiesByEncodedID(t *testing.T) {
	db := openMem(t)
	tx := db.Partition(0).Begin(store.Position{})
	defer tx.Discard()
	for i, id := range []string{"zz", "b", "aa", "a"} {
		must(t, tx.OpenRequest(request(id, 100, int64(i))))
	}
	got, err := tx.DueBefore(101, 10)
	must(t, err)
	var ids []string
	for _, d := range got {
		ids = append(ids, d.RequestID)
	}
	if strings.Join(ids, " ") != "a b aa zz" {
		t.Errorf("tie order %q", ids)
	}
}

func TestExpireClosed(t *testing.T) {
	db := openMem(t)
	tx := db.Partition(0).Begin(store.Position{})
	defer tx.Discard()
	for i, c := range []struct {
		id      string
		expires int64
	}{{"x", 5000}, {"y", 6000}, {"z", 5000}, {"xx", 7000}} {
		r := request(c.id, 1000, int64(10+i), "a")
		must(t, tx.OpenRequest(r))
		must(t, tx.CloseRequest(r, c.expires))
	}
	closed := func() string {
		var s []string
		for _, id := range []string{"x", "y", "z", "xx"} {
			if _, ok, err := tx.Closed(id); ok && err == nil {
				s = append(s, id)
			}
		}
		return strings.Join(s, " ")
	}
	for _, tc := range []struct {
		ms     int64
		n      int
		closed string
		oldest int64
	}{
		{4999, 0, "x y z xx", 10},
		{5000, 2, "y xx", 11}, // expiry at ms is included
		{5000, 0, "y xx", 11},
		{6500, 1, "xx", 13},
		{1 << 50, 1, "", -1},
	} {
		n, err := tx.ExpireClosed(tc.ms)
		must(t, err)
		if n != tc.n || closed() != tc.closed {
			t.Errorf("ExpireClosed(%d) = %d, closed %q; want %d, %q", tc.ms, n, closed(), tc.n, tc.closed)
		}
		off, _, ok, err := tx.OldestOffset()
		must(t, err)
		if tc.oldest < 0 && ok || tc.oldest >= 0 && (!ok || off != tc.oldest) {
			t.Errorf("after ExpireClosed(%d): oldest %d %v, want %d", tc.ms, off, ok, tc.oldest)
		}
	}
	if tx.Open() != 0 {
		t.Errorf("open %d", tx.Open())
	}
}

func TestOldestOffset(t *testing.T) {
	db := openMem(t)
	tx := db.Partition(0).Begin(store.Position{})
	defer tx.Discard()
	if _, _, ok, err := tx.OldestOffset(); ok || err != nil {
		t.Fatalf("empty: %v %v", ok, err)
	}
	r300 := request("r300", 1000, 300)
	must(t, tx.OpenRequest(r300))
	must(t, tx.OpenRequest(request("r7", 1000, 7)))
	must(t, tx.OpenRequest(request("r1000", 1000, 1000)))
	r7, _, _ := tx.Request("r7")
	if off, _, ok, _ := tx.OldestOffset(); !ok || off != 7 {
		t.Errorf("oldest %d, want 7", off)
	}
	// A closed request still holds its offset until its memory expires.
	must(t, tx.CloseRequest(r7, 50))
	if off, _, _, _ := tx.OldestOffset(); off != 7 {
		t.Errorf("oldest %d after closing r7, want 7", off)
	}
	if _, err := tx.ExpireClosed(50); err != nil {
		t.Fatal(err)
	}
	if off, _, _, _ := tx.OldestOffset(); off != 300 {
		t.Errorf("oldest %d after r7 expired, want 300", off)
	}
}

func TestDiscardRemovesOnlyItsPartition(t *testing.T) {
	db := openMem(t)
	for _, p := range []int32{0, 1, 2, 255, 256} {
		tx := db.Partition(p).Begin(store.Position{})
		must(t, tx.OpenRequest(request("r", 1000, 1, "a")))
		must(t, tx.PutAnswer("r", &store.Answer{Index: 0, OK: true}))
		commit(t, tx, store.Position{Next: int64(p) + 1})
	}
	must(t, db.Partition(1).Discard())
	must(t, db.Partition(255).Discard())
	for _, p := range []int32{0, 1, 2, 255, 256} {
		gone := p == 1 || p == 255
		pos, ok, err := db.Partition(p).Position()
		must(t, err)
		tx := db.Partition(p).Begin(pos)
		_, open, _ := tx.Request("r")
		as, _ := tx.Answers("r")
		_, _, hasOffset, _ := tx.OldestOffset()
		_, hasDeadline, _ := db.Partition(p).NextDeadline()
		tx.Discard()
		if gone && (ok || open || len(as) != 0 || hasOffset || hasDeadline) {
			t.Errorf("partition %d: state left after Discard", p)
		}
		if !gone && (!ok || pos.Next != int64(p)+1 || !open || len(as) != 1 || !hasOffset || !hasDeadline) {
			t.Errorf("partition %d: state lost by another partition's Discard (pos %+v open %v answers %d)", p, pos, open, len(as))
		}
	}
}

func TestPositionRoundTrip(t *testing.T) {
	db := openMem(t)
	p := db.Partition(7)
	if _, ok, err := p.Position(); ok || err != nil {
		t.Fatalf("fresh: %v %v", ok, err)
	}
	for _, pos := range []store.Position{
		{Epoch: "e1", Next: 42, Oldest: 10, StreamTime: 1_700_000_000_000},
		{Epoch: "", Next: 0, Oldest: 0, StreamTime: 0},
		{Epoch: "replay-2026-01-01T00:00:00Z", Next: 1 << 40, Oldest: 1<<40 - 1, StreamTime: -1},
	} {
		tx := p.Begin(store.Position{})
		must(t, tx.OpenRequest(request("r", 5, 1)))
		// Version and Open are the store's: the caller's values are ignored.
		in := pos
		in.Version, in.Open = 99, 99
		commit(t, tx, in)
		got, ok, err := p.Position()
		want := pos
		want.Version, want.Open = store.FormatVersion, 1
		if !ok || err != nil || got != want {
			t.Errorf("position %+v (%v %v), want %+v", got, ok, err, want)
		}
		must(t, p.Discard())
	}
}

func TestTxnDiscardLeavesDBUntouched(t *testing.T) {
	db := openMem(t)
	p := db.Partition(0)
	tx := p.Begin(store.Position{})
	must(t, tx.OpenRequest(request("kept", 1000, 1, "a")))
	commit(t, tx, store.Position{Next: 2})
	before, _, _ := p.Position()

	tx = p.Begin(before)
	must(t, tx.OpenRequest(request("dropped", 500, 2, "a")))
	must(t, tx.PutAnswer("kept", &store.Answer{Index: 0, OK: true}))
	kept, _, _ := tx.Request("kept")
	kept.OK = 1
	must(t, tx.PutRequest(kept))
	r, _, _ := tx.Request("kept")
	must(t, tx.CloseRequest(r, 100))
	if tx.Len() == 0 {
		t.Error("an overlay with changes has length 0")
	}
	// The overlay sees its writes; the DB does not.
	if _, ok, _ := tx.Request("dropped"); !ok {
		t.Error("the overlay does not read its own write")
	}
	if ms, _, _ := p.NextDeadline(); ms != 1000 {
		t.Errorf("the store's next deadline is %d before the overlay commits", ms)
	}
	tx.Discard()

	after, _, _ := p.Position()
	if after != before {
		t.Errorf("position %+v, want %+v", after, before)
	}
	tx = p.Begin(after)
	defer tx.Discard()
	if _, ok, _ := tx.Request("dropped"); ok {
		t.Error("a discarded request is in the store")
	}
	r, ok, _ := tx.Request("kept")
	if !ok || r.OK != 0 {
		t.Errorf("kept: %+v %v", r, ok)
	}
	if has, _ := tx.HasAnswer("kept", 0); has {
		t.Error("a discarded answer is in the store")
	}
	if _, closed, _ := tx.Closed("kept"); closed {
		t.Error("a discarded close is in the store")
	}
	if tx.Open() != 1 {
		t.Errorf("open %d, want 1", tx.Open())
	}
}

func TestOpenCount(t *testing.T) {
	db := openMem(t)
	p := db.Partition(0)
	tx := p.Begin(store.Position{})
	for i := range 5 {
		must(t, tx.OpenRequest(request(fmt.Sprint("r", i), 1000, int64(i))))
	}
	if tx.Open() != 5 {
		t.Errorf("open %d, want 5", tx.Open())
	}
	r, _, _ := tx.Request("r2")
	must(t, tx.CloseRequest(r, 10))
	commit(t, tx, store.Position{Next: 5})
	pos, _, _ := p.Position()
	if pos.Open != 4 {
		t.Errorf("stored open %d, want 4", pos.Open)
	}
	// A new Txn starts from the position's count.
	tx = p.Begin(pos)
	defer tx.Discard()
	if tx.Open() != 4 {
		t.Errorf("open %d, want 4", tx.Open())
	}
	r, _, _ = tx.Request("r0")
	must(t, tx.CloseRequest(r, 10))
	if tx.Open() != 3 {
		t.Errorf("open %d, want 3", tx.Open())
	}
}

func TestRequestAndAnswerRoundTrip(t *testing.T) {
	db := openMem(t)
	tx := db.Partition(0).Begin(store.Position{})
	defer tx.Discard()
	r := &store.Request{
		RequestID: "r1", Tasks: []schemas.TaskRef{{TaskID: "r1/a/0", Target: "a", Item: 0}, {TaskID: "r1/b", Target: "b", Item: -1}},
		Strategy: "quorum", Quorum: 2, MaxFailures: 1, OpenedMs: 10, DeadlineMs: 20, ManifestOffset: 30,
		Attributes: schemas.AttributesOf(map[string]string{"k": "v"}), OK: 1, Failed: 1, Duplicates: 3, Seen: []byte{0b11},
	}
	must(t, tx.OpenRequest(r))
	got, ok, err := tx.Request("r1")
	if !ok || err != nil || !reflect.DeepEqual(got, r) {
		t.Errorf("request\n got %+v\nwant %+v", got, r)
	}
	if r.Answered() != 2 {
		t.Errorf("answered %d", r.Answered())
	}
	// Answers come back in task order, whatever the order they were put in.
	a1 := store.Answer{Index: 1, Error: "down", LogMs: 15, Attempts: 2, DurationMs: 7}
	a0 := store.Answer{Index: 0, OK: true, Payload: []byte(`{"p":1}`), LogMs: 12, Attempts: 1}
	must(t, tx.PutAnswer("r1", &a1))
	must(t, tx.PutAnswer("r1", &a0))
	as, err := tx.Answers("r1")
	must(t, err)
	if len(as) != 2 || !reflect.DeepEqual(as[0].Payload, a0.Payload) || as[0].Index != 0 || as[1].Error != "down" || as[1].DurationMs != 7 {
		t.Errorf("answers %+v", as)
	}
}

func TestLongRequestID(t *testing.T) {
	db := openMem(t)
	tx := db.Partition(0).Begin(store.Position{})
	defer tx.Discard()
	long := strings.Repeat("x", schemas.MaxRequestIDBytes+1)
	if _, _, err := tx.Request(long); !errors.Is(err, store.ErrKeyTooLong) {
		t.Errorf("Request: %v", err)
	}
	if err := tx.OpenRequest(request(long, 1, 1)); !errors.Is(err, store.ErrKeyTooLong) {
		t.Errorf("OpenRequest: %v", err)
	}
	if _, _, err := tx.Closed(long); !errors.Is(err, store.ErrKeyTooLong) {
		t.Errorf("Closed: %v", err)
	}
	ok := strings.Repeat("y", schemas.MaxRequestIDBytes)
	must(t, tx.OpenRequest(request(ok, 1, 1)))
	if r, found, err := tx.Request(ok); !found || err != nil || r.RequestID != ok {
		t.Errorf("longest id: %v %v", found, err)
	}
}

func TestReopenOnSameFS(t *testing.T) {
	fs := vfs.NewMem()
	db, err := store.Open("state", store.WithFS(fs))
	must(t, err)
	tx := db.Partition(4).Begin(store.Position{})
	must(t, tx.OpenRequest(request("r", 1000, 3)))
	commit(t, tx, store.Position{Next: 4, Oldest: 3})
	must(t, db.Close())

	db, err = store.Open("state", store.WithFS(fs))
	must(t, err)
	defer db.Close()
	pos, ok, err := db.Partition(4).Position()
	if !ok || err != nil || pos.Next != 4 || pos.Oldest != 3 || pos.Open != 1 {
		t.Errorf("after reopen: %+v %v %v", pos, ok, err)
	}
	if db.DiskUsage() == 0 {
		t.Error("disk usage 0")
	}
}

func TestSeenBitmap(t *testing.T) {
	var r store.Request
	for _, i := range []int{0, 7, 8, 63} {
		if r.HasAnswered(i) {
			t.Fatalf("task %d answered before it was set", i)
		}
		r.SetAnswered(i)
		if !r.HasAnswered(i) {
			t.Fatalf("task %d not answered after it was set", i)
		}
	}
	for _, i := range []int{1, 6, 9, 62, 64, 1000} {
		if r.HasAnswered(i) {
			t.Errorf("task %d answered, never set", i)
		}
	}
}
