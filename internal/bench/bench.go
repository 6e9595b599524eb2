// Package bench measures scattergather against a real Kafka broker: an
// open-loop load at constant rates with latency from each request's
// intended send time to the moment a read_committed consumer reads its
// aggregate (no coordinated omission), a step sweep for the knee (the
// highest rate with a low p99) and the saturation (the highest sustainable
// rate), the CPU each role spends per request there, the broker's own
// produce→consume limit for records of the same size at the start and the
// end of the run, and the gather's state at scale.
package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scattergather/scattergather/internal/collect"
	"github.com/scattergather/scattergather/internal/gctune"
	"github.com/scattergather/scattergather/internal/load"
	"github.com/scattergather/scattergather/processor/admin"
	"github.com/scattergather/scattergather/processor/kafka"
	"github.com/scattergather/scattergather/processor/topology"
	"github.com/scattergather/scattergather/processor/worker"
	"github.com/scattergather/scattergather/schemas"
)

// Scenario is one pipeline shape under load.
type Scenario struct {
	Name     string `json:"name"`
	Fanout   int    `json:"fanout"`
	Strategy string `json:"strategy"`
	// Provider latency, uniform in [MinLatency, MaxLatency]; zero answers
	// at once (the pipeline's own cost).
	MinLatency time.Duration `json:"min_latency"`
	MaxLatency time.Duration `json:"max_latency"`
	// Calls shapes the providers and the topology of a provider-calls
	// scenario (see CallScenarios); nil for the pipeline's scenarios.
	Calls *CallShape `json:"calls,omitempty"`
}

// DefaultScenarios are fan-out 3 and 8, strategies all and first, workers
// that answer at once and workers with 5–50 ms provider latency.
func DefaultScenarios() []Scenario {
	var out []Scenario
	for _, n := range []int{3, 8} {
		for _, s := range []string{"all", "first"} {
			out = append(out, Scenario{Name: fmt.Sprintf("fanout %d, %s, instant", n, s), Fanout: n, Strategy: s})
			out = append(out, Scenario{Name: fmt.Sprintf("fanout %d, %s, 5-50ms", n, s), Fanout: n, Strategy: s, MinLatency: 5 * time.Millisecond, MaxLatency: 50 * time.Millisecond})
			if n == 3 && s == "all" {
				// The same providers behind a fixed cap of 64 calls in
				// flight per target, as every target had before the
				// limits adapted.
				out = append(out, Scenario{Name: "fanout 3, all, 5-50ms, fixed 64", Fanout: n, Strategy: s, MinLatency: 5 * time.Millisecond, MaxLatency: 50 * time.Millisecond,
					Calls: &CallShape{Worker: "{concurrency: fixed, max_in_flight_per_target: 64}"}})
				// And behind a fixed cap of 1024, the default ceiling: the
				// rate a limit that never binds gives.
				out = append(out, Scenario{Name: "fanout 3, all, 5-50ms, fixed 1024", Fanout: n, Strategy: s, MinLatency: 5 * time.Millisecond, MaxLatency: 50 * time.Millisecond,
					Calls: &CallShape{Worker: "{concurrency: fixed}"}})
			}
		}
	}
	return out
}

// Config sets up a benchmark run.
type Config struct {
	Brokers []string
	// Warmup precedes each step's measurement Window.
	Warmup, Window time.Duration
	// StartRate is the first step of the sweep (requests/s); each step
	// doubles it until a step is not sustainable, then Refine steps
	// narrow the knee and Refine steps the saturation.
	StartRate float64
	// Refine is the number of steps that narrow each of the knee and the
	// saturation, each halving the ratio between the last good and the
	// first bad rate (default 3: to 9 %; negative: none).
	Refine int
	// KneeP99 is the p99 latency up to which a step is below the knee
	// (default 100ms).
	KneeP99 time.Duration
	// WarmupSteps run at StartRate before a scenario's low-load step and
	// are not counted: a broker's JVM compiles its transaction and
	// read_committed fetch paths only under load, and the scenario's new
	// topics open their files. Default 1; negative: none. None with
	// LowOnly.
	WarmupSteps int
	// ProfileCPU profiles each step's window to split its CPU by role;
	// leave it false when the process runs a CPU profile of its own.
	ProfileCPU bool
	// ProfileDir, when set with ProfileCPU, keeps each measured window's
	// CPU profile there, named after the scenario and the rate.
	ProfileDir string
	// BrokerPID, when set, is the broker's process on this machine: each
	// step reports its CPU too.
	BrokerPID int
	// LowRate is the rate of the low-load latency measurement.
	LowRate float64
	// Partitions of every topic.
	Partitions int
	// PayloadBytes is the size of a request's payload.
	PayloadBytes int
	Logger       *slog.Logger
	// Progress receives a line per step; may be nil.
	Progress io.Writer
	// LowOnly measures the low-load step only.
	LowOnly bool
	// Instances is how many instances of each role (scatter, worker,
	// gather) run, each with its own identity and state directory, as
	// separate deployments would. Default 1.
	Instances int
	// ReplicationFactor of the scenario's topics. Default 1; 3 on a
	// three-node cluster.
	ReplicationFactor int
	// KeepTopics keeps each scenario's topics and consumer groups on the
	// cluster after it; by default they are deleted.
	KeepTopics bool
}

