package topology_test

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/scattergather/scattergather/processor/topology"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/bad")

// testEnv is the environment every test parses with: no test reads the
// process environment.
var testEnv = map[string]string{
	"SKY_HOST":      "api.skyscanner.example",
	"SKY_KEY":       "sky-key-123",
	"SECRET_TOKEN":  "tok-very-secret-value",
	"PROVIDER_HOST": "p.example.com",
	"EMPTY":         "",
	// KAFKA_PASSWORD is the SASL password of full.yaml.
	"KAFKA_PASSWORD": "kafka-pw-very-secret",
}

func lookup(env map[string]string) topology.Env {
	return func(name string) (string, bool) {
		v, ok := env[name]
		return v, ok
	}
}

// secrets must never appear in any message.
var secrets = []string{"s3cret-ftp", "hunter2", "pa55word", "tok-very-secret-value", "kafka-pw-very-secret"}

func parse(t *testing.T, doc string, env map[string]string) (*topology.Topology, error) {
	t.Helper()
	return topology.Parse("t.yaml", []byte(doc), lookup(env))
}

func mustParse(t *testing.T, doc string) *topology.Topology {
	t.Helper()
	topo, err := parse(t, doc, testEnv)
	if err != nil {
		t.Fatalf("parse:\n%v", err)
	}
	return topo
}

