package bench

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// CallShape is what a provider-calls scenario changes: the providers'
// behaviour, the topology's worker section and target t0's keys, and the
// one rate it runs at.
type CallShape struct {
	// Rate is the scenario's one rate, requests/s.
	Rate float64 `json:"rate"`
	// Warmup and Window replace the run's (0: keep them).
	Warmup time.Duration `json:"warmup,omitempty"`
	Window time.Duration `json:"window,omitempty"`
	// Timeout is the flow's timeout. Default 10s.
	Timeout time.Duration `json:"timeout,omitempty"`
	// Stragglers is the share of target t0's calls that take
	// StragglerLatency instead of the scenario's latency.
	Stragglers       float64       `json:"stragglers,omitempty"`
	StragglerLatency time.Duration `json:"straggler_latency,omitempty"`
	// Worker is the flow's worker section as YAML, e.g. "{cancel: never}".
	Worker string `json:"worker,omitempty"`
	// Target0 is YAML keys added to target t0, e.g. "hedge: {}".
	Target0 string `json:"target0,omitempty"`
}

// CallScenarios are the scenarios of provider calls: cancellation of
// superseded calls (first, and quorum 2 of 5, with 20–400 ms providers),
// stragglers with and without hedging, and a provider with a quota.
func CallScenarios() []Scenario {
	var out []Scenario
	slow := func(name, strategy, cancel string) Scenario {
		return Scenario{Name: name, Fanout: 5, Strategy: strategy, MinLatency: 20 * time.Millisecond, MaxLatency: 400 * time.Millisecond,
			Calls: &CallShape{Rate: 50, Worker: "{cancel: " + cancel + "}"}}
	}
	out = append(out,
		slow("calls: first of 5, cancel never", "first", "never"),
		slow("calls: first of 5, cancel decided", "first", "decided"),
		slow("calls: quorum 2 of 5, cancel never", "{type: quorum, quorum: 2}", "never"),
		slow("calls: quorum 2 of 5, cancel decided", "{type: quorum, quorum: 2}", "decided"),
	)
	straggle := func(name, target0 string) Scenario {
		return Scenario{Name: name, Fanout: 3, Strategy: "all", MinLatency: 20 * time.Millisecond, MaxLatency: 50 * time.Millisecond,
			Calls: &CallShape{Rate: 100, Warmup: 5 * time.Second, Window: 20 * time.Second,
				Stragglers: 0.02, StragglerLatency: 2 * time.Second, Target0: target0}}
	}
	out = append(out,
		straggle("calls: stragglers, no hedging", ""),
		straggle("calls: stragglers, hedged", "hedge: {}"),
		Scenario{Name: "calls: quota 200/s, 300 req/s", Fanout: 3, Strategy: "all",
			Calls: &CallShape{Rate: 300, Timeout: 2 * time.Second, Warmup: 3 * time.Second, Window: 10 * time.Second,
				Target0: "rate_limit: {per_second: 200, burst: 20}"}},
	)
	return out
}

// CallResult is what one provider-calls scenario measured, over the
// requests sent in its window.
type CallResult struct {
	Scenario Scenario `json:"scenario"`
	Step     Step     `json:"step"`
	// Tasks is the window's requests × the fan-out.
	Tasks int `json:"tasks"`
	// Started and Finished are the provider calls per request that began
	// and that ran to their end (not cut by a cancellation).
	Started  float64 `json:"calls_started_per_request"`
	Finished float64 `json:"calls_finished_per_request"`
	// ProviderMs is the providers' busy time per request.
	ProviderMs float64 `json:"provider_ms_per_request"`
	// Extra is the calls beyond one per task (hedges, retries), as a share
	// of the tasks.
	Extra float64 `json:"extra_calls"`
	// PeakPerSecond and PerSecond are target t0's calls begun in the
	// busiest whole second and on average, from the window's first request
	// to its last call.
	PeakPerSecond float64 `json:"t0_peak_calls_per_second"`
	PerSecond     float64 `json:"t0_calls_per_second"`
	// RateLimited counts answers refused by a rate limit without a call.
	RateLimited int `json:"rate_limited"`
}