func (c *Config) defaults() {
	if c.Warmup == 0 {
		c.Warmup = 2 * time.Second
	}
	if c.Window == 0 {
		c.Window = 5 * time.Second
	}
	if c.StartRate == 0 {
		c.StartRate = 100
	}
	if c.Refine == 0 {
		c.Refine = 3
	}
	if c.KneeP99 == 0 {
		c.KneeP99 = 100 * time.Millisecond
	}
	if c.WarmupSteps == 0 {
		c.WarmupSteps = 1
	}
	if c.LowRate == 0 {
		c.LowRate = 20
	}
	if c.Partitions == 0 {
		c.Partitions = 3
	}
	if c.PayloadBytes == 0 {
		c.PayloadBytes = 100
	}
	c.Instances = max(c.Instances, 1)
	c.ReplicationFactor = max(c.ReplicationFactor, 1)
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
}

// Latency is a latency summary in milliseconds.
type Latency struct {
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p999_ms"`
	Max  float64 `json:"max_ms"`
}

func summarize(h *hdrhistogram.Histogram) Latency {
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return Latency{
		P50: ms(h.ValueAtQuantile(50)), P90: ms(h.ValueAtQuantile(90)), P99: ms(h.ValueAtQuantile(99)),
		P999: ms(h.ValueAtQuantile(99.9)), Max: ms(h.Max()),
	}
}

// Step is one constant-rate measurement.
type Step struct {
	Rate     float64 `json:"target_rate"`
	Achieved float64 `json:"achieved_rate"`
	Sent     int     `json:"sent"`
	Received int     `json:"received"`
	// Behind is how far the sender fell behind its schedule at worst.
	BehindMs    float64 `json:"sender_behind_ms"`
	Latency     Latency `json:"latency"`
	Sustainable bool    `json:"sustainable"`
	// Stages splits the median latency by the log times in the aggregate:
	// intended send → manifest appended (scatter), manifest → last answer
	// appended (workers), last answer → aggregate read (gather and commit).
	Stages    Stages `json:"stages_p50"`
	StagesP99 Stages `json:"stages_p99"`
	// CPU is the window's processor time per request.
	CPU *CPU `json:"cpu,omitempty"`
	// Transactions are the scatter's and the gather's in the window, by
	// role.
	Transactions map[string]*Transactions `json:"transactions,omitempty"`
}

// Stages are median stage latencies in milliseconds.
type Stages struct {
	Scatter float64 `json:"scatter_ms"`
	Workers float64 `json:"workers_ms"`
	Gather  float64 `json:"gather_ms"`
}

// ScenarioResult is a scenario's sweep and its summary figures.
type ScenarioResult struct {
	Scenario Scenario `json:"scenario"`
	// Flow is the name of the flow the scenario ran as: its topics and
	// consumer groups start with it.
	Flow string `json:"flow"`
	// Instances of each role that ran it.
	Instances int    `json:"instances"`
	Steps     []Step `json:"steps"`
	// MaxSustainable is the saturation: the highest rate of the sweep at
	// which every request of the window got its aggregate, the sender
	// kept its schedule and p99 stayed under 2 s.
	MaxSustainable float64 `json:"max_sustainable_rate"`
	// Knee is the highest sustainable rate of the sweep whose p99 stayed
	// within KneeP99.
	Knee      float64 `json:"knee_rate"`
	KneeP99Ms float64 `json:"knee_p99_bound_ms"`
	// Warmup are the steps run before the low-load step, not counted:
	// what the scenario does on a cold broker.
	Warmup     []Step `json:"warmup_steps,omitempty"`
	LowLoad    *Step  `json:"low_load,omitempty"`
	AtKnee     *Step  `json:"at_knee,omitempty"`
	Saturation *Step  `json:"at_saturation,omitempty"`
	// Efficiency is MaxSustainable × (2N+3) ÷ the broker's raw limit.
	Efficiency float64 `json:"efficiency"`
}

// tracker turns the aggregates of the current step's requests into
// latencies: it is the collector's OnFirst.
type tracker struct {
	mu      sync.Mutex
	hist    *hdrhistogram.Histogram
	stages  [3]*hdrhistogram.Histogram
	pending map[string]time.Time // request id → intended send time, of the current step
	got     int
	// rateLimited counts the answers of the step's requests that were
	// refused by a rate limit without a call.
	rateLimited int
	// all counts the aggregates of every request, of any step or
	// warm-up; arrival is signalled on each.
	all     atomic.Int64
	arrival chan struct{}
}

func newTracker() *tracker { return &tracker{arrival: make(chan struct{}, 1)} }

func (t *tracker) begin(ids int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.hist = hdrhistogram.New(1, 600_000_000, 3) // µs, up to 10 min
	for i := range t.stages {
		t.stages[i] = hdrhistogram.New(0, 600_000, 3) // ms
	}
	t.pending = make(map[string]time.Time, ids)
	t.got, t.rateLimited = 0, 0
}

