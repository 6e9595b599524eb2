package bench

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestTableShowsKneeAndSaturation(t *testing.T) {
	low := &Step{Rate: 20, Sustainable: true, Latency: Latency{P50: 18, P99: 40}}
	knee := &Step{Rate: 1131, Sustainable: true, Latency: Latency{P50: 30, P99: 95},
		CPU: &CPU{Requests: 5655, Profiled: true, Scatter: 20, Workers: 30, Gather: 50, Other: 40, Process: 150, Broker: 90}}
	sat := &Step{Rate: 4525, Sustainable: true, Latency: Latency{P50: 400, P99: 1500}, CPU: &CPU{Requests: 22625, Process: 120},
		Transactions: map[string]*Transactions{"gather": {PerSecond: 61, Records: 297.5, P50Ms: 14.2, P99Ms: 40, EndP50Ms: 9.5,
			RoundTrips: []RoundTrip{{Request: "EndTxn", PerTxn: 1, MeanMs: 2.5}, {Request: "Produce", PerTxn: 2, MeanMs: 1}, {Request: "Metadata", PerTxn: 0.01, MeanMs: 10}}}}}
	r := &Report{Scenarios: []*ScenarioResult{
		{Scenario: Scenario{Name: "a"}, Steps: []Step{*low, *knee, *sat}, MaxSustainable: 4525, Knee: 1131, KneeP99Ms: 100, LowLoad: low, AtKnee: knee, Saturation: sat, Efficiency: 0.25},
		{Scenario: Scenario{Name: "b"}, Steps: []Step{*sat}, MaxSustainable: 200, KneeP99Ms: 100, LowLoad: low, Saturation: sat},
		{Scenario: Scenario{Name: "c"}, Steps: []Step{{Rate: 100}}, KneeP99Ms: 100, LowLoad: low},
		{Scenario: Scenario{Name: "low only"}, KneeP99Ms: 100, LowLoad: low},
	}}
	var buf bytes.Buffer
	r.WriteTable(&buf)
	out := buf.String()
	for _, want := range []string{
		"a                                  4525       1131     18.0ms     40.0ms     30.0ms     95.0ms       0.25",
		"b                                   200       none     18.0ms     40.0ms          -          -       0.00",
		"c                                  none       none     18.0ms     40.0ms          -          -       0.00",
		"low only                              -          -     18.0ms     40.0ms          -          -       0.00",
		"a, knee                                      1131      150       20       30       50       40      100       90  20/30/50 %",
		"a, saturation                                4525      120        0        0        0        0        0        0  (no profile)",
		"a, saturation                                4525 gather         61        297.5   14.2ms   40.0ms    9.5ms",
		"b, saturation                                4525 gather ",
		"    requests a transaction (count × mean): EndTxn 1.00×2.50ms, Produce 2.00×1.00ms, sum 4.6ms",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestTxnMeterMeasuresTheWindowOnly(t *testing.T) {
	m := &txnMeter{}
	m.OnTransactionTimed("f", "gather", 1000, time.Second, time.Second) // before the window
	m.begin()
	for i := range 100 {
		took := time.Duration(i+1) * time.Millisecond
		m.OnTransactionTimed("f", "gather", 10+i%2*20, took, took/2)
	}
	m.OnTransactionTimed("f", "scatter", 7, 3*time.Millisecond, 2*time.Millisecond)
	got := m.stop()
	m.OnTransactionTimed("f", "gather", 1000, time.Second, time.Second) // after it
	g, sc := got["gather"], got["scatter"]
	if g == nil || sc == nil || len(got) != 2 {
		t.Fatalf("roles %v, want gather and scatter", got)
	}
	if g.Records != 20 || g.P50Ms < 49 || g.P50Ms > 51 || g.P99Ms < 98 || g.P99Ms > 100 || g.EndP50Ms < 24 || g.EndP50Ms > 26 {
		t.Errorf("gather %+v, want 20 records a transaction, p50 50 ms, p99 99 ms, end p50 25 ms", *g)
	}
	if g.PerSecond <= 0 || sc.Records != 7 {
		t.Errorf("gather %v/s, scatter %v records a transaction; want a rate and 7", g.PerSecond, sc.Records)
	}
}

func TestTxnMeterTimesTheTransactionalClientsRequests(t *testing.T) {
	m := &txnMeter{}
	if hs := m.ClientHooks("worker.t0"); len(hs) != 0 {
		t.Errorf("a worker's client got %d hooks, want none", len(hs))
	}
	hs := m.ClientHooks("gather")
	if len(hs) != 1 {
		t.Fatalf("the gather's client got %d hooks, want 1", len(hs))
	}
	h := hs[0].(kgo.HookBrokerE2E)
	took := func(d time.Duration) kgo.BrokerE2E { return kgo.BrokerE2E{ReadWait: d} }
	h.OnBrokerE2E(kgo.BrokerMetadata{}, int16(kmsg.EndTxn), took(time.Second)) // before the window
	m.begin()
	for range 2 {
		m.OnTransactionTimed("f", "gather", 10, 5*time.Millisecond, 4*time.Millisecond)
		h.OnBrokerE2E(kgo.BrokerMetadata{}, int16(kmsg.EndTxn), took(3*time.Millisecond))
		h.OnBrokerE2E(kgo.BrokerMetadata{}, int16(kmsg.AddPartitionsToTxn), took(time.Millisecond))
		h.OnBrokerE2E(kgo.BrokerMetadata{}, int16(kmsg.AddPartitionsToTxn), took(time.Millisecond))
		h.OnBrokerE2E(kgo.BrokerMetadata{}, int16(kmsg.Fetch), took(time.Second)) // waits for records: left out
	}
	h.OnBrokerE2E(kgo.BrokerMetadata{}, int16(kmsg.Produce), kgo.BrokerE2E{ReadWait: time.Second, ReadErr: errors.New("reset")})
	got := m.stop()["gather"]
	if got == nil {
		t.Fatal("no gather transactions")
	}
	want := []RoundTrip{{Request: "EndTxn", PerTxn: 1, P50Ms: 3, MeanMs: 3}, {Request: "AddPartitionsToTxn", PerTxn: 2, P50Ms: 1, MeanMs: 1}}
	if len(got.RoundTrips) != len(want) {
		t.Fatalf("round trips %+v, want %+v", got.RoundTrips, want)
	}
	for i, w := range want {
		g := got.RoundTrips[i]
		if g.Request != w.Request || g.PerTxn != w.PerTxn || math.Abs(g.MeanMs-w.MeanMs) > 0.01 || math.Abs(g.P50Ms-w.P50Ms) > 0.05 {
			t.Errorf("round trip %d: %+v, want %+v", i, g, w)
		}
	}
}
