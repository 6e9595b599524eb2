package bench

import (
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
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
}

// txnMeter is the roles' kafka.HookTransactionTimed: it measures the
// transactions that end between begin and stop.
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
}

func (m *txnMeter) OnTransactionTimed(_, role string, records int, took, end time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.on {
		return
	}
	r := m.roles[role]
	if r == nil {
		r = &txnRole{took: hdrhistogram.New(1, 60_000_000, 2), end: hdrhistogram.New(1, 60_000_000, 2)}
		m.roles[role] = r
	}
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
	for role, r := range m.roles {
		ms := func(h *hdrhistogram.Histogram, q float64) float64 { return float64(h.ValueAtQuantile(q)) / 1000 }
		out[role] = &Transactions{PerSecond: float64(r.count) / secs, Records: float64(r.records) / float64(r.count),
			P50Ms: ms(r.took, 50), P99Ms: ms(r.took, 99), EndP50Ms: ms(r.end, 50)}
	}
	return out
}