func (t *tracker) expect(id string, intended time.Time) {
	t.mu.Lock()
	t.pending[id] = intended
	t.mu.Unlock()
}

func (t *tracker) arrived(id string, at time.Time, a *schemas.Aggregate) {
	t.all.Add(1)
	select {
	case t.arrival <- struct{}{}:
	default:
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	intended, ok := t.pending[id]
	if !ok {
		return
	}
	delete(t.pending, id)
	_ = t.hist.RecordValue(max(at.Sub(intended).Microseconds(), 1))
	t.got++
	for _, x := range a.Failed {
		if strings.Contains(x.Error, worker.ErrRateLimited.Error()) {
			t.rateLimited++
		}
	}
	last := a.OpenedMs
	for _, x := range a.Answered {
		last = max(last, a.OpenedMs+x.LatencyMs)
	}
	_ = t.stages[0].RecordValue(max(a.OpenedMs-intended.UnixMilli(), 0))
	_ = t.stages[1].RecordValue(max(last-a.OpenedMs, 0))
	_ = t.stages[2].RecordValue(max(at.UnixMilli()-last, 0))
}

// runner is one scenario's pipeline, running in this process against the
// broker.
type runner struct {
	cfg   *Config
	sc    Scenario
	topo  *topology.Topology
	flow  *topology.Flow
	track *tracker
	col   *collect.Collector
	seq   atomic.Int64
	stop  func()
	// calls counts the provider calls of the measured window's requests.
	calls *callCounts
	// txns measures the roles' transactions in the window.
	txns *txnMeter
}

func startScenario(ctx context.Context, cfg *Config, sc Scenario) (*runner, error) {
	name := fmt.Sprintf("bench-%d-%d", time.Now().UnixNano()%1e9, rand.IntN(1e6))
	var b strings.Builder
	shape := sc.Calls
	if shape == nil {
		shape = &CallShape{}
	}
	timeout := 10 * time.Second
	if shape.Timeout > 0 {
		timeout = shape.Timeout
	}
	fmt.Fprintf(&b, "kafka:\n  brokers: [%s]\n  group_prefix: %s\n  replication_factor: %d\nflows:\n  - name: %s\n    partitions: %d\n    timeout: %s\n",
		strings.Join(cfg.Brokers, ", "), name, cfg.ReplicationFactor, name, cfg.Partitions, timeout)
	strategy := sc.Strategy
	if !strings.HasPrefix(strategy, "{") {
		strategy = "{type: " + strategy + "}"
	}
	fmt.Fprintf(&b, "    strategy: %s\n    consolidate: {type: min, field: price}\n", strategy)
	if shape.Worker != "" {
		fmt.Fprintf(&b, "    worker: %s\n", shape.Worker)
	}
	fmt.Fprintf(&b, "    targets:\n")
	for i := range sc.Fanout {
		extra := ""
		if i == 0 && shape.Target0 != "" {
			extra = ", " + shape.Target0
		}
		fmt.Fprintf(&b, "      - {name: t%d%s}\n", i, extra)
	}
	topo, err := topology.Parse(name, []byte(b.String()), func(string) (string, bool) { return "", false })
	if err != nil {
		return nil, err
	}
	f := topo.Flows[0]
	if _, err := admin.CreateTopics(ctx, topo, nil, kafka.WithLogger(cfg.Logger)); err != nil {
		return nil, err
	}
	counts := newCallCounts(sc.Fanout)
	txns := &txnMeter{}
	var runners []kafka.Runner
	for n := range cfg.Instances {
		opts := []kafka.RoleOpt{kafka.WithLogger(cfg.Logger), kafka.WithInstance(fmt.Sprintf("bench-%d", n)), kafka.WithHooks(txns)}
		for i := range sc.Fanout {
			opts = append(opts, kafka.WithHandler(fmt.Sprintf("t%d", i), provider(sc, i, counts)))
		}
		rs, err := kafka.Roles(topo, topo.Flows, kafka.RoleAll, fmt.Sprintf("%s/%s/%d", os.TempDir(), name, n), opts...)
		if err != nil {
			return nil, err
		}
		runners = append(runners, rs...)
	}
	r := &runner{cfg: cfg, sc: sc, topo: topo, flow: f, track: newTracker(), calls: counts, txns: txns}
	r.track.begin(0)
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- kafka.RunAll(rctx, runners...) }()
	r.col, err = collect.Start(topo, f, collect.FromEnd(), collect.ArrivalsOnly(),
		collect.OnFirst(r.track.arrived), collect.WithLogger(cfg.Logger))
	if err != nil {
		cancel()
		<-done
		return nil, err
	}
	r.stop = func() {
		cancel()
		<-done
		r.col.Close()
		_ = os.RemoveAll(os.TempDir() + "/" + name)
		if !cfg.KeepTopics {
			r.deleteFromCluster()
		}
	}
	for _, rn := range runners {
		select {
		case <-rn.Ready():
		case err := <-done:
			done <- err // stop waits for the end of the pipeline again
			r.stop()
			return nil, fmt.Errorf("bench: pipeline stopped: %w", err)
		case <-time.After(time.Minute):
			r.stop()
			return nil, fmt.Errorf("bench: %T not ready after a minute", rn)
		}
	}
	return r, nil
}