func TestRepositoryTopologyLoads(t *testing.T) {
	topo, err := topology.Parse("topology.yaml", readFile(t, "../../topology.yaml"), lookup(nil))
	if err != nil {
		t.Fatalf("the repository's topology.yaml does not load:\n%v", err)
	}
	if err := topo.Validate(); err != nil {
		t.Errorf("re-validation: %v", err)
	}
	f := topo.Flow("flights")
	if f == nil {
		t.Fatal("no flow flights")
	}
	if got := f.Target("skyscanner").HTTP.Headers["X-Api-Key"]; got != "demo-key" {
		t.Errorf("X-Api-Key from ${SKYSCANNER_API_KEY:-demo-key} = %q", got)
	}
	if got := topo.Kafka.Brokers; !reflect.DeepEqual(got, []string{"127.0.0.1:9092"}) {
		t.Errorf("brokers %q", got)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func intp(i int) *int { return &i }

func boolp(b bool) *bool { return &b }

func TestFullFile(t *testing.T) {
	topo, err := topology.Parse("testdata/full.yaml", readFile(t, "testdata/full.yaml"), lookup(testEnv))
	if err != nil {
		t.Fatalf("full.yaml:\n%v", err)
	}
	d := func(s string) topology.Duration {
		v, err := time.ParseDuration(s)
		if err != nil {
			t.Fatal(err)
		}
		return topology.Duration{D: v}
	}
	dp := func(s string) *topology.Duration {
		v := d(s)
		return &v
	}
	want := &topology.Topology{
		File: "testdata/full.yaml",
		Kafka: topology.Kafka{
			Brokers:            []string{"broker-1:9092", "broker-2:9092"},
			ClientID:           "sg-test",
			GroupPrefix:        "sgtest",
			ReplicationFactor:  3,
			SessionTimeout:     d("10s"),
			TransactionTimeout: d("20s"),
			SASL:               &topology.SASL{Mechanism: "SCRAM-SHA-512", Username: "sg-user", Password: "kafka-pw-very-secret"},
			TLS: &topology.TLS{Enabled: boolp(true), CAFile: "testdata/tls/ca.pem", CertFile: "testdata/tls/client.pem",
				KeyFile: "testdata/tls/client-key.pem", ServerName: "kafka.internal", InsecureSkipVerify: true},
			Encoding: topology.EncodingRegistry,
			SchemaRegistry: &topology.SchemaRegistry{URL: "https://registry.internal:8081", Username: "sg-registry",
				Password: "tok-very-secret-value", SubjectStrategy: topology.SubjectTopicRecord, Timeout: d("3s")},
		},
		Flows: []*topology.Flow{{
			Name:        "flights",
			Description: "cheapest fare across providers",
			Topics: topology.Topics{
				Requests: "fl.in", Results: "fl.results", Aggregated: "fl.out", Late: "fl.late", DeadLetter: "fl.dlq",
				ResultsRetention: d("48h"),
			},
			Partitions: 6,
			Timeout:    d("1500ms"),
			Fanout:     topology.Fanout{Mode: "targets", MaxTasks: 8},
			Targets: []*topology.Target{
				{Name: "skyscanner", Topic: "fl.tasks.sky", MaxInFlight: 16, Concurrency: "adaptive", MinInFlight: 2, RateLimit: &topology.RateLimit{PerSecond: 12.5, Burst: 5}, HTTP: &topology.HTTPTarget{
					URL: "https://api.skyscanner.example/quote", Method: "PUT", Timeout: d("1s"), Retries: 2,
					Backoff: d("10ms"), MaxBackoff: d("500ms"),
					Headers:          map[string]string{"X-Api-Key": "sky-key-123", "Accept": "application/json"},
					MaxResponseBytes: 512 << 10, InsecureSkipVerify: true, FollowRedirects: "same_host",
					Breaker: topology.Breaker{Failures: intp(3), Cooldown: d("30s")},
				}},
				{Name: "kayak", Topic: "flights.tasks.kayak", MaxInFlight: 32, Concurrency: "fixed", MinInFlight: 4, HTTP: &topology.HTTPTarget{
					Endpoints: []string{"http://kayak-a.internal:8080/quote", "http://kayak-b.internal:8080/quote?key=sky-key-123"}, Method: "POST", Timeout: d("1500ms"), FollowRedirects: "never",
					Backoff: d("50ms"), MaxBackoff: d("1s"), MaxResponseBytes: 1 << 20,
					Breaker: topology.Breaker{Failures: intp(5), Cooldown: d("5s")},
				}},
				{Name: "expedia", Topic: "flights.tasks.expedia", MaxInFlight: 32, Concurrency: "fixed", MinInFlight: 4,
					Hedge: &topology.Hedge{Quantile: 0.9, Budget: 0.1, Window: 500, MinDelay: d("20ms")}},
			},
			Strategy:    topology.Strategy{Type: "quorum", Quorum: topology.Quorum{Majority: true}, MaxFailures: intp(1)},
			Consolidate: topology.Consolidate{Type: "merge", Path: "offers", Key: "id", Sort: "price", Order: "asc", Top: 5},
			Limits:      topology.Limits{MaxPayloadBytes: 2 << 20, MaxOpenRequests: 5000, MaxAggregateBytes: 800_000, MaxTimeout: d("10m")},
			Gather:      topology.GatherOpts{TickInterval: d("50ms"), ClosedRetention: d("10m"), RebuildTimeout: d("20m"), CommitDelay: dp("20ms")},
			Worker:      topology.WorkerOpts{MaxInFlight: 128, MaxInFlightPerTarget: 32, Concurrency: "fixed", MinInFlightPerTarget: 4, DeadlineGrace: d("250ms"), Cancel: topology.CancelNever},
		}, {
			Name: "summarize",
			Topics: topology.Topics{
				Requests: "summarize.requests", Results: "summarize.results", Aggregated: "summarize.aggregated",
				Late: "summarize.late", DeadLetter: "summarize.dlq", ResultsRetention: d("168h"),
			},
			Partitions:  3,
			Timeout:     d("45s"),
			Fanout:      topology.Fanout{Mode: "items", Items: "doc.chunks", MaxTasks: 100},
			Targets:     []*topology.Target{{Name: "summarizer", Topic: "summarize.tasks.summarizer", MaxInFlight: 1024, Concurrency: "adaptive", MinInFlight: 8}},
			Strategy:    topology.Strategy{Type: "timeout"},
			Consolidate: topology.Consolidate{Type: "vote", Field: "summary.label"},
			Limits: topology.Limits{MaxPayloadBytes: topology.DefaultMaxPayloadBytes, MaxOpenRequests: topology.DefaultMaxOpenRequests,
				MaxAggregateBytes: topology.DefaultMaxAggregateBytes, MaxTimeout: d("1h")},
			Gather: topology.GatherOpts{TickInterval: d("200ms"), ClosedRetention: d("90s"), RebuildTimeout: d("10m"), CommitDelay: dp("100ms")},
			Worker: topology.WorkerOpts{MaxInFlight: 4096, MaxInFlightPerTarget: 1024, Concurrency: "adaptive", MinInFlightPerTarget: 8, DeadlineGrace: d("1s"), Cancel: topology.CancelDecided},
		}},
	}
	// Field by field: a parsed topology also keeps the positions of its
	// document, which want has not.
	if topo.File != want.File || len(topo.Flows) != len(want.Flows) {
		t.Errorf("file %q with %d flows, want %q with %d", topo.File, len(topo.Flows), want.File, len(want.Flows))
	}
	for i := range want.Flows {
		if i < len(topo.Flows) && !reflect.DeepEqual(topo.Flows[i], want.Flows[i]) {
			t.Errorf("flow %d:\n got %+v\nwant %+v", i, *topo.Flows[i], *want.Flows[i])
			for j := range want.Flows[i].Targets {
				if j < len(topo.Flows[i].Targets) && !reflect.DeepEqual(topo.Flows[i].Targets[j], want.Flows[i].Targets[j]) {
					t.Errorf("target %d:\n got %+v %+v\nwant %+v %+v", j, topo.Flows[i].Targets[j], topo.Flows[i].Targets[j].HTTP,
						want.Flows[i].Targets[j], want.Flows[i].Targets[j].HTTP)
				}
			}
		}
	}
	if !reflect.DeepEqual(topo.Kafka, want.Kafka) {
		t.Errorf("kafka:\n got %+v\nwant %+v", topo.Kafka, want.Kafka)
	}
	if got, want := topo.Flows[0].AllTopics(), []string{"fl.in", "fl.tasks.sky", "flights.tasks.kayak", "flights.tasks.expedia", "fl.results", "fl.out", "fl.late", "fl.dlq"}; !reflect.DeepEqual(got, want) {
		t.Errorf("AllTopics %q, want %q", got, want)
	}
	if got := topo.Group(topo.Flows[1], "worker.summarizer"); got != "sgtest.summarize.worker.summarizer" {
		t.Errorf("group %q", got)
	}
	if got := topo.Flows[0].Strategy.QuorumFor(3); got != 2 {
		t.Errorf("majority of 3 = %d, want 2", got)
	}
	if topo.Flow("nope") != nil || topo.Flows[0].Target("nope") != nil {
		t.Error("lookup of an unknown name is not nil")
	}
}

// TestFullFileHasEveryKey fails when a key is added to the types without
// being exercised by testdata/full.yaml.
func TestFullFileHasEveryKey(t *testing.T) {
	var root yaml.Node
	if err := yaml.Unmarshal(readFile(t, "testdata/full.yaml"), &root); err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.DocumentNode:
			walk(n.Content[0], path)
		case yaml.SequenceNode:
			for _, c := range n.Content {
				walk(c, path+"[]")
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				p := n.Content[i].Value
				if path != "" {
					p = path + "." + p
				}
				have[p] = true
				walk(n.Content[i+1], p)
			}
		}
	}
	walk(&root, "")

	var want []string
	var keys func(t reflect.Type, path string)
	keys = func(t reflect.Type, path string) {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || t == reflect.TypeFor[topology.Duration]() || t == reflect.TypeFor[topology.Quorum]() {
			return
		}
		for i := 0; i < t.NumField(); i++ {
			tag := t.Field(i).Tag.Get("yaml")
			if tag == "" || tag == "-" {
				continue
			}
			p := tag
			if path != "" {
				p = path + "." + tag
			}
			want = append(want, p)
			ft := t.Field(i).Type
			if ft.Kind() == reflect.Slice {
				keys(ft.Elem(), p+"[]")
			} else if ft.Kind() != reflect.Map {
				keys(ft, p)
			}
		}
	}
	keys(reflect.TypeFor[topology.Topology](), "")
	if len(want) < 50 {
		t.Fatalf("only %d keys found by reflection: %q", len(want), want)
	}
	for _, k := range want {
		if !have[k] {
			t.Errorf("testdata/full.yaml does not set %s", k)
		}
	}
}

