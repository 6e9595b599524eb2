package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scattergather/scattergather/internal/collect"
	"github.com/scattergather/scattergather/internal/load"
	"github.com/scattergather/scattergather/internal/processortest"
	"github.com/scattergather/scattergather/processor/admin"
	"github.com/scattergather/scattergather/processor/kafka"
	"github.com/scattergather/scattergather/processor/topology"
	"github.com/scattergather/scattergather/schemas"
)

// EnvScript names scripts/kafka-cluster.sh; without it the suite skips.
const EnvScript = "SG_CLUSTER_SCRIPT"

// cluster is the three-node cluster scripts/kafka-cluster.sh runs.
type cluster struct {
	script    string
	bootstrap []string
	nodes     []int32
}

// openCluster starts the cluster (a no-op when it runs) and reads what
// the script prints.
func openCluster(t *testing.T) *cluster {
	t.Helper()
	script := os.Getenv(EnvScript)
	if script == "" {
		t.Skipf("%s is not set: no three-node cluster to run against", EnvScript)
	}
	c := &cluster{script: script}
	out := c.run(t, "start")
	for _, line := range strings.Split(out, "\n") {
		k, v, _ := strings.Cut(line, "=")
		switch k {
		case "CLUSTER_BOOTSTRAP":
			c.bootstrap = strings.Split(v, ",")
		case "NODE_IDS":
			for _, f := range strings.Fields(v) {
				n, err := strconv.Atoi(f)
				if err != nil {
					t.Fatalf("NODE_IDS=%s: %v", v, err)
				}
				c.nodes = append(c.nodes, int32(n))
			}
		}
	}
	if len(c.bootstrap) == 0 || len(c.nodes) < 3 {
		t.Fatalf("%s start printed no bootstrap list or fewer than three nodes:\n%s", script, out)
	}
	return c
}

// run runs the script with args and returns its stdout; it fails the test
// if the script fails.
func (c *cluster) run(t testing.TB, args ...string) string {
	t.Helper()
	cmd := exec.Command(c.script, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", c.script, strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// kill kills node n with SIGKILL and returns once it is gone.
func (c *cluster) kill(t testing.TB, n int32) { c.run(t, "kill", strconv.Itoa(int(n))) }

// startNode starts node n and returns once it serves clients.
func (c *cluster) startNode(t testing.TB, n int32) {
	c.run(t, "start-node", strconv.Itoa(int(n)))
}

// admin returns an admin client on the cluster, closed with the test.
func (c *cluster) admin(t testing.TB) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.bootstrap...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// heal starts the nodes that are down and waits until every partition of
// every topic, the internal ones too, has a leader and all its replicas in
// sync: the next fault then starts from a whole cluster.
func (c *cluster) heal(t testing.TB) {
	t.Helper()
	c.run(t, "start")
	adm := c.admin(t)
	deadline := time.Now().Add(3 * time.Minute)
	for {
		last := insync(adm)
		if last == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 3 minutes the cluster is not whole: %s", last)
		}
		<-time.After(200 * time.Millisecond)
	}
}

// insync returns "" when every partition has a leader and all its
// replicas in sync, else the first that has not.
func insync(adm *kadm.Client) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	td, err := adm.ListTopicsWithInternal(ctx)
	if err != nil {
		return err.Error()
	}
	for _, d := range td {
		for _, p := range d.Partitions {
			if p.Err != nil || p.Leader < 0 || len(p.ISR) < len(p.Replicas) {
				return fmt.Sprintf("%s/%d: leader %d, in sync %v of %v", d.Topic, p.Partition, p.Leader, p.ISR, p.Replicas)
			}
		}
	}
	return ""
}

// leaders counts the partitions of topic each node leads.
func (c *cluster) leaders(t testing.TB, topic string) map[int32]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	td, err := c.admin(t).ListTopics(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int{}
	for _, p := range td[topic].Partitions {
		out[p.Leader]++
	}
	return out
}

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
		dir, err := os.MkdirTemp("", "sg-cluster-bin-")
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

