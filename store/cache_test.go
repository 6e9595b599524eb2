package store_test

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/scattergather/scattergather/store"
)

// The cache of open requests changes nothing that can be read: the same
// changes, committed and discarded at random, read the same through a
// store with a cache of any size (none, too small for one request, a few
// requests, the default) as through one without, also after the state is
// discarded, and what is committed reads the same through a new Partition
// (whose cache is loaded from Pebble).
func TestRequestCacheReadsAsPebble(t *testing.T) {
	for _, budget := range []int64{1, 2000, 5000, store.DefaultRequestCache} {
		t.Run(fmt.Sprint(budget), func(t *testing.T) {
			open := func(cache int64) *store.DB {
				db, err := store.Open("", store.WithFS(vfs.NewMem()), store.WithCacheSize(1<<20), store.WithRequestCache(cache))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { db.Close() })
				return db
			}
			plain, cached := open(0), open(budget)
			pp, cp := plain.Partition(0), cached.Partition(0)
			var pos store.Position
			ptx, ctx := pp.Begin(pos), cp.Begin(pos)
			rng := rand.New(rand.NewPCG(1, uint64(budget)))
			ids := []string{"a", "b", "c", "d", "e", "f", "g", "h"}

			both := func(what string, fn func(tx *store.Txn) error) {
				t.Helper()
				if err := fn(ptx); err != nil {
					t.Fatalf("%s without a cache: %v", what, err)
				}
				if err := fn(ctx); err != nil {
					t.Fatalf("%s with a cache: %v", what, err)
				}
			}
			read := func(tx *store.Txn, id string) string {
				t.Helper()
				r, ok, err := tx.Request(id)
				if err != nil {
					t.Fatal(err)
				}
				as, err := tx.Answers(id)
				if err != nil {
					t.Fatal(err)
				}
				return fmt.Sprintf("%v %+v %+v", ok, r, as)
			}
			compare := func(step int, a, b *store.Txn, what string) {
				t.Helper()
				for _, id := range ids {
					if x, y := read(a, id), read(b, id); x != y {
						t.Fatalf("step %d, request %s: %s reads\n%s\nwithout a cache:\n%s", step, id, what, y, x)
					}
				}
			}
			for step := range 2000 {
				id := ids[rng.IntN(len(ids))]
				r, isOpen, err := ctx.Request(id)
				if err != nil {
					t.Fatal(err)
				}
				switch op := rng.IntN(10); {
				case op < 3 && !isOpen:
					both("open", func(tx *store.Txn) error {
						return tx.OpenRequest(request(id, int64(step), int64(step), "x", "y", "z"))
					})
				case op < 6 && isOpen:
					ix := int32(rng.IntN(3))
					both("answer", func(tx *store.Txn) error {
						r, _, _ := tx.Request(id)
						r.SetAnswered(int(ix))
						r.OK++
						if err := tx.PutAnswer(id, &store.Answer{Index: ix, OK: true, Payload: fmt.Appendf(nil, `{"n": %d}`, step)}); err != nil {
							return err
						}
						return tx.PutRequest(r)
					})
					// Changing a request read, without storing it, changes nothing.
					r.Duplicates = 99
					r.SetAnswered(2)
				case op < 7 && isOpen:
					both("close", func(tx *store.Txn) error {
						r, _, _ := tx.Request(id)
						return tx.CloseRequest(r, int64(step)+1000)
					})
				case op < 8:
					pos.Next = int64(step)
					both("commit", func(tx *store.Txn) error { return tx.Commit(pos) })
					fresh := cached.Partition(0).Begin(pos)
					ptx, ctx = pp.Begin(pos), cp.Begin(pos)
					compare(step, ptx, fresh, "Pebble alone")
					fresh.Discard()
				case op < 9:
					ptx.Discard()
					ctx.Discard()
					if rng.IntN(20) == 0 { // all state discarded
						must(t, pp.Discard())
						must(t, cp.Discard())
					}
					ptx, ctx = pp.Begin(pos), cp.Begin(pos)
				}
				compare(step, ptx, ctx, "the cached store")
			}
			ptx.Discard()
			ctx.Discard()
		})
	}
}

// A request read from the store is the caller's: changing it changes
// neither the overlay nor the committed state.
func TestRequestReadIsACopy(t *testing.T) {
	db := openMem(t)
	p := db.Partition(0)
	tx := p.Begin(store.Position{})
	must(t, tx.OpenRequest(request("r", 1000, 1, "a", "b")))
	must(t, tx.PutAnswer("r", &store.Answer{Index: 1, OK: true, Payload: []byte(`{}`)}))
	commit(t, tx, store.Position{Next: 2})
	tx = p.Begin(store.Position{Next: 2, Open: 1})
	defer tx.Discard()
	for range 2 {
		r, _, _ := tx.Request("r")
		want := &store.Request{RequestID: "r", Tasks: r.Tasks, Strategy: "all", MaxFailures: -1, DeadlineMs: 1000, ManifestOffset: 1, Attributes: r.Attributes}
		if !reflect.DeepEqual(r, want) {
			t.Fatalf("read %+v, want %+v", r, want)
		}
		r.SetAnswered(0)
		r.OK = 5
		as, _ := tx.Answers("r")
		if len(as) != 1 || as[0].Index != 1 {
			t.Fatalf("answers %+v", as)
		}
		as[0].Index = 7
	}
}
