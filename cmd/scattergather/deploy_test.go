package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.yaml.in/yaml/v3"

	"github.com/scattergather/scattergather/internal/processortest"
	"github.com/scattergather/scattergather/processor/topology"
)

// The operator files under deploy/ that query the product's metrics.
const (
	dashboardFile = "../../deploy/grafana/scattergather.json"
	alertsFile    = "../../deploy/prometheus/alerts.yml"
)

// prometheusNames are series Prometheus makes itself, not the product.
var prometheusNames = map[string]bool{"up": true}

// TestDeployMetrics checks that every metric the Grafana dashboard and the
// alerting rules query is one the product exports: it runs the roles, drives
// requests through every path that creates a labelled series (answers, a
// deadline, a late result, a dead letter, then a state rebuild), scrapes
// /metrics and looks each queried name up.
func TestDeployMetrics(t *testing.T) { testDeployMetrics(t, processortest.Fake(t)) }

func TestIntegrationDeployMetrics(t *testing.T) { testDeployMetrics(t, processortest.Brokers(t)) }

func testDeployMetrics(t *testing.T, brokers []string) {
	queried := queriedMetrics(t)

	flow := processortest.Unique("deploy")
	fast := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `{"price": 100}`)
	}))
	defer fast.Close()
	// The slow target answers only when its call is cancelled: every request
	// ends on its deadline, and the cancelled task's answer arrives late.
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
		http.Error(w, "no answer", http.StatusServiceUnavailable)
	}))
	defer slow.Close()
	defer close(release)
	topo := writeFile(t, "topology.yaml", fmt.Sprintf(`
kafka: {brokers: [%s]}
flows:
  - name: %s
    partitions: 1
    timeout: 1s
    targets:
      - {name: fast, http: {url: %s}}
      - {name: slow, http: {url: %s, timeout: 1m, retries: 0}}
    consolidate: {type: min, field: price}
`, brokers[0], flow, fast.URL, slow.URL))
	if r := runCmd(context.Background(), "", "topics", "create", "--topology", topo); r.code != exitOK {
		t.Fatalf("topics create: %+v", r)
	}

	// First run: requests, a dead letter, deadlines, late answers.
	exported := map[string]bool{}
	in := startRun(t, topo, t.TempDir())
	send := runCmd(context.Background(), `{"from":"AMS"}`+"\n"+`{"from":"CDG"}`+"\n", "send", "--topology", topo, "--flow", flow)
	if send.code != exitOK {
		t.Fatalf("send: %+v", send)
	}
	produceRaw(t, brokers, topicsOf(t, topo, flow).Requests, []byte("not an avro request"))
	var text string
	processortest.Eventually(t, 90*time.Second, "two requests timed out, their late answers and a dead letter in /metrics", func() bool {
		text = in.metrics()
		return strings.Contains(text, fmt.Sprintf(`scattergather_aggregates_total{flow=%q,outcome="timeout"} 2`, flow)) &&
			strings.Contains(text, fmt.Sprintf(`scattergather_late_results_total{flow=%q} `, flow)) &&
			strings.Contains(text, fmt.Sprintf(`scattergather_dead_letters_total{flow=%q,reason=`, flow))
	})
	addFamilies(t, text, exported)
	in.stop()

	// Second run on an empty state directory: the gather rebuilds its state.
	in = startRun(t, topo, t.TempDir())
	processortest.Eventually(t, 90*time.Second, "the gather's state rebuilt and the gather ready in /metrics", func() bool {
		text = in.metrics()
		return strings.Contains(text, fmt.Sprintf(`scattergather_state_rebuild_records_total{flow=%q} `, flow)) &&
			strings.Contains(text, fmt.Sprintf(`scattergather_role_ready{flow=%q,role="gather"} 1`, flow))
	})
	addFamilies(t, text, exported)
	in.stop()

	var missing []string
	for _, name := range queried {
		if !exported[name] && !exported[histogramFamily(name)] && !prometheusNames[name] {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		var have []string
		for n := range exported {
			have = append(have, n)
		}
		sort.Strings(have)
		t.Errorf("queried by deploy/ but not exported: %s\nexported: %s", strings.Join(missing, ", "), strings.Join(have, " "))
	}
}

// instance is a `run --role all` of the command in the background.
type instance struct {
	t      *testing.T
	addr   string
	cancel context.CancelFunc
	done   chan result
}

// startRun runs `run --role all` until stop or the end of the test.
func startRun(t *testing.T, topo, stateDir string) *instance {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{t: t, addr: freeAddr(t), cancel: cancel, done: make(chan result, 1)}
	go func() {
		in.done <- runCmd(ctx, "", "run", "--topology", topo, "--role", "all", "--state-dir", stateDir, "--log-level", "warn", "--http-addr", in.addr)
	}()
	t.Cleanup(cancel)
	return in
}

// metrics returns the text of the instance's /metrics.
func (in *instance) metrics() string {
	return get(in.t, "http://"+in.addr+"/metrics", http.StatusOK)
}

