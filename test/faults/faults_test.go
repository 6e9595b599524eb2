package faults

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
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/scattergather/scattergather/internal/collect"
	"github.com/scattergather/scattergather/internal/load"
	"github.com/scattergather/scattergather/internal/processortest"
	"github.com/scattergather/scattergather/processor/admin"
	"github.com/scattergather/scattergather/processor/topology"
	"github.com/scattergather/scattergather/schemas"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary returns the scattergather binary: SG_BINARY, or one built once
// from ./cmd/scattergather.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if p := os.Getenv("SG_BINARY"); p != "" {
			binPath = p
			return
		}
		dir, err := os.MkdirTemp("", "sg-faults-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "scattergather")
		out, err := exec.Command("go", "build", "-o", binPath, "../../cmd/scattergather").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// price is what target answers for a task: a fault-free run always gives
// the same cheapest offer.
func price(taskID string) int {
	h := fnv.New32a()
	h.Write([]byte(taskID))
	return 100 + int(h.Sum32()%900)
}

// provider answers after a small random delay; hang makes it never answer
// for target hang.
func provider(t *testing.T, hang string) *httptest.Server {
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(1, 2))
	stop := make(chan struct{})
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		target := strings.TrimPrefix(r.URL.Path, "/")
		if target == hang {
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
		fmt.Fprintf(w, `{"price": %d}`, price(r.Header.Get("Idempotency-Key")))
	}))
	t.Cleanup(func() {
		close(stop)
		s.CloseClientConnections()
		s.Close()
	})
	return s
}