func TestDefaults(t *testing.T) {
	topo := mustParse(t, `
flows:
  - name: orders
    timeout: 10s
    targets:
      - name: a
      - name: b
        max_in_flight: 3
        http: {url: "http://b.example/x"}
    consolidate: {type: merge, path: hits}
  - name: slow
    timeout: 45s
    targets: [{name: a}]
  - name: kept
    timeout: 45s
    gather: {closed_retention: 5s}
    worker: {max_in_flight_per_target: 7}
    targets: [{name: a}]
  - name: fixed
    timeout: 45s
    worker: {concurrency: fixed, min_in_flight_per_target: 16}
    targets: [{name: a}, {name: b, concurrency: adaptive, max_in_flight: 10}, {name: c, min_in_flight: 3}]
`)
	k := topo.Kafka
	if !reflect.DeepEqual(k, topology.Kafka{Brokers: []string{"127.0.0.1:9092"}, ClientID: "scattergather", GroupPrefix: "scattergather", ReplicationFactor: 1,
		SessionTimeout: topology.Duration{D: topology.DefaultSessionTimeout}, TransactionTimeout: topology.Duration{D: topology.DefaultTransactionTimeout},
		Encoding: topology.EncodingSingleObject}) {
		t.Errorf("kafka defaults %+v", k)
	}
	f := topo.Flows[0]
	for _, c := range []struct{ name, got, want string }{
		{"requests", f.Topics.Requests, "orders.requests"},
		{"results", f.Topics.Results, "orders.results"},
		{"aggregated", f.Topics.Aggregated, "orders.aggregated"},
		{"late", f.Topics.Late, "orders.late"},
		{"dead_letter", f.Topics.DeadLetter, "orders.dlq"},
		{"target topic", f.Targets[0].Topic, "orders.tasks.a"},
		{"fanout mode", f.Fanout.Mode, "targets"},
		{"strategy", f.Strategy.Type, "all"},
		{"merge order", f.Consolidate.Order, "desc"},
		{"http method", f.Targets[1].HTTP.Method, "POST"},
		{"http follow_redirects", f.Targets[1].HTTP.FollowRedirects, "never"},
		{"consumer group", topo.Group(f, "gather"), "scattergather.orders.gather"},
		{"second flow consolidation", topo.Flows[1].Consolidate.Type, "collect"},
		{"second flow order", topo.Flows[1].Consolidate.Order, ""},
		{"concurrency", f.Worker.Concurrency, "adaptive"},
		{"target concurrency", f.Targets[0].Concurrency, "adaptive"},
		{"target concurrency from the flow", topo.Flows[3].Targets[0].Concurrency, "fixed"},
		{"target concurrency as written", topo.Flows[3].Targets[1].Concurrency, "adaptive"},
	} {
		if c.got != c.want {
			t.Errorf("%s: %q, want %q", c.name, c.got, c.want)
		}
	}
	h := f.Targets[1].HTTP
	for _, c := range []struct {
		name      string
		got, want int64
	}{
		{"results retention", int64(f.Topics.ResultsRetention.D), int64(7 * 24 * time.Hour)},
		{"partitions", int64(f.Partitions), 3},
		{"max tasks", int64(f.Fanout.MaxTasks), 64},
		{"max failures", int64(f.Strategy.MaxFailuresOrNone()), -1},
		{"max payload", int64(f.Limits.MaxPayloadBytes), topology.DefaultMaxPayloadBytes},
		{"max open", int64(f.Limits.MaxOpenRequests), topology.DefaultMaxOpenRequests},
		{"max aggregate", int64(f.Limits.MaxAggregateBytes), topology.DefaultMaxAggregateBytes},
		{"max aggregate under the broker's default message size", int64(f.Limits.MaxAggregateBytes), min(topology.DefaultMaxAggregateBytes, 1<<20-1)},
		{"max payload under the broker's default message size", int64(f.Limits.MaxPayloadBytes), min(topology.DefaultMaxPayloadBytes, 1<<20-1)},
		{"tick interval", int64(f.Gather.TickInterval.D), int64(200 * time.Millisecond)},
		{"closed retention max(2*10s, 1m)", int64(f.Gather.ClosedRetention.D), int64(time.Minute)},
		{"closed retention max(2*45s, 1m)", int64(topo.Flows[1].Gather.ClosedRetention.D), int64(90 * time.Second)},
		{"closed retention as written", int64(topo.Flows[2].Gather.ClosedRetention.D), int64(5 * time.Second)},
		{"max timeout", int64(f.Limits.MaxTimeout.D), int64(topology.DefaultMaxTimeout)},
		{"worker max in flight", int64(f.Worker.MaxInFlight), 4096},
		{"per target", int64(f.Worker.MaxInFlightPerTarget), 1024},
		{"min per target", int64(f.Worker.MinInFlightPerTarget), 8},
		{"min per target at most the max", int64(topo.Flows[2].Worker.MinInFlightPerTarget), 7},
		{"target min in flight", int64(f.Targets[0].MinInFlight), 8},
		{"target min in flight from the flow", int64(topo.Flows[3].Targets[0].MinInFlight), 16},
		{"target min in flight at most its max", int64(topo.Flows[3].Targets[1].MinInFlight), 10},
		{"target min in flight as written", int64(topo.Flows[3].Targets[2].MinInFlight), 3},
		{"target min in flight at most its max from the flow", int64(topo.Flows[2].Targets[0].MinInFlight), 7},
		{"deadline grace", int64(f.Worker.DeadlineGrace.D), int64(topology.DefaultDeadlineGrace)},
		{"target max in flight", int64(f.Targets[0].MaxInFlight), 1024},
		{"target max in flight as written", int64(f.Targets[1].MaxInFlight), 3},
		{"target max in flight from the flow", int64(topo.Flows[2].Targets[0].MaxInFlight), 7},
		{"http timeout = flow timeout", int64(h.Timeout.D), int64(10 * time.Second)},
		{"http retries", int64(h.Retries), 0},
		{"http backoff", int64(h.Backoff.D), int64(50 * time.Millisecond)},
		{"http max backoff", int64(h.MaxBackoff.D), int64(time.Second)},
		{"http max response", int64(h.MaxResponseBytes), 1 << 20},
		{"breaker failures", int64(h.Breaker.Threshold()), 5},
		{"breaker cooldown", int64(h.Breaker.Cooldown.D), int64(5 * time.Second)},
	} {
		if c.got != c.want {
			t.Errorf("%s: %d, want %d", c.name, c.got, c.want)
		}
	}
	if f.Targets[0].HTTP != nil {
		t.Error("a target without http got an HTTP config")
	}
}

