package demo

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"
)

// Provider simulates a flight-price API: it answers after a random delay,
// sometimes with a server error, and for some queries never. Start it,
// then Stop it.
type Provider struct {
	name           string
	env            string // the example topology's URL variable
	minMs, maxMs   int
	failRate       float64
	hangRate       float64
	basePrice      float64
	mu             sync.Mutex
	rng            *rand.Rand
	calls, hangs   int
	srv            *http.Server
	url            string
	hangingClosers chan struct{}
}

// Providers returns the example topology's three providers, unstarted;
// seed makes their delays, errors and prices repeatable.
func Providers(seed uint64) []*Provider {
	ps := []*Provider{
		{name: "skyscanner", env: "SKYSCANNER_URL", minMs: 30, maxMs: 250, failRate: 0.03, basePrice: 180},
		{name: "kayak", env: "KAYAK_URL", minMs: 20, maxMs: 400, failRate: 0.04, hangRate: 0.04, basePrice: 170},
		{name: "expedia", env: "EXPEDIA_URL", minMs: 60, maxMs: 500, failRate: 0.02, basePrice: 175},
	}
	for i, p := range ps {
		p.rng = rand.New(rand.NewPCG(seed, uint64(i)))
		p.hangingClosers = make(chan struct{})
	}
	return ps
}

// Name is the provider's target name in the example topology.
func (p *Provider) Name() string { return p.name }

// URL is where the provider answers, once started.
func (p *Provider) URL() string { return p.url }

func (p *Provider) roll(taskID string) (delay time.Duration, fail, hang bool, price float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	delay = time.Duration(p.minMs+p.rng.IntN(p.maxMs-p.minMs+1)) * time.Millisecond
	// A query the provider chokes on hangs on every retry.
	h := fnv.New64a()
	h.Write([]byte(taskID))
	hang = float64(h.Sum64()%10000)/10000 < p.hangRate
	fail = !hang && p.rng.Float64() < p.failRate
	if hang {
		p.hangs++
	}
	price = p.basePrice + float64(p.rng.IntN(20000))/100
	return
}

// ServeHTTP answers a JSON query {from, to, date} with an offer.
func (p *Provider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var q struct{ From, To, Date string }
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&q); err != nil {
		http.Error(w, "bad query", http.StatusBadRequest)
		return
	}
	delay, fail, hang, price := p.roll(r.Header.Get("Idempotency-Key"))
	if hang {
		select { // a provider that never answers: only the caller gives up
		case <-r.Context().Done():
		case <-p.hangingClosers:
		}
		return
	}
	select {
	case <-time.After(delay):
	case <-r.Context().Done():
		return
	}
	if fail {
		http.Error(w, "upstream unavailable", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"provider":%q,"from":%q,"to":%q,"date":%q,"price":%.2f,"currency":"EUR","offer":"%s-%s"}`,
		p.name, q.From, q.To, q.Date, price, p.name, r.Header.Get("Idempotency-Key"))
}

// Start serves the provider on addr (host:port; port 0 picks a free one)
// in the background.
func (p *Provider) Start(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("demo: provider %s: %w", p.name, err)
	}
	p.url = "http://" + ln.Addr().String() + "/quote"
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 5 * time.Second}
	go p.srv.Serve(ln) //nolint:errcheck // ends with Close
	return nil
}

// Stop frees the hanging calls and closes the server.
func (p *Provider) Stop() {
	close(p.hangingClosers)
	_ = p.srv.Close()
}

// describe is the provider's line in the demo's header.
func (p *Provider) describe() string {
	s := fmt.Sprintf("provider %-10s %s  %d-%d ms, %.0f%% errors", p.name, p.url, p.minMs, p.maxMs, p.failRate*100)
	if p.hangRate > 0 {
		s += fmt.Sprintf(", %.0f%% never answer", p.hangRate*100)
	}
	return s
}

// callCount is the provider's line in the demo's report.
func (p *Provider) callCount() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return fmt.Sprintf("%s %d (%d hung)", p.name, p.calls, p.hangs)
}
