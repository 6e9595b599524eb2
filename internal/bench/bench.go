// Package bench measures scattergather against a real Kafka broker: an
// open-loop load at constant rates with latency from each request's
// intended send time to the moment a read_committed consumer reads its
// aggregate (no coordinated omission), a step sweep for the highest
// sustainable rate, the broker's own produce→consume limit for records of
// the same size in the same run, and the gather's state at scale.
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
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
	// doubles it until a step is not sustainable, then one step halfway
	// between the last good and the first bad rate refines it.
	StartRate float64
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
	// Instances of each role that ran it.
	Instances      int     `json:"instances"`
	Steps          []Step  `json:"steps"`
	MaxSustainable float64 `json:"max_sustainable_rate"`
	LowLoad        *Step   `json:"low_load,omitempty"`
	At60           *Step   `json:"at_60_percent,omitempty"`
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
}

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
	topo  *topology.Topology
	flow  *topology.Flow
	track *tracker
	col   *collect.Collector
	seq   atomic.Int64
	stop  func()
	// calls counts the provider calls of the measured window's requests.
	calls *callCounts
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
	var runners []kafka.Runner
	for n := range cfg.Instances {
		opts := []kafka.RoleOpt{kafka.WithLogger(cfg.Logger), kafka.WithInstance(fmt.Sprintf("bench-%d", n))}
		for i := range sc.Fanout {
			opts = append(opts, kafka.WithHandler(fmt.Sprintf("t%d", i), provider(sc, i, counts)))
		}
		rs, err := kafka.Roles(topo, topo.Flows, kafka.RoleAll, fmt.Sprintf("%s/%s/%d", os.TempDir(), name, n), opts...)
		if err != nil {
			return nil, err
		}
		runners = append(runners, rs...)
	}
	r := &runner{cfg: cfg, topo: topo, flow: f, track: &tracker{}, calls: counts}
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
	ids, behind, err := send(r.cfg.Window, true)
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
		StagesP99: Stages{float64(r.track.stages[0].ValueAtQuantile(99)), float64(r.track.stages[1].ValueAtQuantile(99)), float64(r.track.stages[2].ValueAtQuantile(99))}}
	r.track.mu.Unlock()
	st.Sustainable = st.Received == st.Sent && behind < 200*time.Millisecond && st.Latency.P99 < 2000
	// Let the stragglers of an overloaded step go before the next one.
	return st, r.await(ctx, drain.Add(20*time.Second), ids)
}

// await waits until ids have their aggregates or until deadline; only the
// end of ctx is an error.
func (r *runner) await(ctx context.Context, deadline time.Time, ids []string) error {
	wctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	_ = r.col.Wait(wctx, ids...)
	return ctx.Err()
}

// RunScenario sweeps one scenario.
func RunScenario(ctx context.Context, cfg Config, sc Scenario, raw float64) (*ScenarioResult, error) {
	cfg.defaults()
	r, err := startScenario(ctx, &cfg, sc)
	if err != nil {
		return nil, err
	}
	defer r.stop()
	s, err := admin.NewSender(r.topo, kafka.WithLogger(cfg.Logger))
	if err != nil {
		return nil, err
	}
	defer s.Close()
	res := &ScenarioResult{Scenario: sc, Instances: cfg.Instances}
	run := func(rate float64) (Step, error) {
		st, err := r.step(ctx, s, rate)
		if err == nil {
			fmt.Fprintf(cfg.Progress, "  %-28s %7.0f req/s: achieved %7.0f, received %d/%d, p50 %6.1f ms, p99 %7.1f ms (stages p50 %.0f/%.0f/%.0f, p99 %.0f/%.0f/%.0f ms), sustainable %v\n",
				sc.Name, rate, st.Achieved, st.Received, st.Sent, st.Latency.P50, st.Latency.P99, st.Stages.Scatter, st.Stages.Workers, st.Stages.Gather, st.StagesP99.Scatter, st.StagesP99.Workers, st.StagesP99.Gather, st.Sustainable)
		}
		return st, err
	}
	low, err := run(cfg.LowRate)
	if err != nil {
		return nil, err
	}
	res.LowLoad = &low
	if cfg.LowOnly {
		return res, nil
	}
	good, bad := 0.0, 0.0
	for rate := cfg.StartRate; ; rate *= 2 {
		st, err := run(rate)
		if err != nil {
			return nil, err
		}
		res.Steps = append(res.Steps, st)
		if !st.Sustainable {
			bad = rate
			break
		}
		good = rate
		if rate > 1e6 {
			break
		}
	}
	if good > 0 && bad > 0 {
		mid := (good + bad) / 2
		st, err := run(mid)
		if err != nil {
			return nil, err
		}
		res.Steps = append(res.Steps, st)
		if st.Sustainable {
			good = mid
		}
	}
	res.MaxSustainable = good
	if good > 0 {
		at60, err := run(0.6 * good)
		if err != nil {
			return nil, err
		}
		res.At60 = &at60
	}
	if raw > 0 {
		res.Efficiency = good * float64(2*sc.Fanout+3) / raw
	}
	return res, nil
}

