package worker

import (
	"context"
	"testing"
	"time"

	"github.com/scattergather/scattergather/processor/topology"
)

func hedgeConfig(quantile, budget float64, window int, minDelay time.Duration) topology.Hedge {
	return topology.Hedge{Quantile: quantile, Budget: budget, Window: window, MinDelay: topology.Duration{D: minDelay}}
}

// delayNow is the hedge's delay, without earning a call's budget.
func (h *Hedge) delayNow() (time.Duration, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.delay, h.ready
}

// TestHedgeQuantileWindow: no delay before MinHedgeSamples latencies, then
// the quantile of the last window latencies only, computed again every 1%
// of the window, and never under min_delay.
func TestHedgeQuantileWindow(t *testing.T) {
	ms := time.Millisecond
	h := NewHedge(hedgeConfig(0.9, 1, 1000, 0), nil)
	for i := 1; i < topology.MinHedgeSamples; i++ {
		h.observe(time.Duration(i) * ms)
	}
	if d, ok := h.delayNow(); ok {
		t.Fatalf("a delay (%s) after %d latencies, want none before %d", d, topology.MinHedgeSamples-1, topology.MinHedgeSamples)
	}
	h.observe(20 * ms) // 1ms .. 20ms: the 0.9 quantile is the 18th
	if d, ok := h.delayNow(); !ok || d != 18*ms {
		t.Fatalf("delay %s (%v) after 1ms..20ms, want 18ms", d, ok)
	}
	// Computed again every 10 latencies (1% of 1000).
	for range 9 {
		h.observe(time.Second)
	}
	if d, _ := h.delayNow(); d != 18*ms {
		t.Errorf("delay %s after 9 more latencies, want still 18ms", d)
	}
	h.observe(time.Second)
	// 30 latencies: 1..20ms and ten of 1s; the 27th is 1s.
	if d, _ := h.delayNow(); d != time.Second {
		t.Errorf("delay %s after 10 more latencies of 1s, want 1s", d)
	}
	// A full window of 5ms pushes every older latency out.
	for range 1000 {
		h.observe(5 * ms)
	}
	if d, _ := h.delayNow(); d != 5*ms {
		t.Errorf("delay %s after a window of 5ms, want 5ms", d)
	}

	floor := NewHedge(hedgeConfig(0.5, 1, 20, 30*ms), nil)
	for range 20 {
		floor.observe(ms)
	}
	if d, _ := floor.delayNow(); d != 30*ms {
		t.Errorf("delay %s of latencies of 1ms with min_delay 30ms, want 30ms", d)
	}
}

// TestHedgeBudget: each call earns budget, a backup spends one, and the
// savings stop at max(10, budget × window).
func TestHedgeBudget(t *testing.T) {
	h := NewHedge(hedgeConfig(0.95, 0.05, 1000, 0), nil)
	if h.spend() {
		t.Fatal("a backup before any call")
	}
	for range 19 {
		h.begin()
	}
	if h.spend() {
		t.Fatal("a backup after 19 calls at 5%")
	}
	h.begin()
	if !h.spend() {
		t.Fatal("no backup after 20 calls at 5%")
	}
	if h.spend() {
		t.Fatal("two backups after 20 calls at 5%")
	}

	for _, tc := range []struct {
		budget float64
		window int
		saved  int
	}{
		{0.5, 1000, 500},
		{0.05, 100, 10},
		{1, 20, 20},
	} {
		h := NewHedge(hedgeConfig(0.95, tc.budget, tc.window, 0), nil)
		for range 100_000 {
			h.begin()
		}
		n := 0
		for h.spend() {
			n++
		}
		if n != tc.saved {
			t.Errorf("budget %v, window %d: %d backups saved up, want %d", tc.budget, tc.window, n, tc.saved)
		}
	}
}

func TestEndpoint(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		n    int
		want int
	}{
		{"first try", ctx, 3, 0},
		{"no endpoints", withTry(ctx, 2), 0, 0},
		{"second try", withTry(ctx, 1), 3, 1},
		{"fourth try wraps", withTry(ctx, 3), 3, 0},
		{"backup of the first try", asBackup(ctx), 3, 1},
		{"backup of the third try", asBackup(withTry(ctx, 2)), 3, 0},
		{"backup with one endpoint", asBackup(withTry(ctx, 2)), 1, 0},
		{"a later try keeps the backup", withTry(asBackup(ctx), 1), 2, 0},
	} {
		if got := Endpoint(tc.ctx, tc.n); got != tc.want {
			t.Errorf("%s: endpoint %d of %d, want %d", tc.name, got, tc.n, tc.want)
		}
	}
}