func TestInterpolation(t *testing.T) {
	env := map[string]string{"HOST": "h.example", "PORT": "8080", "EMPTY": "", "N": "4"}
	for _, tc := range []struct {
		name, value, want string
		wantErr           string
	}{
		{"plain", "abc", "abc", ""},
		{"set", "${HOST}", "h.example", ""},
		{"two in one value", "${HOST}:${PORT}", "h.example:8080", ""},
		{"default unused", "${HOST:-other}", "h.example", ""},
		{"default used", "${NOPE:-fallback}", "fallback", ""},
		{"empty default", "x${NOPE:-}y", "xy", ""},
		{"default with colon and slash", "${NOPE:-http://d:1/p}", "http://d:1/p", ""},
		{"set but empty takes the default", "${EMPTY:-d}", "d", ""},
		{"set but empty without default", "a${EMPTY}b", "ab", ""},
		{"not a reference", "$HOST and ${1X}", "$HOST and ${1X}", ""},
		{"unset", "${NOPE}", "", `t.yaml:4:18: flows[0].description: environment variable NOPE is not set`},
		{"unset among set", "${HOST}${NOPE2}", "", `environment variable NOPE2 is not set`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := "flows:\n  - name: f\n    timeout: 1s\n    description: \"" + tc.value + "\"\n    targets: [{name: a}]\n"
			topo, err := parse(t, doc, env)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := topo.Flows[0].Description; got != tc.want {
				t.Errorf("%q became %q, want %q", tc.value, got, tc.want)
			}
		})
	}
	// Typed values are interpolated before they are parsed.
	topo, err := parse(t, "flows:\n  - name: f\n    timeout: ${T:-3s}\n    partitions: ${N}\n    targets: [{name: a}]\n", env)
	if err != nil {
		t.Fatal(err)
	}
	if f := topo.Flows[0]; f.Timeout.D != 3*time.Second || f.Partitions != 4 {
		t.Errorf("timeout %s partitions %d", f.Timeout, f.Partitions)
	}
}

func TestScalars(t *testing.T) {
	for _, tc := range []struct {
		key, value string
		check      func(f *topology.Flow) bool
		wantErr    string
	}{
		{"limits.max_payload_bytes", "1048576", func(f *topology.Flow) bool { return f.Limits.MaxPayloadBytes == 1<<20 }, ""},
		{"limits.max_payload_bytes", "512KiB", func(f *topology.Flow) bool { return f.Limits.MaxPayloadBytes == 512<<10 }, ""},
		{"limits.max_payload_bytes", "2 MiB", func(f *topology.Flow) bool { return f.Limits.MaxPayloadBytes == 2<<20 }, ""},
		{"limits.max_payload_bytes", "1GiB", func(f *topology.Flow) bool { return f.Limits.MaxPayloadBytes == 1<<30 }, ""},
		{"limits.max_payload_bytes", "3MB", func(f *topology.Flow) bool { return f.Limits.MaxPayloadBytes == 3_000_000 }, ""},
		{"limits.max_payload_bytes", "10KB", func(f *topology.Flow) bool { return f.Limits.MaxPayloadBytes == 10_000 }, ""},
		{"limits.max_payload_bytes", "100B", func(f *topology.Flow) bool { return f.Limits.MaxPayloadBytes == 100 }, ""},
		{"limits.max_payload_bytes", "1.5MiB", nil, `want a size such as 1048576, 512KiB or 1MiB, have "1.5MiB"`},
		{"limits.max_payload_bytes", "1TB", nil, `have "1TB"`},
		{"limits.max_payload_bytes", "-1", nil, `have "-1"`},
		{"limits.max_payload_bytes", "99999999999GiB", nil, `have "99999999999GiB"`},
		{"limits.max_payload_bytes", "[1]", nil, "want a scalar value, have a list"},
		{"limits.max_timeout", "30m", func(f *topology.Flow) bool { return f.Limits.MaxTimeout.D == 30*time.Minute }, ""},
		{"limits.max_timeout", "1s", func(f *topology.Flow) bool { return f.Limits.MaxTimeout.D == time.Second }, ""},
		{"limits.max_timeout", "999ms", nil, "flows[0].limits.max_timeout: 999ms is shorter than the timeout 1s"},
		{"limits.max_timeout", "168h", nil, "flows[0].limits.max_timeout: 168h0m0s plus gather.closed_retention (168h1m0s) exceeds topics.results_retention 168h0m0s"},
		{"topics.results_retention", "30m", func(f *topology.Flow) bool { return f.Limits.MaxTimeout.D == 29*time.Minute }, ""},
		{"topics.results_retention", "90s", func(f *topology.Flow) bool { return f.Limits.MaxTimeout.D == 30*time.Second }, ""},
		{"timeout", "2562047h47m", nil, "flows[0].topics.results_retention: 168h0m0s is shorter than the timeout plus gather.closed_retention"},
		{"gather.tick_interval", "1m30s", func(f *topology.Flow) bool { return f.Gather.TickInterval.D == 90*time.Second }, ""},
		{"gather.tick_interval", "5", nil, `want a duration such as 250ms or 2s, have "5"`},
		{"gather.tick_interval", "soon", nil, `have "soon"`},
		{"gather.commit_delay", "0s", func(f *topology.Flow) bool { return f.Gather.CommitDelay.D == 0 }, ""},
		{"gather.commit_delay", "250ms", func(f *topology.Flow) bool { return f.Gather.CommitDelay.D == 250*time.Millisecond }, ""},
		{"gather.commit_delay", "-1ms", nil, "flows[0].gather.commit_delay: must not be negative"},
		{"gather.commit_delay", "30s", nil, "flows[0].gather.commit_delay: must be less than kafka.transaction_timeout (30s)"},
		{"strategy.quorum", "2", func(f *topology.Flow) bool { return f.Strategy.Quorum == topology.Quorum{N: 2} }, ""},
		{"strategy.quorum", "majority", func(f *topology.Flow) bool {
			return f.Strategy.Quorum.Majority && f.Strategy.Quorum.String() == "majority"
		}, ""},
		{"strategy.quorum", "most", nil, `want a number or majority, have "most"`},
		{"strategy.max_failures", "0", func(f *topology.Flow) bool { return f.Strategy.MaxFailuresOrNone() == 0 }, ""},
		{"strategy.max_failures", "two", nil, `want an integer, have "two"`},
		{"partitions", "1e3", nil, `want an integer, have "1e3"`},
		{"targets.0.http.insecure_skip_verify", "maybe", nil, `want true or false, have "maybe"`},
		{"targets.0.http.headers", "x", nil, "want a mapping, have a scalar"},
		{"targets", "{name: a}", nil, "want a list, have a mapping"},
		{"description", "{a: b}", nil, "want a scalar value, have a mapping"},
	} {
		t.Run(tc.key+"="+tc.value, func(t *testing.T) {
			base := map[string]any{
				"name": "f", "timeout": "1s",
				"targets":  []any{map[string]any{"name": "a", "http": map[string]any{"url": "http://a/"}}, map[string]any{"name": "b"}},
				"strategy": map[string]any{"type": "quorum", "quorum": 1},
			}
			set(base, tc.key, yamlValue(t, tc.value))
			doc, err := yaml.Marshal(map[string]any{"flows": []any{base}})
			if err != nil {
				t.Fatal(err)
			}
			topo, err := topology.Parse("t.yaml", doc, lookup(nil))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error\n%v\nwant one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("%s\n%v", doc, err)
			}
			if !tc.check(topo.Flows[0]) {
				t.Errorf("%s: %q decoded to %+v", tc.key, tc.value, topo.Flows[0])
			}
		})
	}
}