// price is what a target answers for a task: a fault-free run always
// gives the same cheapest offer.
func price(taskID string) int {
	h := fnv.New32a()
	h.Write([]byte(taskID))
	return 100 + int(h.Sum32()%900)
}

// provider answers after a small random delay.
func provider(t *testing.T) *httptest.Server {
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(1, 2))
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
		s.CloseClientConnections()
		s.Close()
	})
	return s
}

type proc struct {
	name   string
	args   []string
	cmd    *exec.Cmd
	log    string
	done   chan struct{}
	mu     sync.Mutex
	ending bool // the test stopped it: an exit is expected
}

// addr is where the process serves /readyz, read off its log.
func (pr *proc) addr() string {
	b, _ := os.ReadFile(pr.log)
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.Contains(line, "serving /metrics") {
			continue
		}
		var l struct{ Addr string }
		if json.Unmarshal([]byte(line), &l) == nil && l.Addr != "" {
			return l.Addr
		}
	}
	return ""
}

// running reports whether the process has not exited.
func (pr *proc) running() bool {
	select {
	case <-pr.done:
		return false
	default:
		return true
	}
}

func (pr *proc) expectExit() {
	pr.mu.Lock()
	pr.ending = true
	pr.mu.Unlock()
}

// kill sends SIGKILL and waits for the process to be gone.
func (pr *proc) kill() {
	if pr.cmd == nil || pr.cmd.Process == nil {
		return
	}
	pr.expectExit()
	_ = pr.cmd.Process.Signal(syscall.SIGKILL)
	<-pr.done
}

// term sends SIGTERM and waits for the process to exit, failing the test
// if it exits non-zero or not within a minute.
func (pr *proc) term(t testing.TB) {
	pr.expectExit()
	if err := pr.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Error(err)
		return
	}
	select {
	case <-pr.done:
	case <-time.After(time.Minute):
		t.Errorf("%s did not exit within a minute of SIGTERM", pr.name)
		pr.kill()
		return
	}
	if code := pr.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("%s exited with %d after SIGTERM", pr.name, code)
	}
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
	bg       sync.WaitGroup // fault actions still running

	col   *collect.Collector
	mu    sync.Mutex
	sent  map[string]time.Time // request id → when it was sent
	acked map[string]time.Time // request id → when the broker acknowledged it
}