// stop ends the instance and waits for it.
func (in *instance) stop() {
	in.t.Helper()
	in.cancel()
	select {
	case r := <-in.done:
		if r.code != exitOK {
			in.t.Errorf("run exited %d: %s", r.code, r.stderr)
		}
	case <-time.After(time.Minute):
		in.t.Fatal("run did not stop within a minute of its context ending")
	}
}

func topicsOf(t *testing.T, topo, flow string) topology.Topics {
	t.Helper()
	data, err := os.ReadFile(topo)
	if err != nil {
		t.Fatal(err)
	}
	top, err := topology.Parse(topo, data, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	return top.Flow(flow).Topics
}

func produceRaw(t *testing.T, brokers []string, topic string, value []byte) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte("bad"), Value: value}).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// addFamilies adds the metric families of a Prometheus text exposition.
func addFamilies(t *testing.T, text string, into map[string]bool) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 3 && f[0] == "#" && f[1] == "TYPE" {
			into[f[2]] = true
		}
	}
	if len(into) == 0 {
		t.Fatalf("no metric families in /metrics:\n%s", text)
	}
}

// histogramFamily strips a histogram series suffix: the family's name.
func histogramFamily(name string) string {
	for _, s := range []string{"_bucket", "_sum", "_count"} {
		if n, ok := strings.CutSuffix(name, s); ok {
			return n
		}
	}
	return name
}

// queriedMetrics returns the metric names the dashboard and the alerting
// rules query, sorted and without duplicates.
func queriedMetrics(t *testing.T) []string {
	t.Helper()
	var exprs []string
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var dash any
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var walk func(v any)
	labelValues := regexp.MustCompile(`^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,`)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, c := range v {
				s, ok := c.(string)
				switch {
				case ok && k == "expr":
					exprs = append(exprs, s)
				case ok && (k == "definition" || k == "query"):
					if m := labelValues.FindStringSubmatch(s); m != nil {
						exprs = append(exprs, m[1])
					}
				default:
					walk(c)
				}
			}
		case []any:
			for _, c := range v {
				walk(c)
			}
		}
	}
	walk(dash)

	data, err = os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(data, &rules); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	nRules := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
			nRules++
		}
	}
	if nRules == 0 {
		t.Fatalf("%s: no rules", alertsFile)
	}

	seen := map[string]bool{}
	var names []string
	for _, e := range exprs {
		for _, n := range metricNames(e) {
			if !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		}
	}
	for _, want := range []string{"scattergather_role_ready", "scattergather_dead_letters_total", "scattergather_request_latency_seconds_bucket", "up"} {
		if !seen[want] {
			t.Fatalf("%s not found among the names queried by the dashboard and the rules: %v", want, names)
		}
	}
	slices.Sort(names)
	return names
}

var (
	promStrings   = regexp.MustCompile("\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'|`[^`]*`")
	promBraces    = regexp.MustCompile(`\{[^}]*\}|\[[^\]]*\]`)
	promGrafana   = regexp.MustCompile(`\$\{[^}]*\}|\$[a-zA-Z_][a-zA-Z0-9_]*`)
	promLabelList = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promIdent     = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	promKeywords  = map[string]bool{
		"and": true, "or": true, "unless": true, "by": true, "without": true, "on": true, "ignoring": true,
		"group_left": true, "group_right": true, "offset": true, "bool": true, "inf": true, "nan": true,
	}
)

// metricNames returns the metric names in a PromQL expression: identifiers
// that are not functions, keywords, label names, strings, ranges or
// Grafana variables.
func metricNames(expr string) []string {
	e := promStrings.ReplaceAllString(expr, `""`)
	e = promGrafana.ReplaceAllString(e, " ")
	e = promBraces.ReplaceAllString(e, " ")
	e = promLabelList.ReplaceAllString(e, " ")
	var out []string
	for _, loc := range promIdent.FindAllStringIndex(e, -1) {
		name, rest := e[loc[0]:loc[1]], strings.TrimLeft(e[loc[1]:], " \t\n")
		if loc[0] > 0 && strings.ContainsAny(e[loc[0]-1:loc[0]], "0123456789.") {
			continue // the unit of a duration or a number
		}
		if strings.HasPrefix(rest, "(") || promKeywords[strings.ToLower(name)] {
			continue // a function call or a keyword
		}
		out = append(out, name)
	}
	return out
}

func TestMetricNames(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string
	}{
		{`up{job="scattergather"} == 0`, []string{"up"}},
		{`histogram_quantile(0.9, sum by (flow, le) (rate(a_bucket{flow=~"$flow"}[$__rate_interval]))) > 5`, []string{"a_bucket"}},
		{`sum by (flow) (x) unless sum by (flow) (x offset 10m)`, []string{"x", "x"}},
		{`sum by (topic) (rate(k{topic=~"($flow)\\..*"}[5m])) / on (topic) group_left (flow) y`, []string{"k", "y"}},
		{`min by (flow, role, instance) (r:ready) == bool 0 or vector(1)`, []string{"r:ready"}},
	} {
		if got := metricNames(tc.expr); !slices.Equal(got, tc.want) {
			t.Errorf("metricNames(%q) = %v, want %v", tc.expr, got, tc.want)
		}
	}
}