// deleteFromCluster deletes the scenario's topics and consumer groups, so
// that bench runs do not pile partitions up on the cluster: each
// scenario's flow has a name of its own. Best effort: what fails is
// logged.
func (r *runner) deleteFromCluster() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kafka.ClientOptions(r.topo, "bench-cleanup", kafka.WithLogger(r.cfg.Logger))...)
	if err != nil {
		r.cfg.Logger.Warn("bench: cannot delete the scenario's topics", "flow", r.flow.Name, "err", err)
		return
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	res, err := adm.DeleteTopics(ctx, r.flow.AllTopics()...)
	if err == nil {
		err = res.Error()
	}
	if err != nil {
		r.cfg.Logger.Warn("bench: cannot delete the scenario's topics", "flow", r.flow.Name, "err", err)
	}
	groups, err := adm.ListGroups(ctx)
	if err != nil {
		r.cfg.Logger.Warn("bench: cannot list the scenario's consumer groups", "flow", r.flow.Name, "err", err)
		return
	}
	var ours []string
	for _, g := range groups.Groups() {
		if strings.HasPrefix(g, r.topo.Group(r.flow, "")) {
			ours = append(ours, g)
		}
	}
	if len(ours) == 0 {
		return
	}
	// Static members (the roles' instance ids) stay in their groups until
	// their session times out, and a group with members cannot be deleted:
	// they leave first.
	described, err := adm.DescribeGroups(ctx, ours...)
	if err != nil {
		r.cfg.Logger.Warn("bench: cannot describe the scenario's consumer groups", "flow", r.flow.Name, "err", err)
		return
	}
	for _, g := range described.Sorted() {
		var static []string
		for _, m := range g.Members {
			if m.InstanceID != nil {
				static = append(static, *m.InstanceID)
			}
		}
		if len(static) == 0 {
			continue
		}
		if _, err := adm.LeaveGroup(ctx, kadm.LeaveGroup(g.Group).InstanceIDs(static...).Reason("scattergather bench: scenario done")); err != nil {
			r.cfg.Logger.Warn("bench: static members cannot leave their group", "group", g.Group, "err", err)
		}
	}
	gres, err := adm.DeleteGroups(ctx, ours...)
	if err == nil {
		err = gres.Error()
	}
	if err != nil {
		r.cfg.Logger.Warn("bench: cannot delete the scenario's consumer groups", "flow", r.flow.Name, "err", err)
	}
}

// provider is a simulated provider of target i: it answers a price after
// its latency (uniform in the scenario's range; for target 0 a straggler's
// latency for the scenario's share of calls), and counts the calls made for
// the requests of the measured window in counts.
func provider(sc Scenario, i int, counts *callCounts) worker.Handler {
	var stragglers float64
	var slow time.Duration
	if sc.Calls != nil && i == 0 {
		stragglers, slow = sc.Calls.Stragglers, sc.Calls.StragglerLatency
	}
	return worker.HandlerFunc(func(ctx context.Context, t *schemas.Task) ([]byte, error) {
		done := counts.start(i, t.RequestID)
		d := time.Duration(0)
		if sc.MaxLatency > 0 {
			d = sc.MinLatency + time.Duration(rand.Int64N(int64(sc.MaxLatency-sc.MinLatency)+1))
		}
		if stragglers > 0 && rand.Float64() < stragglers {
			d = slow
		}
		if d > 0 {
			timer := time.NewTimer(d)
			defer timer.Stop()
			select {
			case <-timer.C:
			case <-ctx.Done():
				done(false)
				return nil, ctx.Err()
			}
		}
		done(true)
		return []byte(`{"price": ` + strconv.Itoa(100+i) + `}`), nil
	})
}

