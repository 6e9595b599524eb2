package kafka_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scattergather/scattergather/internal/processortest"
	"github.com/scattergather/scattergather/processor/kafka"
	"github.com/scattergather/scattergather/schemas"
)

// quotaProvider is a scripted provider with a quota: more than limit calls
// in any second are answered 429 with Retry-After: 1, and so is its first
// call, which also holds every call for the second after it.
type quotaProvider struct {
	limit int

	mu      sync.Mutex
	calls   []time.Time
	over    int // calls answered 429 for the quota or during the pause
	pausing time.Time
}

func (p *quotaProvider) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	p.mu.Lock()
	now := time.Now()
	p.calls = append(p.calls, now)
	first := len(p.calls) == 1
	recent := 0
	for _, c := range p.calls {
		if now.Sub(c) < time.Second {
			recent++
		}
	}
	throttle := first || now.Before(p.pausing) || recent > p.limit
	if first {
		p.pausing = now.Add(time.Second)
	} else if throttle {
		p.over++
	}
	p.mu.Unlock()
	if throttle {
		w.Header().Set("Retry-After", "1")
		http.Error(w, "quota exceeded", http.StatusTooManyRequests)
		return
	}
	fmt.Fprint(w, `{"price": 10}`)
}

func (p *quotaProvider) counts() (calls, over int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.calls), p.over
}

type rateHook struct{ events }

func (h *rateHook) OnRateLimit(_, target, event string) { h.add(target, event) }

// runRateLimit: under load, the calls to a provider with a quota stay
// within the target's rate_limit, its 429 with Retry-After holds the
// target's calls, and every request completes.
func runRateLimit(t *testing.T, brokers []string) {
	p := &quotaProvider{limit: 25}
	srv := httptest.NewServer(p)
	defer srv.Close()
	topo, f := processortest.Topology(t, brokers, fmt.Sprintf(`
timeout: 60s
targets:
  - name: quota
    rate_limit: {per_second: 20, burst: 1}
    http: {url: %s, retries: 2, backoff: 10ms}
strategy: {type: all}
`, srv.URL))
	processortest.CreateTopics(t, topo, f)
	hook := &rateHook{}
	runners, err := kafka.Roles(topo, topo.Flows, kafka.RoleAll, t.TempDir(), kafka.WithHooks(hook))
	if err != nil {
		t.Fatal(err)
	}
	processortest.Start(t, runners...)
	const n = 60
	processortest.Send(t, topo, requests(f.Name, n)...)
	for id, a := range processortest.Aggregates(t, topo, f, n, 2*time.Minute) {
		if a.Outcome != schemas.OutcomeComplete || names(a.Answered) != "quota" {
			t.Errorf("%s: outcome %s (%s), answered %q", id, a.Outcome, a.Reason, names(a.Answered))
		}
	}
	calls, over := p.counts()
	if over != 0 || calls != n+1 {
		t.Errorf("provider: %d calls for %d tasks, %d beyond its quota or its Retry-After; want %d and none", calls, n, over, n+1)
	}
	if hook.count("quota/retry_after") != 1 || hook.count("quota/delayed") == 0 {
		t.Errorf("rate limit events %v, want one retry_after and some delayed", hook.String())
	}
}

func TestRateLimitFake(t *testing.T) { runRateLimit(t, processortest.Fake(t)) }

func TestIntegrationRateLimit(t *testing.T) { runRateLimit(t, processortest.Brokers(t)) }

// runRateLimitRefused: tasks whose turn under the rate limit comes after
// their deadline are answered ERROR "rate limited" at once, without a
// call.
func runRateLimitRefused(t *testing.T, brokers []string) {
	var mu sync.Mutex
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		calls++
		mu.Unlock()
		fmt.Fprint(w, `{"price": 10}`)
	}))
	defer srv.Close()
	topo, f := processortest.Topology(t, brokers, fmt.Sprintf(`
timeout: 30s
targets:
  - name: scarce
    rate_limit: {per_second: 0.01, burst: 2}
    http: {url: %s}
strategy: {type: all}
`, srv.URL))
	processortest.CreateTopics(t, topo, f)
	runners, err := kafka.Roles(topo, topo.Flows, kafka.RoleAll, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	processortest.Start(t, runners...)
	const n = 10
	processortest.Send(t, topo, requests(f.Name, n)...)
	aggs := processortest.Aggregates(t, topo, f, n, 2*time.Minute)
	var ok, refused int
	for id, a := range aggs {
		switch {
		case a.Outcome == schemas.OutcomeComplete && len(a.Answered) == 1:
			ok++
		case a.Outcome == schemas.OutcomeFailed && len(a.Failed) == 1 && strings.HasPrefix(a.Failed[0].Error, "rate limited"):
			refused++
		default:
			t.Errorf("%s: outcome %s, answered %d, failed %v", id, a.Outcome, len(a.Answered), a.Failed)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	// The burst of 2 lets two calls through; the next turn is 100s away.
	if ok != 2 || refused != n-2 || calls != 2 {
		t.Errorf("%d answered, %d refused, %d calls; want 2, %d, 2", ok, refused, calls, n-2)
	}
}

func TestRateLimitRefusedFake(t *testing.T) { runRateLimitRefused(t, processortest.Fake(t)) }

func TestIntegrationRateLimitRefused(t *testing.T) { runRateLimitRefused(t, processortest.Brokers(t)) }
