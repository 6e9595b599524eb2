package kafka_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scattergather/scattergather/internal/processortest"
	"github.com/scattergather/scattergather/processor/kafka"
	"github.com/scattergather/scattergather/processor/worker"
	"github.com/scattergather/scattergather/schemas"
)

// limitHook follows the concurrency limit of each target, and for the
// target slowing its lowest limit once it is slow.
type limitHook struct {
	slowing *slowingProvider

	mu        sync.Mutex
	limits    map[string][]int
	highest   int // of the slowing target before it slowed
	lowestNow int // of the slowing target since it slowed; 0 until then
}

func (h *limitHook) OnConcurrencyLimit(_, target string, limit int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.limits[target] = append(h.limits[target], limit)
	if target != "slow" {
		return
	}
	if !h.slowing.slowed.Load() {
		h.highest = max(h.highest, limit)
		return
	}
	if h.lowestNow == 0 || limit < h.lowestNow {
		h.lowestNow = limit
	}
}

func (h *limitHook) limitsOf(target string) []int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]int(nil), h.limits[target]...)
}

func (h *limitHook) slowLimits() (highest, lowest int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.highest, h.lowestNow
}

// slowingProvider answers in fast until after it started `after` calls,
// then ten times slower: a provider that degrades while the worker keeps
// it busy.
type slowingProvider struct {
	after      int64
	fast, slow time.Duration

	started  atomic.Int64
	finished atomic.Int64
	slowed   atomic.Bool
}

func (p *slowingProvider) Handle(ctx context.Context, _ *schemas.Task) ([]byte, error) {
	d := p.fast
	if p.started.Add(1) > p.after {
		p.slowed.Store(true)
		d = p.slow
	}
	timer := time.NewTimer(d) // the provider's latency
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
	p.finished.Add(1)
	return []byte(`{"price": 2}`), nil
}

// runAdaptiveConcurrency: when a target's provider turns ten times slower
// under a backlog, its limit shrinks below where it started; the other
// target keeps answering meanwhile, and every request still gets exactly
// one complete aggregate.
//
// With viaHTTP the providers are local HTTP servers that the worker's
// built-in HTTP handler calls; otherwise Go handlers.
func runAdaptiveConcurrency(t *testing.T, brokers []string, viaHTTP bool) {
	slow := &slowingProvider{after: 100, fast: 30 * time.Millisecond, slow: 300 * time.Millisecond}
	hook := &limitHook{slowing: slow, limits: map[string][]int{}}

	// The fast target's answers to the second batch, and how many of
	// them came while the slow target still worked on the first.
	const first, second = 300, 40 // requests
	var secondAnswered, whileBusy atomic.Int64
	fast := worker.HandlerFunc(func(_ context.Context, task *schemas.Task) ([]byte, error) {
		if strings.HasPrefix(task.RequestID, "second-") {
			if slow.finished.Load() < first {
				whileBusy.Add(1)
			}
			secondAnswered.Add(1)
		}
		return []byte(`{"price": 1}`), nil
	})
	var fastHTTP, slowHTTP string
	handlers := []kafka.WorkerOpt{kafka.WithHandler("fast", fast), kafka.WithHandler("slow", slow)}
	if viaHTTP {
		fs, ss := httptest.NewServer(serveTasks(fast)), httptest.NewServer(serveTasks(slow))
		t.Cleanup(fs.Close)
		t.Cleanup(ss.Close)
		fastHTTP, slowHTTP = fmt.Sprintf(", http: {url: %q}", fs.URL), fmt.Sprintf(", http: {url: %q}", ss.URL)
		handlers = nil
	}
	topo, f := processortest.Topology(t, brokers, fmt.Sprintf(`
timeout: 120s
targets: [{name: fast%s}, {name: slow, min_in_flight: 2, max_in_flight: 64%s}]
strategy: {type: all}
`, fastHTTP, slowHTTP))
	processortest.CreateTopics(t, topo, f)

	// A backlog first, so that the worker keeps the slow target full.
	backlog(t, topo, f, "slow", first)
	w, err := kafka.NewWorker(topo, f, append(handlers, kafka.WithHooks(hook))...)
	if err != nil {
		t.Fatal(err)
	}
	processortest.Start(t, w)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("slow provider: %d calls started, %d finished; limits %v", slow.started.Load(), slow.finished.Load(), hook.limitsOf("slow"))
		}
	})

	processortest.Eventually(t, 2*time.Minute, "the slow target's limit to shrink below where it started", func() bool {
		_, lowest := hook.slowLimits()
		return lowest > 0 && lowest < worker.InitialConcurrency
	})
	more := make([]*schemas.Request, second)
	for i := range more {
		more[i] = &schemas.Request{RequestID: fmt.Sprintf("second-%03d", i), Flow: f.Name, Payload: []byte(`{}`), ContentType: schemas.ContentTypeJSON}
	}
	processortest.Send(t, topo, more...)

	for id, a := range processortest.Aggregates(t, topo, f, first+second, 3*time.Minute) {
		if a.Outcome != schemas.OutcomeComplete || len(a.Answered) != 2 {
			t.Errorf("%s: outcome %s (%s), answered %q, failed %q", id, a.Outcome, a.Reason, names(a.Answered), names(a.Failed))
		}
	}
	highest, lowest := hook.slowLimits()
	t.Logf("slow target's limits: %v", hook.limits["slow"])
	if highest < worker.InitialConcurrency || lowest >= highest {
		t.Errorf("slow target's limit: highest %d before it slowed, lowest %d after; want it to start at %d and shrink",
			highest, lowest, worker.InitialConcurrency)
	}
	if got := whileBusy.Load(); got != second || secondAnswered.Load() != second {
		t.Errorf("fast target answered %d tasks of the second batch, %d of them while the slow target worked through the first; want all %d",
			secondAnswered.Load(), got, second)
	}
}

// serveTasks serves h over HTTP as a provider: the task is the request
// the worker's HTTP handler sends (its id in X-Request-Id).
func serveTasks(h worker.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		payload, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		out, err := h.Handle(r.Context(), &schemas.Task{RequestID: r.Header.Get("X-Request-Id"), Payload: payload})
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(out)
	})
}

func TestWorkerAdaptiveConcurrencyFake(t *testing.T) {
	runAdaptiveConcurrency(t, processortest.Fake(t), false)
}

func TestIntegrationWorkerAdaptiveConcurrency(t *testing.T) {
	runAdaptiveConcurrency(t, processortest.Brokers(t), false)
}

// The same with providers over HTTP: the limit follows the latency the
// HTTP handler measures.
func TestIntegrationWorkerAdaptiveConcurrencyHTTP(t *testing.T) {
	runAdaptiveConcurrency(t, processortest.Brokers(t), true)
}
