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
)

func cmdBench(ctx context.Context, e *env, args []string) int {
	f := newFlags(e, "bench", "[--brokers HOST:PORT] [--scenarios SUBSTRINGS] [--json FILE]")
	brokers := f.String("brokers", "127.0.0.1:9092", "seed brokers of the Kafka cluster to measure")
	only := f.String("scenarios", "", "semicolon-separated substrings: run only the scenarios whose name contains one, e.g. 'fanout 3, all' (default: all)")
	lowOnly := f.Bool("low-only", false, "measure only the low-load latency of each scenario, no sweep")
	warmup := f.Duration("warmup", 2*time.Second, "warm-up before each measured step")
	window := f.Duration("window", 5*time.Second, "measurement window of each step")
	start := f.Float64("start-rate", 100, "first rate of the sweep, requests/s (doubled until unsustainable)")
	low := f.Float64("low-rate", 20, "rate of the low-load latency measurement, requests/s")
	partitions := f.Int("partitions", 3, "partitions of every topic")
	stateN := f.Int("state", 1_000_000, "open requests to hold in one gather for the state measurement (0: skip)")
	rawN := f.Int("raw-records", 200_000, "records of the raw produce->consume measurement (0: skip)")
	jsonOut := f.String("json", "", "write the report as JSON to this file")
	cpuProfile := f.String("cpuprofile", "", "write a CPU profile of the scenarios to this file")
	memProfile := f.String("memprofile", "", "write an allocation profile to this file at the end")
	gw := f.Bool("gateway", false, "also measure each scenario through the HTTP gateway: open loop at --low-rate, closed loop with --gateway-clients, then (without --low-only) an open-loop sweep for the knee")
	gwClients := f.String("gateway-clients", "1,8,32", "comma-separated client counts of the gateway's closed-loop steps")
	instances := f.String("instances", "1", "comma-separated counts of instances of each role to run every scenario with, e.g. 1,2,3 for a scale-out table")
	rf := f.Int("replication-factor", 1, "replication factor of the scenarios' topics (3 on a three-node cluster)")
	if code, ok := f.parse(args); !ok {
		return code
	}
	var counts []int
	for _, c := range strings.Split(*instances, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n < 1 {
			return f.usageError("--instances wants positive counts, have %q", c)
		}
		counts = append(counts, n)
	}
	var clients []int
	for _, c := range strings.Split(*gwClients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n < 1 {
			return f.usageError("--gateway-clients wants positive counts, have %q", c)
		}
		clients = append(clients, n)
	}
	var scenarios []bench.Scenario
	for _, sc := range append(bench.DefaultScenarios(), bench.CallScenarios()...) {
		if *only == "" {
			scenarios = append(scenarios, sc)
			continue
		}
		for _, s := range strings.Split(*only, ";") {
			if strings.Contains(sc.Name, strings.TrimSpace(s)) {
				scenarios = append(scenarios, sc)
				break
			}
		}
	}
	seeds := strings.Split(*brokers, ",")
	rep := &bench.Report{Started: time.Now().UTC(), Machine: bench.ThisMachine(bench.KafkaVersion(ctx, seeds))}
	out := e.stdout
	fmt.Fprintf(out, "scattergather bench against %s (Kafka %s), %d cores\n", *brokers, rep.Machine.Kafka, rep.Machine.Cores)
	const recordBytes = 200 // about the size of a task or result record with a 100-byte payload
	if *rawN > 0 {
		raw, err := bench.Raw(ctx, seeds, *partitions, *rawN, recordBytes)
		if err != nil {
			return fail(e, "bench", fmt.Errorf("raw produce->consume: %w", err))
		}
		rep.Raw, rep.RawSize = raw, recordBytes
		fmt.Fprintf(out, "broker limit: %.0f records/s (raw produce->consume of %d-byte records)\n", raw, recordBytes)
	}
	cfg := bench.Config{Brokers: seeds, Warmup: *warmup, Window: *window, StartRate: *start, LowRate: *low,
		Partitions: *partitions, Progress: out, LowOnly: *lowOnly, ReplicationFactor: *rf}
	if *cpuProfile != "" {
		fh, err := os.Create(*cpuProfile)
		if err != nil {
			return fail(e, "bench", err)
		}
		if err := pprof.StartCPUProfile(fh); err != nil {
			return fail(e, "bench", err)
		}
		defer pprof.StopCPUProfile()
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
