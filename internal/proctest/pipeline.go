package proctest

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scattergather/scattergather/internal/collect"
	"github.com/scattergather/scattergather/internal/load"
	"github.com/scattergather/scattergather/internal/processortest"
	"github.com/scattergather/scattergather/processor/admin"
	"github.com/scattergather/scattergather/processor/kafka"
	"github.com/scattergather/scattergather/processor/topology"
	"github.com/scattergather/scattergather/schemas"
)

// EnvLogs, when set, makes a pipeline log every line of every process at
// the end of the test; otherwise a failed test shows the last 15 of each.
const EnvLogs = "SG_FAULT_LOGS"

// Config describes a pipeline: one flow with targets a, b and c on a
// Provider, consolidated to the cheapest price.
type Config struct {
	Brokers []string
	// Prefix starts the unique flow and group names.
	Prefix string
	// Timeout is the flow's timeout, e.g. "40s".
	Timeout string
	// Hang names the target that never answers, or "".
	Hang string
	// Hangs, when not nil, makes a target hang for a while at the test's
	// word (Hangs.Start, Hangs.Stop), and records what it left unanswered.
	Hangs *Hangs
	// Partitions of the flow's topics; 0 leaves the topology's default.
	Partitions int
	// ReplicationFactor of the topics; 0 leaves the topology's default.
	ReplicationFactor int
	// SendWithin bounds Load; default 3 minutes.
	SendWithin time.Duration
	// AggregatesWithin bounds reading the aggregates in Check; default 3
	// minutes.
	AggregatesWithin time.Duration
	// SenderOpts configure the load's producer.
	SenderOpts []kafka.Opt
}

// Pipeline is a flow whose roles run as processes of the binary, with a
// read_committed collector on its aggregated topic. Its processes are
// killed at the end of the test.
type Pipeline struct {
	T        *testing.T
	Dir      string // the test's directory: topology, logs, state
	TopoPath string
	Topo     *topology.Topology
	Flow     *topology.Flow
	Col      *collect.Collector // what a read_committed consumer reads, and when

	cfg     Config
	bin     string
	procsMu sync.Mutex
	procs   []*Proc
	bg      sync.WaitGroup // fault actions still running

	mu    sync.Mutex
	sent  map[string]time.Time // request id → when it was sent
	acked map[string]time.Time // request id → when the broker acknowledged it
}

