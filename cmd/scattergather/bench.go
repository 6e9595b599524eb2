package main

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/scattergather/scattergather/internal/bench"
	"github.com/scattergather/scattergather/internal/gctune"
)

func cmdBench(ctx context.Context, e *env, args []string) int {
	f := newFlags(e, "bench", "[--brokers HOST:PORT] [--scenarios SUBSTRINGS] [--json FILE]")
	brokers := f.String("brokers", "127.0.0.1:9092", "seed brokers of the Kafka cluster to measure")
	only := f.String("scenarios", "", "semicolon-separated substrings: run only the scenarios whose name contains one, e.g. 'fanout 3, all', or is one exactly, with = before it: '=fanout 3, all, 5-50ms' (default: all)")
	lowOnly := f.Bool("low-only", false, "measure only the low-load latency of each scenario, no sweep")
	warmup := f.Duration("warmup", 2*time.Second, "warm-up before each measured step")
	window := f.Duration("window", 5*time.Second, "measurement window of each step")
	start := f.Float64("start-rate", 100, "first rate of the sweep, requests/s (doubled until unsustainable, then refined near the knee and the saturation)")
	refine := f.Int("refine", 3, "steps that narrow each of the knee and the saturation, each halving the bracket (3: to 9 %; 0: none)")
	warmSteps := f.Int("warmup-steps", 1, "steps at --start-rate before each scenario's low-load step, not counted, so that the broker's JVM is warm (0: none)")
	kneeP99 := f.Duration("knee-p99", 100*time.Millisecond, "p99 up to which a sustainable step is below the knee")
	low := f.Float64("low-rate", 20, "rate of the low-load latency measurement, requests/s")
	partitions := f.Int("partitions", 3, "partitions of every topic")
	stateN := f.Int("state", 1_000_000, "open requests to hold in one gather for the state measurement (0: skip)")
	rawEach := f.Duration("raw-time", 3*time.Second, "length of each run of the broker's raw produce->consume limit, measured before and after the scenarios (0: skip)")
	rawRepeats := f.Int("raw-repeats", 5, "runs of the broker limit after its warm-up run, each time it is measured")
	brokerPID := f.Int("broker-pid", 0, "pid of the broker on this machine, to report its CPU per request too (scripts/kafka.sh writes it to $SG_KAFKA_DIR/kafka.pid)")
	jsonOut := f.String("json", "", "write the report as JSON to this file")
	cpuProfile := f.String("cpuprofile", "", "write a CPU profile of the scenarios to this file")
	profileDir := f.String("profile-dir", "", "keep each measured window's CPU profile in this directory (labelled by role; not with --cpuprofile)")
	memProfile := f.String("memprofile", "", "write an allocation profile to this file at the end")
	gw := f.Bool("gateway", false, "also measure each scenario through the HTTP gateway: open loop at --low-rate, closed loop with --gateway-clients, then (without --low-only) an open-loop sweep for the knee")
	gwClients := f.String("gateway-clients", "1,8,32", "comma-separated client counts of the gateway's closed-loop steps")
	instances := f.String("instances", "1", "comma-separated counts of instances of each role to run every scenario with, e.g. 1,2,3 for a scale-out table")
	rf := f.Int("replication-factor", 1, "replication factor of the scenarios' topics (3 on a three-node cluster)")
	keep := f.Bool("keep-topics", false, "keep each scenario's topics and consumer groups on the cluster (named after its flow, bench-…) instead of deleting them after it")
	if code, ok := f.parse(args); !ok {
		return code
	}
	counts, bad := positiveCounts(*instances)
	if bad != "" {
		return f.usageError("--instances wants positive counts, have %q", bad)
	}
	if *rawRepeats < 1 {
		return f.usageError("--raw-repeats wants at least 1, have %d", *rawRepeats)
	}
	clients, bad := positiveCounts(*gwClients)
	if bad != "" {
		return f.usageError("--gateway-clients wants positive counts, have %q", bad)
	}
	scenarios := selectScenarios(*only, append(bench.DefaultScenarios(), bench.CallScenarios()...))
	seeds := strings.Split(*brokers, ",")
	rep := &bench.Report{Started: time.Now().UTC(), Machine: bench.ThisMachine(bench.KafkaVersion(ctx, seeds))}
	// The roles run here as run runs them: with its collector settings.
	rep.Machine.GC = gctune.Apply()
	out := e.stdout
	fmt.Fprintf(out, "scattergather bench against %s (Kafka %s), %d cores\n", *brokers, rep.Machine.Kafka, rep.Machine.Cores)
	rawCfg := bench.RawConfig{Brokers: seeds, Partitions: *partitions, ReplicationFactor: *rf, Each: *rawEach, Repeats: *rawRepeats,
		RecordBytes: 200, // about the size of a task or result record with a 100-byte payload
		Progress:    out}
	limit := func(end bool) int {
		if *rawEach <= 0 {
			return exitOK
		}
		when := "start"
		if end {
			when = "end"
		}
		l, err := bench.Raw(ctx, rawCfg)
		if err != nil {
			return fail(e, "bench", fmt.Errorf("raw produce->consume at the %s: %w", when, err))
		}
		rep.SetBrokerLimit(l, end)
		fmt.Fprintf(out, "broker limit at the %s: median %.0f records/s, spread %.0f %% over %d runs (raw produce->consume of %d-byte records)\n",
			when, l.Median, 100*l.Spread, len(l.Runs), l.RecordBytes)
		if l.Spread >= bench.SpreadWarning {
			fmt.Fprintf(out, "WARNING: the broker limit spreads by %.0f %%: the machine is not quiet, the figures will be doubtful\n", 100*l.Spread)
		}
		return exitOK
	}
	if code := limit(false); code != exitOK {
		return code
	}
	cfg := bench.Config{Brokers: seeds, Warmup: *warmup, Window: *window, StartRate: *start, LowRate: *low,
		Refine: *refine, KneeP99: *kneeP99, BrokerPID: *brokerPID, ProfileCPU: *cpuProfile == "", ProfileDir: *profileDir,
		Partitions: *partitions, Progress: out, LowOnly: *lowOnly, ReplicationFactor: *rf, KeepTopics: *keep}
	if *refine == 0 {
		cfg.Refine = -1
	}
	cfg.WarmupSteps = *warmSteps
	if *warmSteps == 0 {
		cfg.WarmupSteps = -1
	}
	if *profileDir != "" {
		if *cpuProfile != "" {
			return f.usageError("--profile-dir and --cpuprofile both want the profiler: give one")
		}
		if err := os.MkdirAll(*profileDir, 0o755); err != nil {
			return fail(e, "bench", err)
		}
	}
	if *cpuProfile != "" {
		fh, err := os.Create(*cpuProfile)
		if err != nil {
			return fail(e, "bench", err)
		}
		if err := pprof.StartCPUProfile(fh); err != nil {
			return fail(e, "bench", err)
		}
		defer pprof.StopCPUProfile()
		fmt.Fprintln(out, "--cpuprofile holds the profiler: the steps' CPU is not split by role")
	}
	if *memProfile != "" {
		defer func() {
			if fh, err := os.Create(*memProfile); err == nil {
				_ = pprof.Lookup("allocs").WriteTo(fh, 0)
				fh.Close()
			}
		}()
	}
	for _, sc := range scenarios {
		if sc.Calls != nil && sc.Calls.Rate > 0 {
			res, err := bench.RunCalls(ctx, cfg, sc)
			if err != nil {
				return fail(e, "bench", fmt.Errorf("%s: %w", sc.Name, err))
			}
			rep.Calls = append(rep.Calls, res)
			continue
		}
		for _, n := range counts {
			cfg.Instances = n
			res, err := bench.RunScenario(ctx, cfg, sc, rep.Raw)
			if err != nil {
				return fail(e, "bench", fmt.Errorf("%s, %d instances: %w", sc.Name, n, err))
			}
			rep.Scenarios = append(rep.Scenarios, res)
		}
		cfg.Instances = 1
		if *gw {
			gres, err := bench.RunGateway(ctx, cfg, sc, clients)
			if err != nil {
				return fail(e, "bench", fmt.Errorf("%s through the gateway: %w", sc.Name, err))
			}
			rep.Gateway = append(rep.Gateway, gres)
		}
	}
	if len(scenarios) > 0 {
		if code := limit(true); code != exitOK {
			return code
		}
	}
	if *stateN > 0 {
		dir, err := os.MkdirTemp("", "scattergather-bench-state-")
		if err != nil {
			return fail(e, "bench", err)
		}
		defer os.RemoveAll(dir)
		fmt.Fprintf(out, "holding %d open requests in one gather partition...\n", *stateN)
		st, err := bench.State(dir, *stateN)
		if err != nil {
			return fail(e, "bench", fmt.Errorf("state: %w", err))
		}
		rep.State = st
	}
	fmt.Fprintln(out)
	rep.WriteTable(out)
	if *jsonOut != "" {
		fh, err := os.Create(*jsonOut)
		if err != nil {
			return fail(e, "bench", err)
		}
		defer fh.Close()
		if err := rep.WriteJSON(fh); err != nil {
			return fail(e, "bench", err)
		}
	}
	return exitOK
}

// positiveCounts parses a comma-separated list of positive integers; bad
// is the first item that is none.
func positiveCounts(list string) (counts []int, bad string) {
	for _, c := range strings.Split(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n < 1 {
			return nil, c
		}
		counts = append(counts, n)
	}
	return counts, ""
}

// selectScenarios returns the scenarios of all that only names: every one
// when only is empty, else those whose name contains one of its
// semicolon-separated substrings or, for a substring after "=", is it.
func selectScenarios(only string, all []bench.Scenario) []bench.Scenario {
	if only == "" {
		return all
	}
	var out []bench.Scenario
	for _, sc := range all {
		for _, s := range strings.Split(only, ";") {
			s = strings.TrimSpace(s)
			if name, exact := strings.CutPrefix(s, "="); exact && sc.Name == name || !exact && strings.Contains(sc.Name, s) {
				out = append(out, sc)
				break
			}
		}
	}
	return out
}