// RunCalls runs one provider-calls scenario at its rate.
func RunCalls(ctx context.Context, cfg Config, sc Scenario) (*CallResult, error) {
	if sc.Calls == nil || sc.Calls.Rate <= 0 {
		return nil, fmt.Errorf("bench: %s is no provider-calls scenario", sc.Name)
	}
	if sc.Calls.Warmup > 0 {
		cfg.Warmup = sc.Calls.Warmup
	}
	if sc.Calls.Window > 0 {
		cfg.Window = sc.Calls.Window
	}
	r, s, err := startWithSender(ctx, cfg, sc)
	if err != nil {
		return nil, err
	}
	defer r.stop()
	defer s.Close()
	st, err := r.step(ctx, s, sc.Calls.Rate)
	if err != nil {
		return nil, err
	}
	r.track.mu.Lock()
	limited := r.track.rateLimited
	r.track.mu.Unlock()
	res := r.calls.result(sc, st)
	res.RateLimited = limited
	fmt.Fprintf(cfg.Progress, "  %-40s %5.0f req/s: received %d/%d, p50 %6.1f ms, p99 %7.1f ms; calls/request started %.2f, finished %.2f, provider %.0f ms/request, extra %.1f %%; t0 %.0f calls/s (peak %.0f), rate limited %d\n",
		sc.Name, st.Rate, st.Received, st.Sent, st.Latency.P50, st.Latency.P99, res.Started, res.Finished, res.ProviderMs, 100*res.Extra, res.PerSecond, res.PeakPerSecond, limited)
	return res, nil
}

// callCounts counts the provider calls made for the requests of the
// measured window: those whose sequence number is above the one the
// window began at.
type callCounts struct {
	from    atomic.Int64 // requests r<n> with n > from count; MaxInt64 counts none
	started []atomic.Int64
	ended   []atomic.Int64
	busyNs  atomic.Int64

	mu     sync.Mutex
	begun  time.Time
	perSec map[int64]int // t0's calls by second since begun
	last   time.Time     // t0's last call
}

func newCallCounts(targets int) *callCounts {
	c := &callCounts{started: make([]atomic.Int64, targets), ended: make([]atomic.Int64, targets), perSec: map[int64]int{}}
	c.from.Store(1<<63 - 1)
	return c
}

// begin counts the calls of the requests after seq from now on.
func (c *callCounts) begin(seq int64) {
	c.mu.Lock()
	c.begun, c.perSec, c.last = time.Now(), map[int64]int{}, time.Time{}
	c.mu.Unlock()
	for i := range c.started {
		c.started[i].Store(0)
		c.ended[i].Store(0)
	}
	c.busyNs.Store(0)
	c.from.Store(seq)
}

// start counts a call of target i for request id, if the window's; the
// returned func records its end (ran to the end or cut).
func (c *callCounts) start(i int, id string) func(finished bool) {
	n, err := strconv.ParseInt(strings.TrimPrefix(id, "r"), 10, 64)
	if err != nil || n <= c.from.Load() {
		return func(bool) {}
	}
	c.started[i].Add(1)
	now := time.Now()
	if i == 0 {
		c.mu.Lock()
		c.perSec[int64(now.Sub(c.begun)/time.Second)]++
		c.last = now
		c.mu.Unlock()
	}
	return func(finished bool) {
		c.busyNs.Add(int64(time.Since(now)))
		if finished {
			c.ended[i].Add(1)
		}
	}
}

func (c *callCounts) result(sc Scenario, st Step) *CallResult {
	res := &CallResult{Scenario: sc, Step: st, Tasks: st.Sent * sc.Fanout}
	if st.Sent == 0 {
		return res
	}
	var started, ended int64
	for i := range c.started {
		started += c.started[i].Load()
		ended += c.ended[i].Load()
	}
	n := float64(st.Sent)
	res.Started, res.Finished = float64(started)/n, float64(ended)/n
	res.ProviderMs = float64(c.busyNs.Load()) / 1e6 / n
	res.Extra = float64(started)/float64(res.Tasks) - 1
	c.mu.Lock()
	defer c.mu.Unlock()
	var total int
	for _, k := range c.perSec {
		res.PeakPerSecond = max(res.PeakPerSecond, float64(k))
		total += k
	}
	if span := c.last.Sub(c.begun).Seconds(); span > 0 {
		res.PerSecond = float64(total) / span
	}
	return res
}

// WriteCallsTable writes the provider-calls scenarios as a table.
func WriteCallsTable(w io.Writer, results []*CallResult) {
	if len(results) == 0 {
		return
	}
	fmt.Fprintf(w, "\n%-40s %7s %9s %9s %10s %10s %12s %8s %9s %9s\n", "provider calls", "req/s", "p50", "p99", "started/r", "finished/r", "provider/r", "extra", "t0 call/s", "limited")
	for _, r := range results {
		fmt.Fprintf(w, "%-40s %7.0f %7.1fms %7.1fms %10.2f %10.2f %10.0fms %7.1f%% %9.0f %9d\n",
			r.Scenario.Name, r.Step.Rate, r.Step.Latency.P50, r.Step.Latency.P99, r.Started, r.Finished, r.ProviderMs, 100*r.Extra, r.PerSecond, r.RateLimited)
	}
}