// step sends at rate for warmup+window and measures the window.
func (r *runner) step(ctx context.Context, s *admin.Sender, rate float64) (Step, error) {
	// An overloaded step leaves a backlog: the next one starts once it is
	// worked off, or not at all.
	if err := r.drained(ctx, backlogWait); err != nil {
		return Step{}, err
	}
	payload := []byte(`{"q":"` + strings.Repeat("x", max(r.cfg.PayloadBytes-8, 0)) + `"}`)
	send := func(d time.Duration, track bool) (ids []string, behind time.Duration, err error) {
		sched := load.NewSchedule(rate)
		n := int(d.Seconds() * rate)
		for i := range n {
			late, err := sched.Wait(ctx, i)
			if err != nil {
				return ids, behind, err
			}
			behind = max(behind, late)
			id := "r" + strconv.FormatInt(r.seq.Add(1), 10)
			if track {
				r.track.expect(id, sched.Due(i))
			}
			req := &schemas.Request{RequestID: id, Flow: r.flow.Name, Payload: payload, ContentType: schemas.ContentTypeJSON}
			if err := s.Send(ctx, req, nil); err != nil {
				return ids, behind, err
			}
			ids = append(ids, id)
		}
		return ids, behind, nil
	}
	r.track.begin(0)
	if _, _, err := send(r.cfg.Warmup, false); err != nil {
		return Step{}, err
	}
	r.track.begin(int(rate * r.cfg.Window.Seconds()))
	r.calls.begin(r.seq.Load())
	start := time.Now()
	m := startMeter(r.cfg.ProfileCPU, r.cfg.BrokerPID)
	r.txns.begin()
	ids, behind, err := send(r.cfg.Window, true)
	txns := r.txns.stop()
	cpu := m.stop(len(ids), r.profilePath(rate))
	if err != nil {
		return Step{}, err
	}
	elapsed := time.Since(start)
	// Drain: the window's requests must all come within a bounded time.
	drain := time.Now().Add(3 * time.Second)
	if err := r.await(ctx, drain, ids); err != nil {
		return Step{}, err
	}
	r.track.mu.Lock()
	st := Step{Rate: rate, Achieved: float64(len(ids)) / elapsed.Seconds(), Sent: len(ids), Received: r.track.got,
		BehindMs: float64(behind.Microseconds()) / 1000, Latency: summarize(r.track.hist),
		Stages:    Stages{float64(r.track.stages[0].ValueAtQuantile(50)), float64(r.track.stages[1].ValueAtQuantile(50)), float64(r.track.stages[2].ValueAtQuantile(50))},
		StagesP99: Stages{float64(r.track.stages[0].ValueAtQuantile(99)), float64(r.track.stages[1].ValueAtQuantile(99)), float64(r.track.stages[2].ValueAtQuantile(99))},
		CPU:       cpu, Transactions: txns}
	r.track.mu.Unlock()
	st.Sustainable = st.Received == st.Sent && behind < 200*time.Millisecond && st.Latency.P99 < 2000
	// Let the stragglers of an overloaded step go before the next one.
	return st, r.await(ctx, drain.Add(20*time.Second), ids)
}

// warmUp runs the configuration's warm-up steps (none with LowOnly) at
// its StartRate and returns them.
func (r *runner) warmUp(ctx context.Context, s *admin.Sender, name string) ([]Step, error) {
	if r.cfg.LowOnly {
		return nil, nil
	}
	var steps []Step
	for range max(r.cfg.WarmupSteps, 0) {
		st, err := r.step(ctx, s, r.cfg.StartRate)
		if err != nil {
			return steps, fmt.Errorf("warm-up step: %w", err)
		}
		fmt.Fprintf(r.cfg.Progress, "  %-28s %7.0f req/s: warm-up, not counted: received %d/%d, p50 %6.1f ms, p99 %7.1f ms\n",
			name, r.cfg.StartRate, st.Received, st.Sent, st.Latency.P50, st.Latency.P99)
		steps = append(steps, st)
	}
	return steps, nil
}

// errBacklog says the pipeline did not work off the requests of the steps
// before within backlogWait: a step now would measure the backlog.
var errBacklog = errors.New("bench: the pipeline did not work off the earlier steps' requests")

// backlogWait bounds the wait for the earlier steps' requests before a
// step.
const backlogWait = 2 * time.Minute

// drained waits until every request sent so far has its aggregate, up to
// bound; errBacklog if they do not.
func (r *runner) drained(ctx context.Context, bound time.Duration) error {
	timer := time.NewTimer(bound)
	defer timer.Stop()
	for {
		sent, got := r.seq.Load(), r.track.all.Load()
		if got >= sent {
			return nil
		}
		select {
		case <-r.track.arrival:
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			return fmt.Errorf("%w within %v: %d of %d aggregated", errBacklog, bound, got, sent)
		}
	}
}

// profilePath is where the profile of the window at rate is kept, "" when
// profiles are not kept: Config.ProfileDir/<scenario>-<instances>x-<rate>.pprof,
// the scenario's name with every run of other characters than letters and
// digits made one dash.
func (r *runner) profilePath(rate float64) string {
	if r.cfg.ProfileDir == "" {
		return ""
	}
	slug := strings.Trim(strings.Join(strings.FieldsFunc(strings.ToLower(r.sc.Name), func(c rune) bool {
		return !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9')
	}), "-"), "-")
	return filepath.Join(r.cfg.ProfileDir, fmt.Sprintf("%s-%dx-%.0f.pprof", slug, max(r.cfg.Instances, 1), rate))
}

// await waits until ids have their aggregates or until deadline; only the
// end of ctx is an error.
func (r *runner) await(ctx context.Context, deadline time.Time, ids []string) error {
	wctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	_ = r.col.Wait(wctx, ids...)
	return ctx.Err()
}

// startWithSender starts the scenario's pipeline with cfg's defaults and
// a sender of its requests.
func startWithSender(ctx context.Context, cfg Config, sc Scenario) (*runner, *admin.Sender, error) {
	cfg.defaults()
	r, err := startScenario(ctx, &cfg, sc)
	if err != nil {
		return nil, nil, err
	}
	s, err := admin.NewSender(r.topo, kafka.WithLogger(cfg.Logger))
	if err != nil {
		r.stop()
		return nil, nil, err
	}
	return r, s, nil
}