type proc struct {
	name string
	args []string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

type pipeline struct {
	t        *testing.T
	bin      string
	dir      string
	topoPath string
	topo     *topology.Topology
	flow     *topology.Flow
	procsMu  sync.Mutex
	procs    []*proc

	col    *collect.Collector // what a read_committed consumer reads, and when
	mu     sync.Mutex
	sentAt map[string]time.Time
}

func newPipeline(t *testing.T, brokers []string, timeout string, hang string) *pipeline {
	t.Helper()
	p := &pipeline{t: t, bin: binary(t), dir: t.TempDir(), sentAt: map[string]time.Time{}}
	srv := provider(t, hang)
	name := processortest.Unique("f")
	doc := fmt.Sprintf(`
kafka:
  brokers: [%s]
  group_prefix: %s
  session_timeout: 6s
  transaction_timeout: 10s
flows:
  - name: %s
    timeout: %s
    targets:
      - {name: a, http: {url: "%s/a", timeout: 30s, circuit_breaker: {failures: 0}}}
      - {name: b, http: {url: "%s/b", timeout: 30s, circuit_breaker: {failures: 0}}}
      - {name: c, http: {url: "%s/c", timeout: 30s, circuit_breaker: {failures: 0}}}
    consolidate: {type: min, field: price}
    gather: {tick_interval: 100ms}
    worker: {deadline_grace: 300ms}
`, strings.Join(brokers, ","), name, name, timeout, srv.URL, srv.URL, srv.URL)
	p.topoPath = filepath.Join(p.dir, "topology.yaml")
	if err := os.WriteFile(p.topoPath, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	topo, err := topology.LoadFile(p.topoPath)
	if err != nil {
		t.Fatal(err)
	}
	p.topo, p.flow = topo, topo.Flows[0]
	processortest.CreateTopics(t, topo, p.flow)
	t.Cleanup(func() {
		p.procsMu.Lock()
		defer p.procsMu.Unlock()
		for _, pr := range p.procs {
			pr.kill()
		}
		if t.Failed() || os.Getenv("SG_FAULT_LOGS") != "" {
			for _, pr := range p.procs {
				b, _ := os.ReadFile(pr.log)
				lines := strings.Split(strings.TrimSpace(string(b)), "\n")
				keep := 15
				if os.Getenv("SG_FAULT_LOGS") != "" {
					keep = len(lines)
				}
				t.Logf("--- last lines of %s:\n%s", pr.name, strings.Join(lines[max(0, len(lines)-keep):], "\n"))
			}
		}
	})
	if p.col, err = collect.Start(topo, p.flow, collect.ArrivalsOnly()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.col.Close)
	return p
}

// start runs the binary with a role; it is not waited for.
func (p *pipeline) start(name, role, instance string, extra ...string) *proc {
	p.t.Helper()
	args := append([]string{"run", "--topology", p.topoPath, "--role", role, "--instance-id", instance, "--log-format", "json", "--http-addr", "127.0.0.1:0"}, extra...)
	p.procsMu.Lock()
	defer p.procsMu.Unlock()
	pr := &proc{name: name, args: args, log: filepath.Join(p.dir, fmt.Sprintf("%s-%d.log", name, len(p.procs)))}
	pr.launch(p.t, p.bin)
	p.procs = append(p.procs, pr)
	return pr
}

func (pr *proc) launch(t *testing.T, bin string) {
	t.Helper()
	f, err := os.Create(pr.log)
	if err != nil {
		t.Fatal(err)
	}
	pr.cmd = exec.Command(bin, pr.args...)
	pr.cmd.Stdout, pr.cmd.Stderr = f, f
	if err := pr.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pr.done = make(chan struct{})
	go func() {
		_ = pr.cmd.Wait()
		f.Close()
		close(pr.done)
	}()
}

// countLog counts the lines of pr's log that contain s.
func countLog(pr *proc, s string) int {
	b, _ := os.ReadFile(pr.log)
	return strings.Count(string(b), s)
}

// waitLog polls pr's log until it holds n lines containing s.
func waitLog(pr *proc, s string, n int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if countLog(pr, s) >= n {
			return true
		}
		<-time.After(20 * time.Millisecond)
	}
	return false
}

// kill sends SIGKILL and waits for the process to be gone.
func (pr *proc) kill() {
	if pr.cmd == nil || pr.cmd.Process == nil {
		return
	}
	_ = pr.cmd.Process.Signal(syscall.SIGKILL)
	<-pr.done
}

// term sends SIGTERM and waits for the process to exit, failing the test
// if it exits non-zero or not within a minute; it returns how long the
// shutdown took.
func (pr *proc) term(t *testing.T) time.Duration {
	t.Helper()
	start := time.Now()
	if err := pr.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-pr.done:
	case <-time.After(time.Minute):
		t.Fatalf("%s did not exit within a minute of SIGTERM", pr.name)
	}
	if code := pr.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("%s exited with %d after SIGTERM", pr.name, code)
	}
	return time.Since(start)
}

// restart starts the same command again (same identity, same state).
func (p *pipeline) restart(pr *proc, extra ...string) *proc {
	p.t.Helper()
	p.procsMu.Lock()
	defer p.procsMu.Unlock()
	np := &proc{name: pr.name, args: append(slices.Clone(pr.args), extra...), log: filepath.Join(p.dir, fmt.Sprintf("%s-%d.log", pr.name, len(p.procs)))}
	np.launch(p.t, p.bin)
	p.procs = append(p.procs, np)
	return np
}

