package main

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/scattergather/scattergather"
	"github.com/scattergather/scattergather/processor/admin"
	"github.com/scattergather/scattergather/processor/kafka"
	"github.com/scattergather/scattergather/processor/topology"
	"github.com/scattergather/scattergather/schemas"
)

// provider simulates a flight-price API: it answers after a random delay,
// sometimes with a server error, and (hangRate) sometimes never.
type provider struct {
	name           string
	env            string // the topology's URL variable
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

func (p *provider) roll(taskID string) (delay time.Duration, fail, hang bool, price float64) {
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

func (p *provider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
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

func (p *provider) start() error { return p.startOn("127.0.0.1:0") }

func (p *provider) startOn(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	p.url = "http://" + ln.Addr().String() + "/quote"
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 5 * time.Second}
	go p.srv.Serve(ln) //nolint:errcheck // ends with Close
	return nil
}

func (p *provider) stop() {
	close(p.hangingClosers)
	_ = p.srv.Close()
}

func cmdDemo(ctx context.Context, e *env, args []string) int {
	f := newFlags(e, "demo", "[--requests N] [--rate PER_SECOND] [--seed N]")
	f.logFlags()
	f.Lookup("log-level").DefValue = "warn"
	f.logLevel = "warn"
	n := f.Int("requests", 300, "requests to send")
	rate := f.Float64("rate", 100, "requests per second")
	seed := f.Uint64("seed", 1, "seed of the simulated providers")
	if code, ok := f.parse(args); !ok {
		return code
	}
	if *n < 1 || *rate <= 0 {
		return f.usageError("--requests and --rate must be positive")
	}
	log, err := f.logger(e)
	if err != nil {
		return f.usageError("%v", err)
	}
	d := &demo{e: e, log: log, n: *n, rate: *rate, seed: *seed}
	if err := d.run(ctx); err != nil {
		return fail(e, "demo", err)
	}
	if !d.exactlyOnce {
		return exitFail
	}
	return exitOK
}

type demo struct {
	e           *env
	log         *slog.Logger
	n           int
	rate        float64
	seed        uint64
	exactlyOnce bool
}

func (d *demo) run(ctx context.Context) error {
	out := d.e.stdout
	start := time.Now()

	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		return fmt.Errorf("in-process broker: %w", err)
	}
	defer cluster.Close()

	providers := demoProviders(d.seed)
	vars := map[string]string{"SG_BROKERS": strings.Join(cluster.ListenAddrs(), ",")}
	for _, p := range providers {
		if err := p.start(); err != nil {
			return fmt.Errorf("provider %s: %w", p.name, err)
		}
		defer p.stop()
		vars[p.env] = p.url
	}
	topo, err := topology.Parse("topology.yaml", scattergather.ExampleTopology, func(k string) (string, bool) {
		v, ok := vars[k]
		return v, ok
	})
	if err != nil {
		return err
	}
	flow := topo.Flows[0]
	stateDir, err := os.MkdirTemp("", "scattergather-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stateDir)

	fmt.Fprintf(out, "scattergather demo: flow %q (%s), strategy %s, consolidation %s by %s, timeout %s\n",
		flow.Name, flow.Description, flow.Strategy.Type, flow.Consolidate.Type, flow.Consolidate.Field, flow.Timeout)
	fmt.Fprintf(out, "in-process Kafka (kfake) at %s, Pebble state in %s\n", vars["SG_BROKERS"], stateDir)
	for _, p := range providers {
		fmt.Fprintf(out, "provider %-10s %s  %d-%d ms, %.0f%% errors", p.name, p.url, p.minMs, p.maxMs, p.failRate*100)
		if p.hangRate > 0 {
			fmt.Fprintf(out, ", %.0f%% never answer", p.hangRate*100)
		}
		fmt.Fprintln(out)
	}

	setup, cancelSetup := context.WithTimeout(ctx, 30*time.Second)
	defer cancelSetup()
	if _, err := admin.CreateTopics(setup, topo, nil, kafka.WithLogger(d.log)); err != nil {
		return err
	}
	runners, err := kafka.Roles(topo, topo.Flows, kafka.RoleAll, stateDir, kafka.WithLogger(d.log), kafka.WithInstance("demo"))
	if err != nil {
		return err
	}
	var g *kafka.Gather
	for _, r := range runners {
		if gr, ok := r.(*kafka.Gather); ok {
			g = gr
		}
	}
	runCtx, stopRun := context.WithCancel(ctx)
	runDone := make(chan error, 1)
	go func() { runDone <- kafka.RunAll(runCtx, runners...) }()
	defer func() {
		stopRun()
		<-runDone
	}()

	reader, err := admin.NewReader(topo, flow.Topics.Aggregated, true, kafka.WithLogger(d.log))
	if err != nil {
		return err
	}
	defer reader.Close()
	sender, err := admin.NewSender(topo, kafka.WithLogger(d.log))
	if err != nil {
		return err
	}
	defer sender.Close()

	var (
		mu       sync.Mutex
		sentAt   = make(map[string]time.Time, d.n)
		aggs     = make(map[string]*schemas.Aggregate, d.n)
		order    []string
		dups     int
		hist     = hdrhistogram.New(1, 120_000, 3)
		sendErrs int
	)
	readDone := make(chan struct{})
	readCtx, stopRead := context.WithCancel(ctx)
	defer stopRead()
	go func() {
		defer close(readDone)
		for {
			recs, err := reader.Poll(readCtx)
			if readCtx.Err() != nil {
				return
			}
			if err != nil {
				d.log.Warn("read aggregates", "err", err)
			}
			now := time.Now()
			mu.Lock()
			for _, r := range recs {
				var a schemas.Aggregate
				if err := schemas.DecodeInto(r.Value, &a); err != nil {
					d.log.Error("aggregate", "err", err)
					continue
				}
				if _, dup := aggs[a.RequestID]; dup {
					dups++
					continue
				}
				aggs[a.RequestID] = &a
				order = append(order, a.RequestID)
				if t, ok := sentAt[a.RequestID]; ok {
					_ = hist.RecordValue(max(now.Sub(t).Milliseconds(), 1))
				}
			}
			done := len(aggs) >= d.n
			mu.Unlock()
			if done {
				return
			}
		}
	}()

	routes := [][2]string{{"AMS", "JFK"}, {"LHR", "SFO"}, {"CDG", "NRT"}, {"FRA", "SIN"}, {"MAD", "GRU"}}
	progress := newProgress(out)
	interval := time.Duration(float64(time.Second) / d.rate)
	sendStart := time.Now()
	for i := range d.n {
		// Open loop: each request leaves at its planned time.
		if wait := time.Until(sendStart.Add(time.Duration(i) * interval)); wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		rt := routes[i%len(routes)]
		id := fmt.Sprintf("demo-%04d", i+1)
		req := &schemas.Request{RequestID: id, Flow: flow.Name, ContentType: schemas.ContentTypeJSON,
			Payload:    fmt.Appendf(nil, `{"from":%q,"to":%q,"date":"2027-03-%02d"}`, rt[0], rt[1], 1+i%28),
			Attributes: schemas.Attributes{{Key: "source", Value: "demo"}}}
		mu.Lock()
		sentAt[id] = time.Now()
		mu.Unlock()
		if err := sender.Send(ctx, req, func(err error) {
			if err != nil {
				mu.Lock()
				sendErrs++
				mu.Unlock()
			}
		}); err != nil {
			return err
		}
		mu.Lock()
		got := len(aggs)
		mu.Unlock()
		progress.show(i+1, d.n, got, g.Stats().Open)
	}
	if err := sender.Flush(ctx); err != nil {
		return err
	}
	// Every request completes by its deadline; allow for ticks and slack.
	waitFor := flow.Timeout.D + 10*time.Second
	timer := time.NewTimer(waitFor)
	defer timer.Stop()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		select {
		case <-readDone:
			break wait
		case <-timer.C:
			break wait
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			mu.Lock()
			got := len(aggs)
			mu.Unlock()
			progress.show(d.n, d.n, got, g.Stats().Open)
		}
	}
	stopRead()
	<-readDone
	mu.Lock()
	defer mu.Unlock()
	progress.done()
	stats := g.Stats()
	elapsed := time.Since(start)

	byOutcome := map[schemas.Outcome]int{}
	for _, a := range aggs {
		byOutcome[a.Outcome]++
	}
	d.exactlyOnce = len(aggs) == d.n && dups == 0 && sendErrs == 0
	verdict := "exactly one each"
	if !d.exactlyOnce {
		verdict = fmt.Sprintf("MISSING %d, DUPLICATES %d, SEND ERRORS %d", d.n-len(aggs), dups, sendErrs)
	}
	fmt.Fprintf(out, "\n%d requests -> %d aggregates (%s) in %.1fs\n\n", d.n, len(aggs), verdict, elapsed.Seconds())
	fmt.Fprintln(out, "aggregates by outcome:")
	for _, o := range []schemas.Outcome{schemas.OutcomeComplete, schemas.OutcomeFirst, schemas.OutcomeQuorum, schemas.OutcomeDeadline, schemas.OutcomeTimeout, schemas.OutcomeFailed} {
		if c := byOutcome[o]; c > 0 {
			fmt.Fprintf(out, "  %-9s %5d  %s\n", o, c, outcomeNote(o))
		}
	}
	fmt.Fprintf(out, "\nrequest -> aggregate latency (send to read_committed read): p50 %d ms, p90 %d ms, p99 %d ms, max %d ms\n",
		hist.ValueAtQuantile(50), hist.ValueAtQuantile(90), hist.ValueAtQuantile(99), hist.Max())
	fmt.Fprintf(out, "late results: %d (answers after their deadline, in %s); dead letters: %d; ticks written: %d\n",
		stats.Late, flow.Topics.Late, stats.DeadLettered, stats.Ticks)
	var calls []string
	for _, p := range providers {
		p.mu.Lock()
		calls = append(calls, fmt.Sprintf("%s %d (%d hung)", p.name, p.calls, p.hangs))
		p.mu.Unlock()
	}
	fmt.Fprintf(out, "provider calls: %s\n", strings.Join(calls, ", "))

	fmt.Fprintln(out, "\na few consolidated events:")
	for _, id := range sample(order, aggs) {
		b, _ := json.Marshal(summaryOf(aggs[id]))
		fmt.Fprintf(out, "  %s\n", b)
	}
	return nil
}

func outcomeNote(o schemas.Outcome) string {
	switch o {
	case schemas.OutcomeComplete:
		return "every provider answered (OK or error) before the deadline"
	case schemas.OutcomeTimeout:
		return "a provider had not answered at the deadline; the cheapest offer that arrived is kept"
	case schemas.OutcomeFailed:
		return "every provider failed"
	}
	return ""
}

// sample picks a few aggregates that show different outcomes.
func sample(order []string, aggs map[string]*schemas.Aggregate) []string {
	var out []string
	seen := map[schemas.Outcome]int{}
	for _, id := range order {
		o := aggs[id].Outcome
		if seen[o] < 2 && len(out) < 4 {
			seen[o]++
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

type eventSummary struct {
	RequestID string          `json:"request_id"`
	Outcome   string          `json:"outcome"`
	Reason    string          `json:"reason,omitempty"`
	Result    json.RawMessage `json:"result"`
	Answered  []string        `json:"answered"`
	Failed    []string        `json:"failed,omitempty"`
	Missing   []string        `json:"missing,omitempty"`
	TookMs    int64           `json:"took_ms"`
}

func summaryOf(a *schemas.Aggregate) eventSummary {
	s := eventSummary{RequestID: a.RequestID, Outcome: string(a.Outcome), Reason: a.Reason, Result: a.Result, TookMs: a.CompletedMs - a.OpenedMs, Answered: []string{}}
	for _, x := range a.Answered {
		s.Answered = append(s.Answered, x.Target)
	}
	for _, x := range a.Failed {
		s.Failed = append(s.Failed, x.Target+": "+x.Error)
	}
	for _, x := range a.Missing {
		s.Missing = append(s.Missing, x.Target)
	}
	return s
}

// progress prints a live line: rewritten in place on a terminal, a line a
// second otherwise.
type progress struct {
	w     io.Writer
	tty   bool
	last  time.Time
	shown bool
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

func (p *progress) show(sent, total, aggregated int, open int64) {
	every := time.Second
	if p.tty {
		every = 100 * time.Millisecond
	}
	if time.Since(p.last) < every && sent < total {
		return
	}
	p.last = time.Now()
	line := fmt.Sprintf("sent %d/%d  aggregated %d  open in gather %d", sent, total, aggregated, open)
	if p.tty {
		fmt.Fprintf(p.w, "\r%-70s", line)
	} else {
		fmt.Fprintln(p.w, line)
	}
	p.shown = true
}

func (p *progress) done() {
	if p.tty && p.shown {
		fmt.Fprintln(p.w)
	}
}

func demoProviders(seed uint64) []*provider {
	ps := []*provider{
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

// cmdProviders serves the demo's simulated providers on fixed addresses,
// for running the example topology against a real cluster (docker-compose).
func cmdProviders(ctx context.Context, e *env, args []string) int {
	f := newFlags(e, "providers", "[--listen ADDR,ADDR,ADDR] [--seed N]")
	listen := f.String("listen", "127.0.0.1:8081,127.0.0.1:8082,127.0.0.1:8083", "addresses of skyscanner, kayak and expedia")
	seed := f.Uint64("seed", 1, "seed of the simulated answers")
	if code, ok := f.parse(args); !ok {
		return code
	}
	addrs := strings.Split(*listen, ",")
	ps := demoProviders(*seed)
	if len(addrs) != len(ps) {
		return f.usageError("--listen wants %d addresses", len(ps))
	}
	for i, p := range ps {
		if err := p.startOn(addrs[i]); err != nil {
			return fail(e, "providers", err)
		}
		defer p.stop()
		fmt.Fprintf(e.stdout, "provider %-10s %s\n", p.name, p.url)
	}
	<-ctx.Done()
	return exitOK
}
