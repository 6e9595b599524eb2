package bench

import (
	"cmp"
	"slices"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/scattergather/scattergather/processor/kafka"
)

// Transactions is what the transactions of one role (scatter or gather)
// carried and took in a step's window.
type Transactions struct {
	// PerSecond is the transactions ended per second of the window.
	PerSecond float64 `json:"per_second"`
	// Records is the mean of the input records a transaction carried.
	Records float64 `json:"records_per_transaction"`
	// P50Ms and P99Ms are a transaction's length, from its begin to the
	// brokers' answer to its end.
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
	// EndP50Ms is the median of its end: outputs acknowledged, offsets
	// added, transaction ended.
	EndP50Ms float64 `json:"end_p50_ms"`
	// RoundTrips are the role's requests to the brokers in the window, by
	// kind (fetches, which wait for records, left out), most time a
	// transaction first.
	RoundTrips []RoundTrip `json:"round_trips,omitempty"`
}

// RoundTrip is what one kind of request of a role cost its transactions.
type RoundTrip struct {
	Request string `json:"request"`
	// PerTxn is the requests of the kind sent per transaction ended.
	PerTxn float64 `json:"per_transaction"`
	// P50Ms and MeanMs are a request's time from its write to its
	// response read (franz-go's end-to-end time).
	P50Ms  float64 `json:"p50_ms"`
	MeanMs float64 `json:"mean_ms"`
}

// MsPerTxn is the time the kind took a transaction: PerTxn × MeanMs.
func (rt RoundTrip) MsPerTxn() float64 { return rt.PerTxn * rt.MeanMs }

// txnMeter is the roles' kafka.HookTransactionTimed and, for the scatter's
// and the gather's clients, kafka.HookClient: it measures the transactions
// that end between begin and stop, and the requests those clients send.
type txnMeter struct {
	mu    sync.Mutex
	on    bool
	since time.Time
	roles map[string]*txnRole
}

type txnRole struct {
	took, end *hdrhistogram.Histogram // µs
	records   int
	count     int
	requests  map[int16]*requestTimes
}

type requestTimes struct {
	took  *hdrhistogram.Histogram // µs
	count int
	sum   time.Duration
}

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, 60_000_000, 2) }

// role is the meter of role; m.mu is held.
func (m *txnMeter) role(role string) *txnRole {
	r := m.roles[role]
	if r == nil {
		r = &txnRole{took: newHist(), end: newHist(), requests: map[int16]*requestTimes{}}
		m.roles[role] = r
	}
	return r
}

// ClientHooks times the requests of the scatter's and the gather's
// transactional clients.
func (m *txnMeter) ClientHooks(client string) []kgo.Hook {
	if client != kafka.RoleScatter && client != kafka.RoleGather {
		return nil
	}
	return []kgo.Hook{requestHook{m: m, role: client}}
}

type requestHook struct {
	m    *txnMeter
	role string
}

func (h requestHook) OnBrokerE2E(_ kgo.BrokerMetadata, key int16, e2e kgo.BrokerE2E) {
	if key == int16(kmsg.Fetch) || e2e.Err() != nil {
		return
	}
	m := h.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.on {
		return
	}
	r := m.role(h.role)
	rt := r.requests[key]
	if rt == nil {
		rt = &requestTimes{took: newHist()}
		r.requests[key] = rt
	}
	d := e2e.DurationE2E()
	_ = rt.took.RecordValue(max(d.Microseconds(), 1))
	rt.count++
	rt.sum += d
}

func (m *txnMeter) OnTransactionTimed(_, role string, records int, took, end time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.on {
		return
	}
	r := m.role(role)
	_ = r.took.RecordValue(max(took.Microseconds(), 1))
	_ = r.end.RecordValue(max(end.Microseconds(), 1))
	r.records += records
	r.count++
}

// begin starts a window: what ended before it is forgotten.
func (m *txnMeter) begin() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.on, m.since, m.roles = true, time.Now(), map[string]*txnRole{}
}

// stop ends the window and returns each role's transactions in it.
func (m *txnMeter) stop() map[string]*Transactions {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.on = false
	secs := time.Since(m.since).Seconds()
	out := map[string]*Transactions{}
	ms := func(h *hdrhistogram.Histogram, q float64) float64 { return float64(h.ValueAtQuantile(q)) / 1000 }
	for role, r := range m.roles {
		if r.count == 0 {
			continue
		}
		t := &Transactions{PerSecond: float64(r.count) / secs, Records: float64(r.records) / float64(r.count),
			P50Ms: ms(r.took, 50), P99Ms: ms(r.took, 99), EndP50Ms: ms(r.end, 50)}
		for key, rt := range r.requests {
			t.RoundTrips = append(t.RoundTrips, RoundTrip{Request: kmsg.NameForKey(key), PerTxn: float64(rt.count) / float64(r.count),
				P50Ms: ms(rt.took, 50), MeanMs: rt.sum.Seconds() * 1000 / float64(rt.count)})
		}
		slices.SortFunc(t.RoundTrips, func(a, b RoundTrip) int {
			return cmp.Or(cmp.Compare(b.MsPerTxn(), a.MsPerTxn()), cmp.Compare(a.Request, b.Request))
		})
		out[role] = t
	}
	return out
}