// RunScenario sweeps one scenario.
func RunScenario(ctx context.Context, cfg Config, sc Scenario, raw float64) (*ScenarioResult, error) {
	cfg.defaults()
	r, s, err := startWithSender(ctx, cfg, sc)
	if err != nil {
		return nil, err
	}
	defer r.stop()
	defer s.Close()
	res := &ScenarioResult{Scenario: sc, Flow: r.flow.Name, Instances: cfg.Instances}
	run := func(rate float64) (Step, error) {
		st, err := r.step(ctx, s, rate)
		if err == nil {
			fmt.Fprintf(cfg.Progress, "  %-28s %7.0f req/s: achieved %7.0f, received %d/%d, p50 %6.1f ms, p99 %7.1f ms (stages p50 %.0f/%.0f/%.0f, p99 %.0f/%.0f/%.0f ms)%s, sustainable %v\n",
				sc.Name, rate, st.Achieved, st.Received, st.Sent, st.Latency.P50, st.Latency.P99, st.Stages.Scatter, st.Stages.Workers, st.Stages.Gather, st.StagesP99.Scatter, st.StagesP99.Workers, st.StagesP99.Gather, cpuBrief(st.CPU), st.Sustainable)
		}
		if errors.Is(err, errBacklog) {
			fmt.Fprintf(cfg.Progress, "  %-28s %7.0f req/s: not measured, the sweep ends: %v\n", sc.Name, rate, err)
		}
		return st, err
	}
	if res.Warmup, err = r.warmUp(ctx, s, sc.Name); err != nil {
		return nil, err
	}
	low, err := run(cfg.LowRate)
	if err != nil {
		return nil, err
	}
	res.LowLoad = &low
	if cfg.LowOnly {
		return res, nil
	}
	kneeP99 := float64(cfg.KneeP99.Microseconds()) / 1000
	res.KneeP99Ms = kneeP99
	atKnee := func(st Step) bool { return st.Sustainable && st.Latency.P99 <= kneeP99 }
	res.Steps, err = sweep(cfg.StartRate, max(cfg.Refine, 0), []Step{low}, atKnee, run)
	if err != nil {
		return nil, err
	}
	measured := append([]Step{low}, res.Steps...)
	res.AtKnee = pick(measured, atKnee)
	res.Saturation = pick(measured, func(st Step) bool { return st.Sustainable })
	if res.AtKnee != nil {
		res.Knee = res.AtKnee.Rate
	}
	if res.Saturation != nil {
		res.MaxSustainable = res.Saturation.Rate
	}
	res.setEfficiency(raw)
	return res, nil
}

// setEfficiency sets Efficiency from the broker's limit raw (records/s).
func (s *ScenarioResult) setEfficiency(raw float64) {
	s.Efficiency = 0
	if raw > 0 {
		s.Efficiency = s.MaxSustainable * float64(2*s.Scenario.Fanout+3) / raw
	}
}

// cpuBrief is a step's CPU for its progress line.
func cpuBrief(c *CPU) string {
	if c == nil || c.Requests == 0 {
		return ""
	}
	out := fmt.Sprintf(", cpu %.0f µs/req", c.Process)
	if c.Profiled {
		sc, w, g := c.Shares()
		out += fmt.Sprintf(" (roles %.0f: scatter %.0f%%, workers %.0f%%, gather %.0f%%)", c.Roles(), 100*sc, 100*w, 100*g)
	}
	if c.Broker > 0 {
		out += fmt.Sprintf(", broker %.0f µs/req", c.Broker)
	}
	return out
}

// Machine describes where the benchmark ran.
type Machine struct {
	Cores     int    `json:"cores"`
	GoVersion string `json:"go"`
	OS        string `json:"os"`
	Kafka     string `json:"kafka"`
	// GC is the garbage collector's settings the roles ran with.
	GC gctune.Settings `json:"gc"`
}

// Report is a whole run.
type Report struct {
	Started time.Time `json:"started"`
	Machine Machine   `json:"machine"`
	// Raw is the broker's limit that the efficiencies use: the median of
	// every run of LimitStart and LimitEnd (of the one measured, when the
	// other was not). Set it with SetBrokerLimit.
	Raw     float64 `json:"raw_records_per_second"`
	RawSize int     `json:"raw_record_bytes"`
	// LimitStart and LimitEnd are the broker's limit measured before the
	// scenarios and after them.
	LimitStart *BrokerLimit      `json:"broker_limit_start,omitempty"`
	LimitEnd   *BrokerLimit      `json:"broker_limit_end,omitempty"`
	Scenarios  []*ScenarioResult `json:"scenarios"`
	State      *StateResult      `json:"state,omitempty"`
	Gateway    []*GatewayResult  `json:"gateway,omitempty"`
	Calls      []*CallResult     `json:"calls,omitempty"`
}

// ThisMachine describes this machine; kafkaVersion is as the caller knows it.
func ThisMachine(kafkaVersion string) Machine {
	return Machine{Cores: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH, Kafka: kafkaVersion}
}