func newPipeline(t *testing.T, c *cluster) *pipeline {
	t.Helper()
	p := &pipeline{t: t, bin: binary(t), dir: t.TempDir(), sent: map[string]time.Time{}, acked: map[string]time.Time{}}
	srv := provider(t)
	name := processortest.Unique("c")
	doc := fmt.Sprintf(`
kafka:
  brokers: [%s]
  group_prefix: %s
  replication_factor: 3
  session_timeout: 6s
  transaction_timeout: 10s
flows:
  - name: %s
    partitions: 6
    timeout: 60s
    targets:
      - {name: a, http: {url: "%s/a", timeout: 30s, circuit_breaker: {failures: 0}}}
      - {name: b, http: {url: "%s/b", timeout: 30s, circuit_breaker: {failures: 0}}}
      - {name: c, http: {url: "%s/c", timeout: 30s, circuit_breaker: {failures: 0}}}
    consolidate: {type: min, field: price}
    gather: {tick_interval: 100ms}
    worker: {deadline_grace: 300ms}
`, strings.Join(c.bootstrap, ","), name, name, srv.URL, srv.URL, srv.URL)
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
	p.checkReplication(c)
	t.Cleanup(func() {
		p.bg.Wait()
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

// checkReplication fails the test unless every topic of the flow has three
// replicas and min.insync.replicas=2, as topics create makes them.
func (p *pipeline) checkReplication(c *cluster) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adm := c.admin(p.t)
	topics := p.flow.AllTopics()
	td, err := adm.ListTopics(ctx, topics...)
	if err != nil {
		p.t.Fatal(err)
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, topics...)
	if err != nil {
		p.t.Fatal(err)
	}
	for _, topic := range topics {
		for _, part := range td[topic].Partitions {
			if len(part.Replicas) != 3 {
				p.t.Fatalf("%s/%d has replicas %v, want three", topic, part.Partition, part.Replicas)
			}
		}
		rc, err := rcs.On(topic, nil)
		if err != nil {
			p.t.Fatal(err)
		}
		for _, cfg := range rc.Configs {
			if cfg.Key == "min.insync.replicas" && cfg.MaybeValue() != "2" {
				p.t.Fatalf("%s: min.insync.replicas=%s, want 2", topic, cfg.MaybeValue())
			}
		}
	}
}

// start runs the binary with a role; it is not waited for.
func (p *pipeline) start(name, role, instance string, extra ...string) *proc {
	p.t.Helper()
	args := append([]string{"run", "--topology", p.topoPath, "--role", role, "--instance-id", instance, "--log-format", "json", "--http-addr", "127.0.0.1:0"}, extra...)
	return p.launch(name, args)
}

// restart starts the same command again (same identity, same state).
func (p *pipeline) restart(pr *proc) *proc {
	p.t.Helper()
	return p.launch(pr.name, slices.Clone(pr.args))
}

func (p *pipeline) launch(name string, args []string) *proc {
	p.t.Helper()
	p.procsMu.Lock()
	defer p.procsMu.Unlock()
	pr := &proc{name: name, args: args, log: filepath.Join(p.dir, fmt.Sprintf("%s-%d.log", name, len(p.procs)))}
	f, err := os.Create(pr.log)
	if err != nil {
		p.t.Fatal(err)
	}
	pr.cmd = exec.Command(p.bin, args...)
	pr.cmd.Stdout, pr.cmd.Stderr = f, f
	if err := pr.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	pr.done = make(chan struct{})
	go func() {
		_ = pr.cmd.Wait()
		f.Close()
		close(pr.done)
	}()
	p.procs = append(p.procs, pr)
	return pr
}

// standard runs one scatter, two workers and two gathers, and waits until
// they are ready.
func (p *pipeline) standard() map[string]*proc {
	ps := map[string]*proc{
		"scatter": p.start("scatter", "scatter", "s1"),
		"worker1": p.start("worker1", "worker", "w1"),
		"worker2": p.start("worker2", "worker", "w2"),
		"gather1": p.start("gather1", "gather", "g1", "--state-dir", filepath.Join(p.dir, "state-g1")),
		"gather2": p.start("gather2", "gather", "g2", "--state-dir", filepath.Join(p.dir, "state-g2")),
	}
	p.waitReady(slices.Collect(maps.Values(ps))...)
	return ps
}

// waitReady waits until every one of ps answers 200 on /readyz: the load
// then starts on a running pipeline.
func (p *pipeline) waitReady(ps ...*proc) {
	p.t.Helper()
	cl := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(2 * time.Minute)
	for _, pr := range ps {
		for {
			if !pr.running() {
				p.t.Fatalf("%s exited before it was ready", pr.name)
			}
			if addr := pr.addr(); addr != "" {
				if resp, err := cl.Get("http://" + addr + "/readyz"); err == nil {
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						break
					}
				}
			}
			if time.Now().After(deadline) {
				p.t.Fatalf("%s not ready within 2 minutes", pr.name)
			}
			<-time.After(100 * time.Millisecond)
		}
	}
}

// unexpectedExits fails the test for every process that exited without
// the test stopping it: a role must ride out a broker's fault.
func (p *pipeline) unexpectedExits() {
	p.t.Helper()
	p.procsMu.Lock()
	defer p.procsMu.Unlock()
	for _, pr := range p.procs {
		pr.mu.Lock()
		ending := pr.ending
		pr.mu.Unlock()
		if !ending && !pr.running() {
			b, _ := os.ReadFile(pr.log)
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			p.t.Errorf("%s exited by itself (status %d); last lines:\n%s", pr.name, pr.cmd.ProcessState.ExitCode(), strings.Join(lines[max(0, len(lines)-10):], "\n"))
		}
	}
}

// load sends n requests at rate per second, calling the action at index i
// just before request i, and returns when all are acknowledged. Actions
// run on the sending goroutine: a slow one runs its slow part in p.bg.
func (p *pipeline) load(n int, rate float64, at map[int]func()) {
	p.t.Helper()
	s, err := admin.NewSender(p.topo, kafka.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		p.t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	errs := make(chan error, n)
	sched := load.NewSchedule(rate)
	for i := range n {
		if f := at[i]; f != nil {
			f()
		}
		if _, err := sched.Wait(ctx, i); err != nil {
			p.t.Fatal(err)
		}
		id := fmt.Sprintf("req-%05d", i)
		p.mu.Lock()
		p.sent[id] = time.Now()
		p.mu.Unlock()
		req := &schemas.Request{RequestID: id, Flow: p.flow.Name, Payload: []byte(`{"q":1}`), ContentType: schemas.ContentTypeJSON}
		if err := s.Send(ctx, req, func(err error) {
			if err == nil {
				p.mu.Lock()
				p.acked[id] = time.Now()
				p.mu.Unlock()
			}
			errs <- err
		}); err != nil {
			p.t.Fatal(err)
		}
	}
	for range n {
		if err := <-errs; err != nil {
			p.t.Fatalf("send: %v", err)
		}
	}
}

// recovery is the time from the fault until every request sent within
// half a second around it had its aggregate, or "-" when none was sent
// then.
func (p *pipeline) recovery(fault time.Time) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var worst time.Time
	for id, at := range p.sent {
		if d := at.Sub(fault); d > -500*time.Millisecond && d < 500*time.Millisecond {
			if r, _ := p.col.Arrived(id); r.After(worst) {
				worst = r
			}
		}
	}
	if worst.IsZero() {
		return "-"
	}
	return worst.Sub(fault).Round(10 * time.Millisecond).String()
}

// latency returns the median and the largest request→aggregate latency of
// the requests sent in [from, to).
func (p *pipeline) latency(from, to time.Time) (p50, worst time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var ls []time.Duration
	for id, at := range p.sent {
		if !at.Before(from) && at.Before(to) {
			if r, ok := p.col.Arrived(id); ok {
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

// check waits for the fault actions, then asserts every request has
// exactly one aggregate, complete with the cheapest of the three
// deterministic answers, and that no role exited by itself.
func (p *pipeline) check(n int) {
	p.t.Helper()
	p.bg.Wait()
	aggs := processortest.Aggregates(p.t, p.topo, p.flow, n, 4*time.Minute)
	p.mu.Lock()
	ids := slices.Collect(maps.Keys(p.sent))
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.col.Wait(ctx, ids...); err != nil {
		p.t.Fatal(err)
	}
	if d := p.col.Duplicates(); d != 0 {
		p.t.Errorf("the read_committed reader saw %d duplicate aggregates", d)
	}
	bad := 0
	for id, a := range aggs {
		want := min(price(id+"/a"), price(id+"/b"), price(id+"/c"))
		var res struct{ Value int }
		_ = json.Unmarshal(a.Result, &res)
		if a.Outcome != schemas.OutcomeComplete || res.Value != want || len(a.Answered) != 3 {
			if bad++; bad <= 20 {
				p.t.Errorf("%s: outcome %s (%s), cheapest %d (want %d), %d answered", id, a.Outcome, a.Reason, res.Value, want, len(a.Answered))
			}
		}
	}
	if bad > 20 {
		p.t.Errorf("... %d requests wrong in all", bad)
	}
	p.unexpectedExits()
}