func yamlValue(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal([]byte(s), &v); err != nil {
		return s
	}
	if _, isMap := v.(map[string]any); isMap {
		return v
	}
	if _, isList := v.([]any); isList {
		return v
	}
	return s // keep scalars as written
}

func set(m map[string]any, path string, v any) {
	parts := strings.Split(path, ".")
	var cur any = m
	for i, p := range parts {
		last := i == len(parts)-1
		switch c := cur.(type) {
		case map[string]any:
			if last {
				c[p] = v
				return
			}
			if _, ok := c[p]; !ok {
				c[p] = map[string]any{}
			}
			cur = c[p]
		case []any:
			idx := int(p[0] - '0')
			if last {
				c[idx] = v
				return
			}
			cur = c[idx]
		}
	}
}

func TestProblemPosition(t *testing.T) {
	doc := `flows:
  - name: f
    timeout: 1s
    targets: [{name: a}]
    strategy:
      type: quorum
      quorum: 2
      colour: blue
`
	_, err := parse(t, doc, nil)
	var te *topology.Error
	if !errors.As(err, &te) || len(te.Problems) != 1 {
		t.Fatalf("want one problem, have %v", err)
	}
	p := te.Problems[0]
	if p.File != "t.yaml" || p.Line != 8 || p.Column != 7 || p.Path != "flows[0].strategy.colour" || !strings.HasPrefix(p.Msg, "unknown key (known: type, quorum, max_failures)") {
		t.Errorf("problem %+v", *p)
	}
	if got, want := p.Error(), "t.yaml:8:7: flows[0].strategy.colour: unknown key (known: type, quorum, max_failures)"; got != want {
		t.Errorf("message\n got %s\nwant %s", got, want)
	}

	// A validation problem points at the value that is wrong.
	doc = strings.Replace(doc, "      colour: blue\n", "", 1)
	_, err = parse(t, doc, nil)
	if !errors.As(err, &te) || len(te.Problems) != 1 {
		t.Fatalf("want one problem, have %v", err)
	}
	if p := te.Problems[0]; p.Line != 7 || p.Column != 15 || p.Path != "flows[0].strategy.quorum" {
		t.Errorf("problem %+v", *p)
	}
	// errors.As finds each problem through Unwrap.
	var one *topology.Problem
	if !errors.As(err, &one) || one != te.Problems[0] {
		t.Error("errors.As does not find the *Problem")
	}

	// A missing key is reported at its nearest written parent.
	_, err = parse(t, "flows:\n  - name: f\n    targets: [{name: a}]\n", nil)
	if !errors.As(err, &te) || len(te.Problems) != 1 {
		t.Fatalf("want one problem, have %v", err)
	}
	if p := te.Problems[0]; p.Line != 2 || p.Column != 5 || p.Path != "flows[0].timeout" {
		t.Errorf("problem %+v", *p)
	}

	// Problem formatting without file or position.
	for _, c := range []struct {
		p    topology.Problem
		want string
	}{
		{topology.Problem{Msg: "m"}, "m"},
		{topology.Problem{Path: "a.b", Msg: "m"}, "a.b: m"},
		{topology.Problem{File: "f", Path: "a", Msg: "m"}, "f: a: m"},
		{topology.Problem{File: "f", Line: 1, Column: 2, Msg: "m"}, "f:1:2: m"},
	} {
		if got := c.p.Error(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.p, got, c.want)
		}
	}
}

func TestValidateWithoutParse(t *testing.T) {
	topo := mustParse(t, "flows: [{name: f, timeout: 1s, targets: [{name: a}]}]")
	if err := topo.Validate(); err != nil {
		t.Fatal(err)
	}
	topo.Flows[0].Strategy.Type = "best"
	topo.Flows[0].Targets[0].Topic = ""
	err := topo.Validate()
	want := "flows[0].targets[0].topic: invalid topic name \"\"\nflows[0].strategy.type: unknown strategy \"best\" (one of all, first, quorum, timeout)"
	if err == nil || err.Error() != want {
		t.Errorf("error\n%v\nwant\n%s", err, want)
	}
}