// Raw measures the broker's own limit: an idempotent producer writing n
// records of size bytes as fast as it can and a consumer reading them
// (one hop), in records per second from the first produce to the last
// record read.
func Raw(ctx context.Context, brokers []string, partitions, n, size int) (float64, error) {
	topic := fmt.Sprintf("bench-raw-%d", time.Now().UnixNano())
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerLinger(0))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopic(ctx, int32(partitions), 1, nil, topic); err != nil {
		return 0, err
	}
	defer adm.DeleteTopics(context.Background(), topic) //nolint:errcheck // best effort
	for {
		d, err := adm.ListTopics(ctx, topic)
		if err == nil && len(d[topic].Partitions) == partitions {
			break
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	cons, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		return 0, err
	}
	defer cons.Close()
	value := make([]byte, size)
	start := time.Now()
	var prodErr atomic.Value
	go func() {
		for i := range n {
			cl.Produce(ctx, &kgo.Record{Topic: topic, Key: []byte(strconv.Itoa(i)), Value: value}, func(_ *kgo.Record, err error) {
				if err != nil {
					prodErr.Store(err)
				}
			})
		}
	}()
	got := 0
	for got < n {
		fs := cons.PollFetches(ctx)
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		if e := prodErr.Load(); e != nil {
			return 0, e.(error)
		}
		got += fs.NumRecords()
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// Machine describes where the benchmark ran.
type Machine struct {
	Cores     int    `json:"cores"`
	GoVersion string `json:"go"`
	OS        string `json:"os"`
	Kafka     string `json:"kafka"`
}

// Report is a whole run.
type Report struct {
	Started   time.Time         `json:"started"`
	Machine   Machine           `json:"machine"`
	Raw       float64           `json:"raw_records_per_second"`
	RawSize   int               `json:"raw_record_bytes"`
	Scenarios []*ScenarioResult `json:"scenarios"`
	State     *StateResult      `json:"state,omitempty"`
	Gateway   []*GatewayResult  `json:"gateway,omitempty"`
	Calls     []*CallResult     `json:"calls,omitempty"`
}

// ThisMachine describes this machine; kafkaVersion is as the caller knows it.
func ThisMachine(kafkaVersion string) Machine {
	return Machine{Cores: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH, Kafka: kafkaVersion}
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes the report as a readable table.
func (r *Report) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "machine: %d cores, %s, %s; Kafka %s\n", r.Machine.Cores, r.Machine.OS, r.Machine.GoVersion, r.Machine.Kafka)
	if r.Raw > 0 {
		fmt.Fprintf(w, "broker limit (raw produce->consume, %d-byte records): %.0f records/s\n\n", r.RawSize, r.Raw)
	}
	if len(r.Scenarios) > 0 {
		fmt.Fprintf(w, "%-28s %10s %10s %10s %10s %12s %10s %10s\n", "scenario", "max req/s", "efficiency", "low p50", "low p99", "60% rate", "60% p50", "60% p99")
		for _, s := range r.Scenarios {
			low, at := Step{}, Step{}
			if s.LowLoad != nil {
				low = *s.LowLoad
			}
			if s.At60 != nil {
				at = *s.At60
			}
			name := s.Scenario.Name
			if s.Instances > 1 {
				name = fmt.Sprintf("%s ×%d", name, s.Instances)
			}
			fmt.Fprintf(w, "%-28s %10.0f %10.2f %8.1fms %8.1fms %12.0f %8.1fms %8.1fms\n",
				name, s.MaxSustainable, s.Efficiency, low.Latency.P50, low.Latency.P99, at.Rate, at.Latency.P50, at.Latency.P99)
		}
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