// SetBrokerLimit records the broker's limit measured at the start of the
// run (end false) or at its end, and sets Raw and every scenario's
// Efficiency from the runs known.
func (r *Report) SetBrokerLimit(l *BrokerLimit, end bool) {
	if end {
		r.LimitEnd = l
	} else {
		r.LimitStart = l
	}
	var runs []float64
	for _, l := range []*BrokerLimit{r.LimitStart, r.LimitEnd} {
		if l != nil {
			runs = append(runs, l.Runs...)
			r.RawSize = l.RecordBytes
		}
	}
	r.Raw = newRepeated(runs).Median
	for _, s := range r.Scenarios {
		s.setEfficiency(r.Raw)
	}
}

// Warnings are what makes the run's figures doubtful: a broker limit
// whose runs spread by SpreadWarning or more, or that moved as much
// between the start and the end of the run.
func (r *Report) Warnings() []string {
	var out []string
	for _, x := range []struct {
		when string
		l    *BrokerLimit
	}{{"start", r.LimitStart}, {"end", r.LimitEnd}} {
		if x.l != nil && x.l.Spread >= SpreadWarning {
			out = append(out, fmt.Sprintf("the broker limit at the %s spreads by %.0f %% over its %d runs: the machine was not quiet, the figures are doubtful",
				x.when, 100*x.l.Spread, len(x.l.Runs)))
		}
	}
	if a, b := r.LimitStart, r.LimitEnd; a != nil && b != nil && a.Median > 0 && b.Median > 0 {
		if d := (b.Median - a.Median) / a.Median; d >= SpreadWarning || d <= -SpreadWarning {
			out = append(out, fmt.Sprintf("the broker limit moved by %+.0f %% between the start and the end of the run: the figures are doubtful", 100*d))
		}
	}
	return out
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes the report as a readable table.
func (r *Report) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "machine: %d cores, %s, %s; Kafka %s; %s\n", r.Machine.Cores, r.Machine.OS, r.Machine.GoVersion, r.Machine.Kafka, r.Machine.GC)
	r.writeLimit(w)
	if len(r.Scenarios) > 0 {
		fmt.Fprintf(w, "%-28s %10s %10s %10s %10s %10s %10s %10s\n", "scenario", "saturation", "knee", "low p50", "low p99", "knee p50", "knee p99", "efficiency")
		for _, s := range r.Scenarios {
			low := Step{}
			if s.LowLoad != nil {
				low = *s.LowLoad
			}
			knee, atKnee := fmt.Sprintf("%10.0f", s.Knee), fmt.Sprintf("%10s %10s", "-", "-")
			if k := s.AtKnee; k != nil {
				atKnee = fmt.Sprintf("%8.1fms %8.1fms", k.Latency.P50, k.Latency.P99)
			} else {
				knee = fmt.Sprintf("%10s", "none")
			}
			name := s.Scenario.Name
			if s.Instances > 1 {
				name = fmt.Sprintf("%s ×%d", name, s.Instances)
			}
			sat := fmt.Sprintf("%10.0f", s.MaxSustainable)
			switch {
			case len(s.Steps) == 0: // no sweep
				sat, knee = fmt.Sprintf("%10s", "-"), fmt.Sprintf("%10s", "-")
			case s.Saturation == nil:
				sat = fmt.Sprintf("%10s", "none")
			}
			fmt.Fprintf(w, "%-28s %s %s %8.1fms %8.1fms %s %10.2f\n",
				name, sat, knee, low.Latency.P50, low.Latency.P99, atKnee, s.Efficiency)
		}
		if len(r.Scenarios) > 0 && r.Scenarios[0].KneeP99Ms > 0 {
			fmt.Fprintf(w, "(saturation: every request aggregated, sender on schedule, p99 < 2 s; knee: the same with p99 <= %.0f ms)\n", r.Scenarios[0].KneeP99Ms)
		}
		r.writeCPU(w)
		r.writeTransactions(w)
	}
	WriteGatewayTable(w, r.Gateway)
	WriteCallsTable(w, r.Calls)
	if st := r.State; st != nil {
		fmt.Fprintf(w, "\nstate: %d open requests in one gather partition: resident memory %.0f MiB (Go heap %.0f MiB), Pebble on disk %.0f MiB, folded in %s\n",
			st.Open, st.RSSMiB, st.HeapMiB, st.DiskMiB, time.Duration(st.FoldMs*float64(time.Millisecond)).Round(time.Millisecond))
		for _, f := range st.Fire {
			fmt.Fprintf(w, "  firing %7d due deadlines among %7d open: %8.1f ms (%.1f µs each)\n", f.Due, f.Open, f.Ms, f.Ms*1000/float64(f.Due))
		}
	}
}

func (r *Report) writeLimit(w io.Writer) {
	if r.LimitStart == nil && r.LimitEnd == nil {
		return
	}
	fmt.Fprintf(w, "broker limit (raw produce->consume, %d-byte records, one hop; warm-up runs until two in a row agree within %.0f %%, then the runs):\n", r.RawSize, 100*SettleWithin)
	for _, x := range []struct {
		when string
		l    *BrokerLimit
	}{{"start", r.LimitStart}, {"end", r.LimitEnd}} {
		if x.l == nil {
			continue
		}
		fmt.Fprintf(w, "  %-5s median %9.0f records/s, spread %3.0f %% (%d runs of %.0fs: %s; warm-up %s)\n",
			x.when, x.l.Median, 100*x.l.Spread, len(x.l.Runs), x.l.EachSeconds, joinRates(x.l.Runs), joinRates(x.l.Warmups))
	}
	fmt.Fprintf(w, "  efficiency uses %.0f records/s, the median of every run above\n", r.Raw)
	for _, warn := range r.Warnings() {
		fmt.Fprintf(w, "WARNING: %s\n", warn)
	}
	fmt.Fprintln(w)
}

