package kafka_test

import (
	"fmt"
	"io"
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

// straggler is a provider with two endpoints: the first hangs for 2s on
// the requests straggles names, the second always answers at once. Each
// answer names its endpoint and its request.
type straggler struct {
	straggles func(requestID string) bool

	mu    sync.Mutex
	calls map[string]int  // by endpoint
	cut   map[string]bool // requests whose hanging call was cancelled
}

func (p *straggler) endpoint(name string, hangs bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Read to the end: the server notices a closed connection, and
		// cancels the request's context, only then.
		_, _ = io.Copy(io.Discard, r.Body)
		id := r.Header.Get("X-Request-Id")
		p.mu.Lock()
		p.calls[name]++
		p.mu.Unlock()
		if hangs && p.straggles(id) {
			select {
			case <-r.Context().Done():
				p.mu.Lock()
				p.cut[id] = true
				p.mu.Unlock()
				return
			case <-time.After(2 * time.Second):
			}
		}
		fmt.Fprintf(w, `{"endpoint":%q,"request":%q}`, name, id)
	})
}

func (p *straggler) counts() (calls map[string]int, cut int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	calls = map[string]int{}
	for k, v := range p.calls {
		calls[k] = v
	}
	return calls, len(p.cut)
}

// events counts the events a test hook is told, by "target/event".
type events struct {
	mu sync.Mutex
	n  map[string]int
}

func (e *events) add(target, event string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.n == nil {
		e.n = map[string]int{}
	}
	e.n[target+"/"+event]++
}

// String lists the counts.
func (e *events) String() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return fmt.Sprint(e.n)
}

func (e *events) count(key string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.n[key]
}

type hedgeHook struct{ events }

func (h *hedgeHook) OnHedge(_, target, event string) { h.add(target, event) }

// runHedge: a target with two endpoints whose first hangs for 2s on every
// 25th request. Once the hedge has seen enough calls, each hanging call
// gets a backup call to the second endpoint, whose answer is kept, and is
// cancelled; every request gets exactly one aggregate.
func runHedge(t *testing.T, brokers []string) {
	const warm, n = 40, 100
	p := &straggler{calls: map[string]int{}, cut: map[string]bool{},
		straggles: func(id string) bool {
			var i int
			_, err := fmt.Sscanf(id, "req-%03d", &i)
			return err == nil && i%25 == 0
		}}
	a := httptest.NewServer(p.endpoint("a", true))
	defer a.Close()
	b := httptest.NewServer(p.endpoint("b", false))
	defer b.Close()
	// budget: 1 lets every slow call have a backup, so that the calls
	// slowed down by the load alone cannot leave a hanging one without.
	topo, f := processortest.Topology(t, brokers, fmt.Sprintf(`
timeout: 30s
targets:
  - name: hedged
    hedge: {quantile: 0.95, budget: 1, window: 100}
    http: {endpoints: [%s, %s]}
strategy: {type: all}
`, a.URL, b.URL))
	processortest.CreateTopics(t, topo, f)
	hook := &hedgeHook{}
	runners, err := kafka.Roles(topo, topo.Flows, kafka.RoleAll, t.TempDir(), kafka.WithHooks(hook))
	if err != nil {
		t.Fatal(err)
	}
	processortest.Start(t, runners...)

	// Calls the hedge learns the provider's latency from: none hangs.
	reqs := requests(f.Name, warm)
	for i, r := range reqs {
		r.RequestID = fmt.Sprintf("warm-%03d", i)
	}
	processortest.Send(t, topo, reqs...)
	processortest.Aggregates(t, topo, f, warm, 2*time.Minute)

	processortest.Send(t, topo, requests(f.Name, n)...)
	aggs := processortest.Aggregates(t, topo, f, warm+n, 2*time.Minute)
	stragglers := 0
	for id, ag := range aggs {
		if ag.Outcome != schemas.OutcomeComplete || len(ag.Answered) != 1 {
			t.Errorf("%s: outcome %s (%s), %d answers", id, ag.Outcome, ag.Reason, len(ag.Answered))
			continue
		}
		if !strings.Contains(string(ag.Result), fmt.Sprintf(`"request":%q`, id)) {
			t.Errorf("%s: result %s, want the answer to this request", id, ag.Result)
		}
		if !p.straggles(id) {
			continue
		}
		stragglers++
		if !strings.Contains(string(ag.Result), `"endpoint":"b"`) || ag.Answered[0].Attempts != 2 {
			t.Errorf("%s hangs at the first endpoint: result %s after %d attempts, want the second endpoint's answer after 2",
				id, ag.Result, ag.Answered[0].Attempts)
		}
	}
	if stragglers != n/25 {
		t.Fatalf("%d hanging requests among the aggregates, want %d", stragglers, n/25)
	}
	// Each hanging call was cut short, not waited for.
	processortest.Eventually(t, time.Minute, "the hanging calls to be cancelled", func() bool {
		_, cut := p.counts()
		return cut == stragglers
	})
	calls, _ := p.counts()
	t.Logf("hedge events %v, calls %v", hook.String(), calls)
	sent, won := hook.count("hedged/sent"), hook.count("hedged/won")
	if sent < stragglers || won < stragglers || hook.count("hedged/budget_exhausted") != 0 {
		t.Errorf("hedge events %v, want at least %d sent and won, none budget_exhausted", hook.String(), stragglers)
	}
	// Only backups go to b (a backup cut short before it left may not
	// reach it).
	if calls["b"] < stragglers || calls["b"] > sent {
		t.Errorf("calls %v, want between %d and %d to b (the backups)", calls, stragglers, sent)
	}
}

func TestHedgeFake(t *testing.T) { runHedge(t, processortest.Fake(t)) }

func TestIntegrationHedge(t *testing.T) { runHedge(t, processortest.Brokers(t)) }