// New writes the topology, creates its topics and starts the collector.
func New(t *testing.T, cfg Config) *Pipeline {
	t.Helper()
	if cfg.SendWithin == 0 {
		cfg.SendWithin = 3 * time.Minute
	}
	if cfg.AggregatesWithin == 0 {
		cfg.AggregatesWithin = 3 * time.Minute
	}
	p := &Pipeline{T: t, cfg: cfg, bin: Binary(t), Dir: t.TempDir(), sent: map[string]time.Time{}, acked: map[string]time.Time{}}
	srv := provider(t, cfg.Hang, cfg.Hangs)
	name := processortest.Unique(cfg.Prefix)
	var kafkaExtra, flowExtra string
	if cfg.ReplicationFactor > 0 {
		kafkaExtra = fmt.Sprintf("  replication_factor: %d\n", cfg.ReplicationFactor)
	}
	if cfg.Partitions > 0 {
		flowExtra = fmt.Sprintf("    partitions: %d\n", cfg.Partitions)
	}
	doc := fmt.Sprintf(`
kafka:
  brokers: [%s]
  group_prefix: %s
%s  session_timeout: 6s
  transaction_timeout: 10s
flows:
  - name: %s
%s    timeout: %s
    targets:
      - {name: a, http: {url: "%s/a", timeout: 30s, circuit_breaker: {failures: 0}}}
      - {name: b, http: {url: "%s/b", timeout: 30s, circuit_breaker: {failures: 0}}}
      - {name: c, http: {url: "%s/c", timeout: 30s, circuit_breaker: {failures: 0}}}
    consolidate: {type: min, field: price}
    gather: {tick_interval: 100ms}
    worker: {deadline_grace: 300ms}
`, strings.Join(cfg.Brokers, ","), name, kafkaExtra, name, flowExtra, cfg.Timeout, srv.URL, srv.URL, srv.URL)
	p.TopoPath = filepath.Join(p.Dir, "topology.yaml")
	if err := os.WriteFile(p.TopoPath, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	topo, err := topology.LoadFile(p.TopoPath)
	if err != nil {
		t.Fatal(err)
	}
	p.Topo, p.Flow = topo, topo.Flows[0]
	processortest.CreateTopics(t, topo, p.Flow)
	t.Cleanup(func() {
		p.bg.Wait()
		p.procsMu.Lock()
		defer p.procsMu.Unlock()
		for _, pr := range p.procs {
			pr.Kill()
		}
		if t.Failed() || os.Getenv(EnvLogs) != "" {
			keep := 15
			if os.Getenv(EnvLogs) != "" {
				keep = -1
			}
			for _, pr := range p.procs {
				t.Logf("--- last lines of %s:\n%s", pr.Name, pr.lastLines(keep))
			}
		}
	})
	if p.Col, err = collect.Start(topo, p.Flow, collect.ArrivalsOnly()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Col.Close)
	return p
}

// Start runs the binary with a role; it is not waited for.
func (p *Pipeline) Start(name, role, instance string, extra ...string) *Proc {
	p.T.Helper()
	args := append([]string{"run", "--topology", p.TopoPath, "--role", role, "--instance-id", instance, "--log-format", "json", "--http-addr", "127.0.0.1:0"}, extra...)
	return p.launch(name, args)
}

// Restart starts pr's command again (same identity, same state), with
// extra arguments after it.
func (p *Pipeline) Restart(pr *Proc, extra ...string) *Proc {
	p.T.Helper()
	return p.launch(pr.Name, append(slices.Clone(pr.Args), extra...))
}

func (p *Pipeline) launch(name string, args []string) *Proc {
	p.T.Helper()
	p.procsMu.Lock()
	defer p.procsMu.Unlock()
	pr := &Proc{Name: name, Args: args, Log: filepath.Join(p.Dir, fmt.Sprintf("%s-%d.log", name, len(p.procs)))}
	pr.launch(p.T, p.bin)
	p.procs = append(p.procs, pr)
	return pr
}

// Go runs a slow part of a fault action in the background; Check and the
// end of the test wait for it.
func (p *Pipeline) Go(f func()) {
	p.bg.Add(1)
	go func() {
		defer p.bg.Done()
		f()
	}()
}

// WaitReady waits until every one of ps answers 200 on /readyz: the load
// then starts on a running pipeline.
func (p *Pipeline) WaitReady(ps ...*Proc) {
	p.T.Helper()
	cl := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(2 * time.Minute)
	for _, pr := range ps {
		for {
			if !pr.Running() {
				p.T.Fatalf("%s exited before it was ready", pr.Name)
			}
			if addr := pr.Addr(); addr != "" {
				if resp, err := cl.Get("http://" + addr + "/readyz"); err == nil {
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						break
					}
				}
			}
			if time.Now().After(deadline) {
				p.T.Fatalf("%s not ready within 2 minutes", pr.Name)
			}
			<-time.After(100 * time.Millisecond)
		}
	}
}

// UnexpectedExits fails the test for every process that exited without
// the test stopping it.
func (p *Pipeline) UnexpectedExits() {
	p.T.Helper()
	p.procsMu.Lock()
	defer p.procsMu.Unlock()
	for _, pr := range p.procs {
		if !pr.expectedExit() && !pr.Running() {
			p.T.Errorf("%s exited by itself (status %d); last lines:\n%s", pr.Name, pr.cmd.ProcessState.ExitCode(), pr.lastLines(10))
		}
	}
}

// Load sends n requests at rate per second, calling the action at index
// i just before request i, and returns when all are acknowledged. Actions
// run on the sending goroutine: a slow one runs its slow part in Go.
func (p *Pipeline) Load(n int, rate float64, at map[int]func()) {
	p.T.Helper()
	s, err := admin.NewSender(p.Topo, p.cfg.SenderOpts...)
	if err != nil {
		p.T.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.SendWithin)
	defer cancel()
	errs := make(chan error, n)
	sched := load.NewSchedule(rate)
	for i := range n {
		if f := at[i]; f != nil {
			f()
		}
		if _, err := sched.Wait(ctx, i); err != nil {
			p.T.Fatal(err)
		}
		id := fmt.Sprintf("req-%05d", i)
		p.mu.Lock()
		p.sent[id] = time.Now()
		p.mu.Unlock()
		req := &schemas.Request{RequestID: id, Flow: p.Flow.Name, Payload: []byte(`{"q":1}`), ContentType: schemas.ContentTypeJSON}
		if err := s.Send(ctx, req, func(err error) {
			if err == nil {
				p.mu.Lock()
				p.acked[id] = time.Now()
				p.mu.Unlock()
			}
			errs <- err
		}); err != nil {
			p.T.Fatal(err)
		}
	}
	for range n {
		if err := <-errs; err != nil {
			p.T.Fatalf("send: %v", err)
		}
	}
}

// Sent returns when each request was sent, by request id.
func (p *Pipeline) Sent() map[string]time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.sent)
}

// Acked returns when the broker acknowledged each request, by request id.
func (p *Pipeline) Acked() map[string]time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.acked)
}