// joinRates lists rates, whole, separated by commas.
func joinRates(rates []float64) string {
	s := make([]string, len(rates))
	for i, v := range rates {
		s[i] = fmt.Sprintf("%.0f", v)
	}
	return strings.Join(s, ", ")
}

// stepRow is a step of the tables by step: a scenario at its knee or at
// its saturation.
type stepRow struct {
	name string
	st   *Step
}

// kneeAndSaturation returns the knee and saturation steps of every
// scenario that have what has(step) asks for.
func (r *Report) kneeAndSaturation(has func(*Step) bool) []stepRow {
	var rows []stepRow
	for _, s := range r.Scenarios {
		name := s.Scenario.Name
		if s.Instances > 1 {
			name = fmt.Sprintf("%s ×%d", name, s.Instances)
		}
		for _, at := range []stepRow{{"knee", s.AtKnee}, {"saturation", s.Saturation}} {
			if at.st != nil && has(at.st) {
				rows = append(rows, stepRow{name + ", " + at.name, at.st})
			}
		}
	}
	return rows
}

// writeCPU writes the CPU per request at the knee and at the saturation.
func (r *Report) writeCPU(w io.Writer) {
	rows := r.kneeAndSaturation(func(st *Step) bool { return st.CPU != nil && st.CPU.Requests > 0 })
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(w, "\nCPU per request, µs (process: the whole bench process; scatter, workers, gather, other: by profile label; shares of the roles' CPU):\n")
	fmt.Fprintf(w, "%-40s %8s %8s %8s %8s %8s %8s %8s %8s  %s\n", "scenario, at", "req/s", "process", "scatter", "workers", "gather", "other", "roles", "broker", "scatter/workers/gather")
	for _, row := range rows {
		c := row.st.CPU
		shares := "(no profile)"
		if c.Profiled {
			sc, wk, g := c.Shares()
			shares = fmt.Sprintf("%.0f/%.0f/%.0f %%", 100*sc, 100*wk, 100*g)
		}
		fmt.Fprintf(w, "%-40s %8.0f %8.0f %8.0f %8.0f %8.0f %8.0f %8.0f %8.0f  %s\n",
			row.name, row.st.Rate, c.Process, c.Scatter, c.Workers, c.Gather, c.Other, c.Roles(), c.Broker, shares)
	}
}

// writeTransactions writes the scatter's and the gather's transactions at
// the knee and at the saturation.
func (r *Report) writeTransactions(w io.Writer) {
	rows := r.kneeAndSaturation(func(st *Step) bool { return len(st.Transactions) > 0 })
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(w, "\ntransactions (from begin to the brokers' answer to the end; end: outputs acknowledged, offsets added, transaction ended;\n"+
		"requests: the role's requests to the brokers but fetches, from write to response read, overlapping where sent together):\n")
	fmt.Fprintf(w, "%-40s %8s %-8s %8s %12s %8s %8s %8s\n", "scenario, at", "req/s", "role", "txn/s", "records/txn", "p50", "p99", "end p50")
	for _, row := range rows {
		for _, role := range []string{kafka.RoleScatter, kafka.RoleGather} {
			if t := row.st.Transactions[role]; t != nil {
				fmt.Fprintf(w, "%-40s %8.0f %-8s %8.0f %12.1f %6.1fms %6.1fms %6.1fms\n",
					row.name, row.st.Rate, role, t.PerSecond, t.Records, t.P50Ms, t.P99Ms, t.EndP50Ms)
				if len(t.RoundTrips) > 0 {
					fmt.Fprintf(w, "    %s\n", roundTrips(t.RoundTrips))
				}
			}
		}
	}
}

// roundTrips tells the requests of a role's transaction: the kinds sent at
// least once in twenty transactions, as count × mean time, and the sum.
func roundTrips(rts []RoundTrip) string {
	var b strings.Builder
	var sum float64
	for _, rt := range rts {
		sum += rt.MsPerTxn()
		if rt.PerTxn < 0.05 {
			continue
		}
		fmt.Fprintf(&b, "%s %.2f×%.2fms, ", rt.Request, rt.PerTxn, rt.MeanMs)
	}
	return fmt.Sprintf("requests a transaction (count × mean): %ssum %.1fms", b.String(), sum)
}

// KafkaVersion asks the broker which Kafka it is (franz-go's guess from
// its API versions).
func KafkaVersion(ctx context.Context, brokers []string) string {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return "unknown"
	}
	defer cl.Close()
	vs, err := kadm.NewClient(cl).ApiVersions(ctx)
	if err != nil {
		return "unknown"
	}
	for _, v := range vs {
		if v.Err == nil {
			return v.VersionGuess()
		}
	}
	return "unknown"
}