// TestBadFiles parses every testdata/bad/*.yaml and compares the messages
// with the .golden beside it; go test -update rewrites them.
func TestBadFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.yaml")
	if err != nil || len(files) < 5 {
		t.Fatalf("bad files: %v %v", files, err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			topo, err := topology.Parse(filepath.ToSlash(file), readFile(t, file), lookup(testEnv))
			if err == nil {
				t.Fatalf("%s parsed: %+v", file, topo)
			}
			if topo != nil {
				t.Error("a topology returned with an error")
			}
			var te *topology.Error
			if !errors.As(err, &te) {
				t.Fatalf("error %T, want *topology.Error", err)
			}
			if n := len(te.Problems); n < 3 && name != "syntax" && name != "empty" && name != "noflows" {
				t.Errorf("%d problems; the file is meant to have several", n)
			}
			got := err.Error() + "\n"
			for _, s := range secrets {
				if strings.Contains(got, s) {
					t.Errorf("a secret (%s) appears in the messages:\n%s", s, got)
				}
			}
			golden := strings.TrimSuffix(file, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if got != string(want) {
				t.Errorf("messages of %s differ from %s:\n got:\n%s\nwant:\n%s", file, golden, got, want)
			}
		})
	}
}

func TestGoldenFilesHaveYAML(t *testing.T) {
	goldens, _ := filepath.Glob("testdata/bad/*.golden")
	for _, g := range goldens {
		if _, err := os.Stat(strings.TrimSuffix(g, ".golden") + ".yaml"); err != nil {
			t.Errorf("stale golden file %s", g)
		}
	}
}

func TestSecretsNeverShown(t *testing.T) {
	for _, url := range []string{
		"ftp://user:s3cret-ftp@host/x",
		"http://user:hunter2@host:port/x",
		"user:pa55word@host/x",
		"//user:hunter2@",
		"https://user:hunter2@/x",
		"${SECRET_URL}",
		"ftp://p.example/price?api_key=${API_KEY}",
		"p.example/price?api_key=${API_KEY}",
		"http://[::1/price?api_key=${API_KEY}",
		"http://p.example:port/price?api_key=${API_KEY}#${API_KEY}",
	} {
		t.Run(url, func(t *testing.T) {
			env := map[string]string{"SECRET_URL": "mailto:tok-very-secret-value@example.com", "API_KEY": "tok-very-secret-value"}
			doc := "flows:\n  - name: f\n    timeout: 1s\n    targets:\n      - name: a\n        http: {url: \"" + url + "\"}\n"
			_, err := parse(t, doc, env)
			if err == nil {
				t.Fatal("an invalid URL was accepted")
			}
			if !strings.Contains(err.Error(), "flows[0].targets[0].http.url: want an absolute http or https URL") {
				t.Errorf("message %v", err)
			}
			for _, s := range secrets {
				if strings.Contains(err.Error(), s) {
					t.Errorf("the password shows: %v", err)
				}
			}
		})
	}
}

// fuzzEnv is a small fixed environment for FuzzParse.
var fuzzEnv = lookup(map[string]string{"A": "1", "B": "", "URL": "http://x/"})