// Recovery is the time from the fault until every request sent within
// half a second around it had its aggregate: how long the fault held the
// pipeline up; "-" when none was sent then.
func (p *Pipeline) Recovery(fault time.Time) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var worst time.Time
	for id, at := range p.sent {
		if d := at.Sub(fault); d > -500*time.Millisecond && d < 500*time.Millisecond {
			if r, _ := p.Col.Arrived(id); r.After(worst) {
				worst = r
			}
		}
	}
	if worst.IsZero() {
		return "-"
	}
	return worst.Sub(fault).Round(10 * time.Millisecond).String()
}

// Latency returns the median and the largest request→aggregate latency
// of the requests sent in [from, to).
func (p *Pipeline) Latency(from, to time.Time) (p50, worst time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var ls []time.Duration
	for id, at := range p.sent {
		if !at.Before(from) && at.Before(to) {
			if r, ok := p.Col.Arrived(id); ok {
				ls = append(ls, r.Sub(at))
			}
		}
	}
	if len(ls) == 0 {
		return 0, 0
	}
	slices.Sort(ls)
	return ls[len(ls)/2].Round(time.Millisecond), ls[len(ls)-1].Round(10 * time.Millisecond)
}

// Check waits for the fault actions, then asserts every request has
// exactly one aggregate, complete with the cheapest of the three
// deterministic answers, and that the collector saw every one of them
// (Recovery and Latency are read off it).
func (p *Pipeline) Check(n int) map[string]*schemas.Aggregate {
	p.T.Helper()
	p.bg.Wait()
	aggs := processortest.Aggregates(p.T, p.Topo, p.Flow, n, p.cfg.AggregatesWithin)
	ids := slices.Collect(maps.Keys(p.Sent()))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.Col.Wait(ctx, ids...); err != nil {
		p.T.Fatal(err)
	}
	bad := 0
	for id, a := range aggs {
		want := min(Price(id+"/a"), Price(id+"/b"), Price(id+"/c"))
		var res struct{ Value int }
		_ = json.Unmarshal(a.Result, &res)
		if a.Outcome != schemas.OutcomeComplete || res.Value != want || len(a.Answered) != 3 {
			if bad++; bad <= 20 {
				p.T.Errorf("%s: outcome %s (%s), cheapest %d (want %d), %d answered", id, a.Outcome, a.Reason, res.Value, want, len(a.Answered))
			}
		}
	}
	if bad > 20 {
		p.T.Errorf("... %d requests wrong in all", bad)
	}
	return aggs
}

// Price is what a target answers for a task: a fault-free run always
// gives the same cheapest offer.
func Price(taskID string) int {
	h := fnv.New32a()
	h.Write([]byte(taskID))
	return 100 + int(h.Sum32()%900)
}

// Provider serves every target at /<target>: it answers Price of the
// task's Idempotency-Key after a small random delay. Target hang, when
// not empty, never answers; the end of the test frees its requests.
func Provider(t testing.TB, hang string) *httptest.Server { return provider(t, hang, nil) }

// Hangs switches one target of a pipeline's Provider to hanging and back.
// A call that came while its target hung is never answered (its client's
// timeout, or the end of the test, frees it); Hung tells which tasks had
// such a call. Safe for concurrent use.
type Hangs struct {
	mu     sync.Mutex
	target string
	hung   map[string]bool // task id (Idempotency-Key) → a call of it hung
}

// Start makes target hang from now on.
func (h *Hangs) Start(target string) {
	h.mu.Lock()
	h.target = target
	h.mu.Unlock()
}

// Stop makes the target answer again; calls already hanging stay so.
func (h *Hangs) Stop() {
	h.mu.Lock()
	h.target = ""
	h.mu.Unlock()
}

// Hung reports whether a call of the task hung.
func (h *Hangs) Hung(taskID string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hung[taskID]
}

// hangs reports whether a call of task on target must hang, and records it.
func (h *Hangs) hangs(target, task string) bool {
	if h == nil {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.target == "" || h.target != target {
		return false
	}
	if h.hung == nil {
		h.hung = map[string]bool{}
	}
	h.hung[task] = true
	return true
}

func provider(t testing.TB, hang string, hangs *Hangs) *httptest.Server {
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(1, 2))
	stop := make(chan struct{})
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		target := strings.TrimPrefix(r.URL.Path, "/")
		if (hang != "" && target == hang) || hangs.hangs(target, r.Header.Get("Idempotency-Key")) {
			select { // never answers; only the end of the test frees it
			case <-r.Context().Done():
			case <-stop:
			}
			return
		}
		mu.Lock()
		d := time.Duration(5+rng.IntN(45)) * time.Millisecond
		mu.Unlock()
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
		fmt.Fprintf(w, `{"price": %d}`, Price(r.Header.Get("Idempotency-Key")))
	}))
	t.Cleanup(func() {
		close(stop)
		s.CloseClientConnections()
		s.Close()
	})
	return s
}