// load sends n requests at rate per second, calling fault once after
// faultAfter of them, and returns when all are acknowledged.
func (p *pipeline) load(n int, rate float64, faultAfter int, fault func()) {
	p.t.Helper()
	s, err := admin.NewSender(p.topo)
	if err != nil {
		p.t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	errs := make(chan error, n)
	sched := load.NewSchedule(rate)
	for i := range n {
		if i == faultAfter && fault != nil {
			fault()
		}
		if _, err := sched.Wait(ctx, i); err != nil {
			p.t.Fatal(err)
		}
		id := fmt.Sprintf("req-%04d", i)
		p.mu.Lock()
		p.sentAt[id] = time.Now()
		p.mu.Unlock()
		req := &schemas.Request{RequestID: id, Flow: p.flow.Name, Payload: []byte(`{"q":1}`), ContentType: schemas.ContentTypeJSON}
		if err := s.Send(ctx, req, func(err error) { errs <- err }); err != nil {
			p.t.Fatal(err)
		}
	}
	for range n {
		if err := <-errs; err != nil {
			p.t.Fatalf("send: %v", err)
		}
	}
}

// recovery is the time from the end of the fault's action until every
// request sent within a second around it had its aggregate: how long the
// fault held the pipeline up.
func (p *pipeline) recovery(fault time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	var worst time.Time
	for id, at := range p.sentAt {
		if d := at.Sub(fault); d > -500*time.Millisecond && d < 500*time.Millisecond {
			if r, _ := p.col.Arrived(id); r.After(worst) {
				worst = r
			}
		}
	}
	return worst.Sub(fault).Round(10 * time.Millisecond)
}

// latencyP50 is the median request→aggregate latency of requests sent
// well before the fault.
func (p *pipeline) latencyP50(before time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	var ls []time.Duration
	for id, at := range p.sentAt {
		if at.Before(before.Add(-time.Second)) {
			if r, ok := p.col.Arrived(id); ok {
				ls = append(ls, r.Sub(at))
			}
		}
	}
	if len(ls) == 0 {
		return 0
	}
	slices.Sort(ls)
	return ls[len(ls)/2].Round(time.Millisecond)
}

// checkFaultFree asserts every request has exactly one aggregate, complete
// with the cheapest of the three deterministic answers.
func (p *pipeline) checkFaultFree(n int) map[string]*schemas.Aggregate {
	p.t.Helper()
	aggs := processortest.Aggregates(p.t, p.topo, p.flow, n, 3*time.Minute)
	// Recovery and latency are read off the collector: it must have seen
	// them all too.
	p.mu.Lock()
	ids := slices.Collect(maps.Keys(p.sentAt))
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.col.Wait(ctx, ids...); err != nil {
		p.t.Fatal(err)
	}
	for id, a := range aggs {
		want := min(price(id+"/a"), price(id+"/b"), price(id+"/c"))
		var res struct{ Value int }
		_ = json.Unmarshal(a.Result, &res)
		if a.Outcome != schemas.OutcomeComplete || res.Value != want || len(a.Answered) != 3 {
			p.t.Errorf("%s: outcome %s (%s), cheapest %d (want %d), %d answered", id, a.Outcome, a.Reason, res.Value, want, len(a.Answered))
		}
	}
	return aggs
}

const (
	requests = 300
	rate     = 60.0
	faultAt  = 90 // requests sent before the fault
)

func TestIntegrationFaults(t *testing.T) {
	brokers := processortest.Brokers(t)
	binary(t)
	type scenario struct {
		name  string
		setup func(p *pipeline) map[string]*proc
		fault func(p *pipeline, ps map[string]*proc)
	}
	standard := func(p *pipeline) map[string]*proc {
		return map[string]*proc{
			"scatter": p.start("scatter", "scatter", "s1"),
			"worker":  p.start("worker", "worker", "w1"),
			"gather":  p.start("gather", "gather", "g1", "--state-dir", filepath.Join(p.dir, "state-g1")),
		}
	}
	killRestart := func(name string, extra ...string) func(p *pipeline, ps map[string]*proc) {
		return func(p *pipeline, ps map[string]*proc) {
			ps[name].kill()
			ps[name] = p.restart(ps[name], extra...)
		}
	}
	scenarios := []scenario{
		{"gather kill -9, same state", standard, killRestart("gather")},
		{"gather kill -9, empty state", standard, func(p *pipeline, ps map[string]*proc) {
			ps["gather"].kill()
			ps["gather"] = p.restart(ps["gather"], "--state-dir", filepath.Join(p.dir, "state-empty"))
		}},
		{"scatter kill -9", standard, killRestart("scatter")},
		{"worker kill -9", standard, killRestart("worker")},
		{"SIGTERM of every role, then restart", standard, func(p *pipeline, ps map[string]*proc) {
			var took []string
			for _, name := range []string{"scatter", "worker", "gather"} {
				d := ps[name].term(p.t)
				took = append(took, fmt.Sprintf("%s %s", name, d.Round(10*time.Millisecond)))
				ps[name] = p.restart(ps[name])
			}
			p.t.Logf("graceful shutdown took: %s", strings.Join(took, ", "))
		}},
		{"two gathers, one killed; a third joins", func(p *pipeline) map[string]*proc {
			ps := standard(p)
			ps["gather2"] = p.start("gather2", "gather", "g2", "--state-dir", filepath.Join(p.dir, "state-g2"))
			return ps
		}, func(p *pipeline, ps map[string]*proc) {
			before := countLog(ps["gather2"], "partition assigned")
			ps["gather"].kill()
			// The survivor takes the dead instance's partitions once its
			// session times out; then a new instance joins and partitions
			// move again while requests are open.
			g2 := ps["gather2"]
			joined := make(chan struct{})
			p.t.Cleanup(func() { <-joined })
			go func() {
				defer close(joined)
				if waitLog(g2, "partition assigned", before+1, time.Minute) {
					p.start("gather3", "gather", "g3", "--state-dir", filepath.Join(p.dir, "state-g3"))
				}
			}()
		}},
	}
	if script := os.Getenv("SG_KAFKA_SCRIPT"); script != "" {
		scenarios = append(scenarios, scenario{"broker stopped and restarted", standard, func(*pipeline, map[string]*proc) {
			start := time.Now()
			out, err := exec.Command(script, "restart").CombinedOutput()
			if err != nil {
				t.Errorf("broker restart: %v\n%s", err, out)
			}
			t.Logf("broker stopped and restarted in %s (scripts/kafka.sh restart)", time.Since(start).Round(10*time.Millisecond))
		}})
	} else if os.Getenv(processortest.EnvRequire) != "" {
		t.Errorf("SG_KAFKA_SCRIPT is not set: the broker-restart fault cannot run")
	}

	var report []string
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			p := newPipeline(t, brokers, "40s", "")
			ps := sc.setup(p)
			var faultTime time.Time
			p.load(requests, rate, faultAt, func() {
				sc.fault(p, ps)
				// Recovery counts from the end of the fault's action: at once
				// for a kill, once the broker is back for a restart.
				faultTime = time.Now()
			})
			p.checkFaultFree(requests)
			line := fmt.Sprintf("%-40s %d requests, %d aggregates, exactly once; p50 before %s; recovery %s",
				sc.name, requests, requests, p.latencyP50(faultTime), p.recovery(faultTime))
			t.Log(line)
			report = append(report, line)
		})
	}
	t.Run("provider hangs forever", func(t *testing.T) {
		p := newPipeline(t, brokers, "2s", "c")
		standard(p)
		const n = 60
		p.load(n, 30, -1, nil)
		aggs := processortest.Aggregates(t, p.topo, p.flow, n, 2*time.Minute)
		var worst int64
		for id, a := range aggs {
			if a.Outcome != schemas.OutcomeTimeout || len(a.Missing) != 1 || a.Missing[0].Target != "c" {
				t.Errorf("%s: outcome %s missing %v", id, a.Outcome, a.Missing)
			}
			worst = max(worst, a.CompletedMs-a.DeadlineMs)
		}
		line := fmt.Sprintf("%-40s %d requests, %d aggregates (timeout, c missing); latest completion %d ms after the deadline (log time)", "provider hangs forever", n, len(aggs), worst)
		t.Log(line)
		report = append(report, line)
	})
	t.Logf("fault report:\n%s", strings.Join(report, "\n"))
}