func FuzzParse(f *testing.F) {
	for _, glob := range []string{"../../topology.yaml", "testdata/*.yaml", "testdata/bad/*.yaml"} {
		files, _ := filepath.Glob(glob)
		for _, file := range files {
			b, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Add([]byte("flows: [~]"))
	f.Add([]byte("flows: [{name: f, timeout: 1s, targets: [~]}]"))
	f.Add([]byte("flows: [{name: f, timeout: 1s, targets: [{name: a, http: ~}], strategy: ~}]"))
	f.Add([]byte("a: &x {b: *x}"))
	f.Add([]byte("flows: [{name: '${A}', timeout: '${B:-1s}', targets: [{name: a, http: {url: '${URL}'}}]}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		topo, err := topology.Parse("fuzz.yaml", data, fuzzEnv)
		if err != nil {
			if topo != nil {
				t.Fatal("topology and error both returned")
			}
			var te *topology.Error
			if errors.As(err, &te) {
				if len(te.Problems) == 0 {
					t.Fatal("an *Error without problems")
				}
				for _, p := range te.Problems {
					if p.Msg == "" {
						t.Fatalf("problem without a message: %+v", *p)
					}
				}
			}
			return
		}
		if topo == nil {
			t.Fatal("neither topology nor error")
		}
		if err := topo.Validate(); err != nil {
			t.Fatalf("a parsed topology does not re-validate: %v\n%s", err, data)
		}
		for _, fl := range topo.Flows {
			if fl.TimeoutDuration() <= 0 || len(fl.Targets) == 0 {
				t.Fatalf("flow %+v passed validation", fl)
			}
			seen := map[string]bool{}
			for _, tp := range fl.AllTopics() {
				if seen[tp] {
					t.Fatalf("topic %q twice", tp)
				}
				seen[tp] = true
			}
		}
	})
}

func TestBreakerZeroDisables(t *testing.T) {
	doc := `
flows:
  - name: f
    timeout: 1s
    targets:
      - {name: off, http: {url: "http://p", circuit_breaker: {failures: 0}}}
      - {name: dflt, http: {url: "http://p"}}
`
	topo, err := topology.Parse("t.yaml", []byte(doc), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	f := topo.Flows[0]
	if got := f.Target("off").HTTP.Breaker.Threshold(); got != 0 {
		t.Errorf("failures: 0 gives threshold %d, want 0 (disabled)", got)
	}
	if got := f.Target("dflt").HTTP.Breaker.Threshold(); got != topology.DefaultBreakerFailures {
		t.Errorf("default threshold %d, want %d", got, topology.DefaultBreakerFailures)
	}
}

// kafkaDoc is a valid one-flow topology with kafka as its kafka section.
func kafkaDoc(kafka string) string {
	return "kafka:\n" + kafka + "\nflows: [{name: f, timeout: 1s, targets: [{name: a}]}]\n"
}

func TestKafkaSecurity(t *testing.T) {
	const (
		ca    = "testdata/tls/ca.pem"
		cert  = "testdata/tls/client.pem"
		key   = "testdata/tls/client-key.pem"
		other = "testdata/tls/other-key.pem"
	)
	for _, tc := range []struct {
		name, kafka string
		tlsOn       bool
		wantErr     []string // each must appear; none means valid
	}{
		{name: "none", kafka: "  brokers: [b:9092]"},
		{name: "null sections", kafka: "  sasl: ~\n  tls: ~"},
		{name: "SASL_PLAINTEXT with PLAIN", kafka: "  sasl: {mechanism: PLAIN, username: u, password: p}"},
		{name: "SCRAM-SHA-256", kafka: "  sasl: {mechanism: SCRAM-SHA-256, username: u, password: p}"},
		{name: "tls with a CA only", kafka: "  tls: {ca_file: " + ca + "}", tlsOn: true},
		{name: "tls with system roots", kafka: "  tls: {enabled: true}", tlsOn: true},
		{name: "tls implied by server_name", kafka: "  tls: {server_name: k.example}", tlsOn: true},
		{name: "tls implied by insecure_skip_verify", kafka: "  tls: {insecure_skip_verify: true}", tlsOn: true},
		{name: "empty tls is off", kafka: "  tls: {}"},
		{name: "enabled false wins and reads no file", kafka: "  tls: {enabled: false, ca_file: testdata/tls/nope.pem}"},
		{name: "mutual TLS", kafka: "  tls: {ca_file: " + ca + ", cert_file: " + cert + ", key_file: " + key + "}", tlsOn: true},
		{name: "unknown mechanism", kafka: "  sasl: {mechanism: OAUTHBEARER, username: u, password: p}",
			wantErr: []string{"t.yaml:2:21: kafka.sasl.mechanism: unknown mechanism (one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)"}},
		{name: "lower-case mechanism", kafka: "  sasl: {mechanism: plain, username: u, password: p}",
			wantErr: []string{"kafka.sasl.mechanism: write the mechanism in upper case"}},
		{name: "no mechanism", kafka: "  sasl: {username: u, password: p}", wantErr: []string{"kafka.sasl.mechanism: required with sasl"}},
		{name: "missing password", kafka: "  sasl: {mechanism: PLAIN, username: u}", wantErr: []string{"t.yaml:2:9: kafka.sasl.password: required with sasl"}},
		{name: "empty sasl", kafka: "  sasl: {}", wantErr: []string{"kafka.sasl.mechanism: required", "kafka.sasl.username: required", "kafka.sasl.password: required"}},
		{name: "cert without key", kafka: "  tls: {cert_file: " + cert + "}", wantErr: []string{"kafka.tls.key_file: required with cert_file"}},
		{name: "key without cert", kafka: "  tls: {key_file: " + key + "}", wantErr: []string{"kafka.tls.cert_file: required with key_file"}},
		{name: "missing CA file", kafka: "  tls: {ca_file: testdata/tls/nope.pem}",
			wantErr: []string{"t.yaml:2:18: kafka.tls.ca_file: cannot read testdata/tls/nope.pem: no such file or directory"}},
		{name: "CA file is a directory", kafka: "  tls: {ca_file: testdata/tls}", wantErr: []string{"kafka.tls.ca_file: testdata/tls is not a regular file"}},
		{name: "CA file without a certificate", kafka: "  tls: {ca_file: " + key + "}", wantErr: []string{"kafka.tls.ca_file: no PEM certificate in " + key}},
		{name: "key that is not the certificate's", kafka: "  tls: {cert_file: " + cert + ", key_file: " + other + "}",
			wantErr: []string{"kafka.tls.key_file: the private key in " + other + " does not belong to the certificate in cert_file " + cert}},
		{name: "certificate file holds a key", kafka: "  tls: {cert_file: " + key + ", key_file: " + key + "}",
			wantErr: []string{"kafka.tls.cert_file: no PEM certificate in " + key}},
		{name: "key file holds a certificate", kafka: "  tls: {cert_file: " + cert + ", key_file: " + cert + "}",
			wantErr: []string{"kafka.tls.key_file: no PEM private key in " + cert}},
		{name: "encrypted key", kafka: "  tls: {cert_file: " + cert + ", key_file: testdata/tls/encrypted-key.pem}",
			wantErr: []string{"kafka.tls.key_file: the private key in testdata/tls/encrypted-key.pem is encrypted"}},
		{name: "missing key file", kafka: "  tls: {cert_file: " + cert + ", key_file: testdata/tls/nope-key.pem}",
			wantErr: []string{"kafka.tls.key_file: cannot read testdata/tls/nope-key.pem: no such file or directory"}},
		{name: "enabled is a bool", kafka: "  tls: {enabled: sure}", wantErr: []string{`kafka.tls.enabled: want true or false, have "sure"`}},
		{name: "unknown tls key", kafka: "  tls: {ca: x}", wantErr: []string{"kafka.tls.ca: unknown key (known: enabled, ca_file, cert_file, key_file, server_name, insecure_skip_verify)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			topo, err := parse(t, kafkaDoc(tc.kafka), testEnv)
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("%s\n%v", tc.kafka, err)
				}
				if got := topo.Kafka.TLS.On(); got != tc.tlsOn {
					t.Errorf("TLS on: %v, want %v", got, tc.tlsOn)
				}
				if err := topo.Validate(); err != nil {
					t.Errorf("re-validation: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("%s: no error, want %q", tc.kafka, tc.wantErr)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n%v\nwant one containing %q", err, w)
				}
			}
		})
	}
}

// TestSASLPasswordNeverShown: a password set through the environment never
// appears in a message, whatever else is wrong and wherever it is misplaced,
// nor when the topology is printed.
func TestSASLPasswordNeverShown(t *testing.T) {
	const pw = "Zq8-kafka-pw-never-shown"
	env := map[string]string{"KAFKA_PASSWORD": pw, "EMPTY": ""}
	for _, kafka := range []string{
		"  sasl: {mechanism: BOGUS, username: u, password: \"${KAFKA_PASSWORD}\"}",
		"  sasl: {mechanism: scram-sha-256, password: \"${KAFKA_PASSWORD}\"}",
		"  sasl: {mechanism: \"${KAFKA_PASSWORD}\", username: u, password: \"${KAFKA_PASSWORD}\"}",
		"  sasl: {mechanism: \"${KAFKA_PASSWORD}\", username: \"${KAFKA_PASSWORD}\", password: \"${EMPTY}\"}",
		"  sasl: {mechanism: PLAIN, username: u, password: \"${KAFKA_PASSWORD}\"}\n  tls: {cert_file: testdata/tls/client.pem, key_file: testdata/tls/other-key.pem, ca_file: testdata/tls/nope.pem}",
		"  sasl: {mechanism: PLAIN, username: u, password: \"${KAFKA_PASSWORD}\", extra: \"${KAFKA_PASSWORD}\"}",
		"  sasl: {mechanism: PLAIN, username: u, password: [\"${KAFKA_PASSWORD}\"]}",
		"  sasl: {mechanism: PLAIN, username: u, password: \"${KAFKA_PASSWORD}\"}\n  tls: {enabled: \"${KAFKA_PASSWORD}\"}",
	} {
		t.Run(kafka, func(t *testing.T) {
			_, err := parse(t, kafkaDoc(kafka), env)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), ": kafka.") {
				t.Errorf("not a problem of the kafka section: %v", err)
			}
			if strings.Contains(err.Error(), pw) {
				t.Errorf("the password shows:\n%v", err)
			}
		})
	}

	topo, err := parse(t, kafkaDoc("  sasl: {mechanism: PLAIN, username: u, password: \"${KAFKA_PASSWORD}\"}"), env)
	if err != nil {
		t.Fatal(err)
	}
	if topo.Kafka.SASL.Password != pw {
		t.Fatalf("password %q not interpolated", topo.Kafka.SASL.Password)
	}
	for _, format := range []string{"%v", "%+v", "%s"} {
		if out := fmt.Sprintf(format, topo.Kafka); strings.Contains(out, pw) {
			t.Errorf("Sprintf(%q) shows the password: %s", format, out)
		}
	}
	// Validate of a topology whose settings went wrong after loading.
	topo.Kafka.SASL.Mechanism = pw
	topo.Kafka.SASL.Username = ""
	if err := topo.Validate(); err == nil || strings.Contains(err.Error(), pw) {
		t.Errorf("Validate: %v", err)
	}
}

