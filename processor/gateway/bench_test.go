package gateway

import (
	"encoding/json"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/scattergather/scattergather/schemas"
)

// sampleAggregate is an aggregate of the example flow: three providers,
// the cheapest offer kept.
func sampleAggregate(id string) *schemas.Aggregate {
	a := &schemas.Aggregate{RequestID: id, Flow: "flights", Outcome: schemas.OutcomeComplete, Strategy: "all",
		Consolidation: "min", ContentType: schemas.ContentTypeJSON, Tasks: 3, Attributes: schemas.Attributes{},
		Result: []byte(`{"target":"expedia","task_id":"` + id + `/expedia","value":190.52,"answer":{"currency":"EUR","date":"2027-03-01","from":"AMS","offer":"expedia-` + id + `","price":190.52,"provider":"expedia","to":"JFK"}}`)}
	for _, t := range []string{"skyscanner", "kayak", "expedia"} {
		a.Answered = append(a.Answered, schemas.Answer{TaskID: id + "/" + t, Target: t, Item: -1, LatencyMs: 120, Attempts: 1, DurationMs: 118})
	}
	return a
}

// BenchmarkReadAggregate is what each gateway instance spends on each
// aggregate of the topics it reads: decode, JSON, index. It reports the
// index's memory per aggregate held.
func BenchmarkReadAggregate(b *testing.B) {
	recs := make([][]byte, 1024)
	for i := range recs {
		v, err := schemas.Encode(sampleAggregate(fmt.Sprintf("req-%08d", i)))
		if err != nil {
			b.Fatal(err)
		}
		recs[i] = v
	}
	x := NewIndex(DefaultIndexSize, 0, DefaultIndexTTL)
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	b.ReportAllocs()
	now := time.Now()
	for i := 0; b.Loop(); i++ {
		var a schemas.Aggregate
		if err := schemas.DecodeInto(recs[i%len(recs)], &a); err != nil {
			b.Fatal(err)
		}
		a.RequestID = fmt.Sprintf("req-%08d", i)
		j, err := json.Marshal(&a)
		if err != nil {
			b.Fatal(err)
		}
		x.Put(Key{"flights", a.RequestID}, j, now)
	}
	runtime.GC()
	runtime.ReadMemStats(&ms1)
	if n, _, _ := x.Len(); n > 0 {
		b.ReportMetric(float64(ms1.HeapAlloc-min(ms0.HeapAlloc, ms1.HeapAlloc))/float64(n), "heap-B/aggregate-held")
	}
	runtime.KeepAlive(x)
}