// A value read from the environment that does not parse is shown as
// written, not as what the variable held.
func TestInterpolatedValueNotShown(t *testing.T) {
	doc := "kafka:\n  session_timeout: ${SG_SECRET_TIMEOUT}\nflows:\n  - {name: f, timeout: 1s, targets: [{name: a}]}\n"
	_, err := topology.Parse("t.yaml", []byte(doc), func(k string) (string, bool) {
		if k == "SG_SECRET_TIMEOUT" {
			return "hunter2-secret", true
		}
		return "", false
	})
	if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "${SG_SECRET_TIMEOUT}") {
		t.Errorf("error %v: want the written ${SG_SECRET_TIMEOUT}, not the value", err)
	}
}

func TestRedactURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"https://p.example/price", "https://p.example/price"},
		{"https://p.example:8443/price?api_key=s3cret", "https://p.example:8443/price?REDACTED"},
		{"https://u:s3cret@p.example/x?a=1&b=s3cret#s3cret", "https://REDACTED@p.example/x?REDACTED"},
		{"https://p.example/x?", "https://p.example/x?REDACTED"},
		{"https://p.example/x#s3cret", "https://p.example/x"},
		{"https://p.example/users/@me", "https://p.example/users/@me"},
		{"http://[::1/x?api_key=s3cret", "http://[::1/x?REDACTED"},
		{"http://u:s3cret@host:port/x", "(unparseable URL)"},
		{"u:s3cret@p.example/x", "(unparseable URL)"},
		{"s3cret@p.example/x", "(unparseable URL)"},
		{"mailto:s3cret@p.example", "(unparseable URL)"},
		{"", ""},
	} {
		if got := topology.RedactURL(tc.in); got != tc.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestHedgeDefaults: a hedge section gets the defaults of the keys it
// leaves out, a target without one none, and endpoints stand for url.
func TestHedgeDefaults(t *testing.T) {
	topo := mustParse(t, `
flows:
  - name: f
    timeout: 1s
    targets:
      - {name: plain, http: {url: "http://p"}}
      - {name: dflt, hedge: {}, http: {endpoints: ["http://p", "http://q"]}}
      - {name: some, hedge: {budget: 0.5, min_delay: 0s}}
`)
	f := topo.Flows[0]
	if f.Target("plain").Hedge != nil {
		t.Error("a target without hedge got one")
	}
	if got := f.Target("plain").HTTP.URLs(); !reflect.DeepEqual(got, []string{"http://p"}) {
		t.Errorf("URLs of url: %q", got)
	}
	if got := f.Target("dflt").HTTP.URLs(); !reflect.DeepEqual(got, []string{"http://p", "http://q"}) {
		t.Errorf("URLs of endpoints: %q", got)
	}
	want := topology.Hedge{Quantile: topology.DefaultHedgeQuantile, Budget: topology.DefaultHedgeBudget,
		Window: topology.DefaultHedgeWindow, MinDelay: topology.Duration{D: topology.DefaultHedgeMinDelay}}
	if got := *f.Target("dflt").Hedge; got != want {
		t.Errorf("hedge: {} gives %+v, want %+v", got, want)
	}
	want.Budget, want.MinDelay.D = 0.5, 0
	if got := *f.Target("some").Hedge; got != want {
		t.Errorf("hedge with budget and min_delay: 0s gives %+v, want %+v", got, want)
	}
}
