package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scattergather/scattergather/internal/bench"

	"github.com/scattergather/scattergather/internal/processortest"
	"github.com/scattergather/scattergather/schemas"
)

type result struct {
	code           int
	stdout, stderr string
}

func runCmd(ctx context.Context, stdin string, args ...string) result {
	var out, errOut bytes.Buffer
	code := run(ctx, args, strings.NewReader(stdin), &out, &errOut)
	return result{code, out.String(), errOut.String()}
}

// tailed is an aggregate as `tail` prints it, with the line it came on.
type tailed struct {
	RequestID  string            `json:"request_id"`
	Outcome    string            `json:"outcome"`
	Attributes map[string]string `json:"attributes"`
	line       string
}

// tailAggregates runs `tail` for the last n aggregates of flow and decodes
// each line, failing the test if tail fails or a line is not JSON.
func tailAggregates(ctx context.Context, t *testing.T, topo, flow string, n int) []tailed {
	t.Helper()
	tail := runCmd(ctx, "", "tail", "--topology", topo, "--flow", flow, "-n", strconv.Itoa(n), "--timeout", "60s")
	if tail.code != exitOK {
		t.Fatalf("tail: %+v", tail)
	}
	var out []tailed
	for _, line := range strings.Split(strings.TrimSpace(tail.stdout), "\n") {
		a := tailed{line: line}
		if err := json.Unmarshal([]byte(line), &a); err != nil {
			t.Fatalf("tail line %q: %v", line, err)
		}
		out = append(out, a)
	}
	return out
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestUsageAndValidation(t *testing.T) {
	unsetBrokers := writeFile(t, "brokers.yaml", "kafka: {brokers: [\"${SG_TEST_UNSET_BROKERS}\"]}\nflows:\n  - name: x\n    timeout: 2s\n    targets: [{name: a}]\n")
	bad := writeFile(t, "bad.yaml", "flows:\n  - name: x\n    timeout: soon\n    targets: [{name: a}]\n    strategy: {type: alll}\n    bogus: 1\n")
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"no command", nil, exitUsage, "", "Usage: scattergather <command>"},
		{"help", []string{"help"}, exitOK, "Commands:", ""},
		{"unknown command", []string{"frobnicate"}, exitUsage, "", `unknown command "frobnicate"`},
		{"validate example", []string{"validate", "--topology", "../../topology.yaml"}, exitOK, "OK (1 flow(s): flights)", ""},
		{"validate bad", []string{"validate", "--topology", bad}, exitFail, "",
			"flows[0].timeout: want a duration such as 250ms or 2s, have \"soon\""},
		{"validate bad lists every problem", []string{"validate", "--topology", bad}, exitFail, "", "flows[0].bogus: unknown key"},
		{"validate unset brokers variable", []string{"validate", "--topology", unsetBrokers}, exitFail, "", "kafka.brokers[0]: environment variable SG_TEST_UNSET_BROKERS is not set"},
		{"--brokers makes the unset variable irrelevant", []string{"validate", "--topology", unsetBrokers, "--brokers", "127.0.0.1:9092"}, exitOK, "OK (1 flow(s): x)", ""},
		{"validate missing file", []string{"validate", "--topology", "/nonexistent.yaml"}, exitFail, "", "no such file"},
		{"validate bad flag", []string{"validate", "--bogus"}, exitUsage, "", "flag provided but not defined: -bogus"},
		{"validate help", []string{"validate", "--help"}, exitOK, "", "Usage: scattergather validate"},
		{"run without role", []string{"run", "--topology", "../../topology.yaml"}, exitUsage, "", "--role is required"},
		{"run bad role", []string{"run", "--role", "boss"}, exitUsage, "", `unknown role "boss"`},
		{"run bad log level", []string{"run", "--role", "all", "--log-level", "loud", "--topology", "../../topology.yaml"}, exitUsage, "", "bad --log-level"},
		{"run help", []string{"run", "-h"}, exitOK, "", "-state-dir"},
		{"run gateway without address", []string{"run", "--role", "gateway", "--gateway-addr", "", "--topology", "../../topology.yaml"}, exitUsage, "", "needs a --gateway-addr"},
		{"run gateway half a key pair", []string{"run", "--role", "gateway", "--gateway-tls-cert", "x.pem", "--topology", "../../topology.yaml"}, exitFail, "", "--gateway-tls-cert and --gateway-tls-key go together"},
		{"topics without action", []string{"topics"}, exitUsage, "", "want one action"},
		{"send without flow", []string{"send"}, exitUsage, "", "--flow is required"},
		{"send unknown flow", []string{"send", "--topology", "../../topology.yaml", "--flow", "trains", "{}"}, exitFail, "", `no flow "trains"`},
		{"send bad attr", []string{"send", "--flow", "x", "--attr", "novalue"}, exitUsage, "", "want key=value"},
		{"tail bad from", []string{"tail", "--flow", "flights", "--from", "middle"}, exitUsage, "", "--from must be start or end"},
		{"bench bad instances", []string{"bench", "--instances", "1,0"}, exitUsage, "", "--instances wants positive counts"},
		{"demo bad requests", []string{"demo", "--requests", "0"}, exitUsage, "", "must be positive"},
		{"replay bad stage", []string{"replay", "--flow", "flights", "--stage", "worker", "--to", "earliest"}, exitUsage, "", "--stage must be scatter or gather"},
		{"replay without to", []string{"replay", "--flow", "flights", "--stage", "gather"}, exitUsage, "", "--to is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCmd(context.Background(), "", tc.args...)
			if r.code != tc.code {
				t.Errorf("exit code %d, want %d\nstdout: %s\nstderr: %s", r.code, tc.code, r.stdout, r.stderr)
			}
			if !strings.Contains(r.stdout, tc.stdout) {
				t.Errorf("stdout %q does not contain %q", r.stdout, tc.stdout)
			}
			if !strings.Contains(r.stderr, tc.stderr) {
				t.Errorf("stderr %q does not contain %q", r.stderr, tc.stderr)
			}
		})
	}
}

// TestRunSendTail drives the commands as a user would: topics create, run
// --role all with the built-in HTTP worker, send, and tail.
func TestRunSendTail(t *testing.T) { testRunSendTail(t, processortest.Fake(t)) }

func TestIntegrationRunSendTail(t *testing.T) { testRunSendTail(t, processortest.Brokers(t)) }

func testRunSendTail(t *testing.T, brokers []string) {
	flow := processortest.Unique("quotes")
	var mu sync.Mutex
	keys := map[string]bool{}
	provider := func(price int) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			keys[r.Header.Get("Idempotency-Key")] = true
			mu.Unlock()
			fmt.Fprintf(w, `{"price": %d}`, price)
		}))
	}
	p1, p2 := provider(120), provider(80)
	defer p1.Close()
	defer p2.Close()
	topo := writeFile(t, "topology.yaml", fmt.Sprintf(`
kafka: {brokers: [%s]}
flows:
  - name: %s
    timeout: 20s
    targets:
      - {name: one, http: {url: %s}}
      - {name: two, http: {url: "${TWO_URL}"}}
    consolidate: {type: min, field: price}
`, brokers[0], flow, p1.URL))
	t.Setenv("TWO_URL", p2.URL)

	if r := runCmd(context.Background(), "", "topics", "create", "--topology", topo); r.code != exitOK || !strings.Contains(r.stdout, flow+".results") {
		t.Fatalf("topics create: %+v", r)
	}
	if r := runCmd(context.Background(), "", "topics", "check", "--topology", topo); r.code != exitOK {
		t.Fatalf("topics check: %+v", r)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan result, 1)
	httpAddr, gwAddr := freeAddr(t), freeAddr(t)
	t.Setenv(envGatewayToken, "gw-token")
	go func() {
		runDone <- runCmd(ctx, "", "run", "--topology", topo, "--role", "all", "--state-dir", t.TempDir(), "--log-level", "warn", "--http-addr", httpAddr, "--gateway-addr", gwAddr)
	}()
	send := runCmd(context.Background(), `{"from":"AMS"}`+"\n"+`{"from":"CDG"}`+"\n", "send", "--topology", topo, "--flow", flow, "--attr", "team=search")
	if send.code != exitOK {
		t.Fatalf("send: %+v", send)
	}
	ids := strings.Fields(send.stdout)
	if len(ids) != 2 {
		t.Fatalf("send printed %q, want two request ids", send.stdout)
	}
	seen := map[string]bool{}
	lines := map[string]string{}
	for _, a := range tailAggregates(context.Background(), t, topo, flow, 2) {
		var res struct {
			Result struct {
				Target string
				Value  float64
			} `json:"result"`
		}
		if err := json.Unmarshal([]byte(a.line), &res); err != nil {
			t.Fatalf("tail line %q: %v", a.line, err)
		}
		seen[a.RequestID] = true
		lines[a.RequestID] = a.line
		if a.Outcome != string(schemas.OutcomeComplete) || res.Result.Target != "two" || res.Result.Value != 80 || a.Attributes["team"] != "search" {
			t.Errorf("aggregate %s", a.line)
		}
	}
	for _, id := range ids {
		if !seen[id] {
			t.Errorf("no aggregate for %s", id)
		}
		for _, target := range []string{"one", "two"} {
			mu.Lock()
			ok := keys[id+"/"+target]
			mu.Unlock()
			if !ok {
				t.Errorf("provider %s never got Idempotency-Key %s/%s", target, id, target)
			}
		}
	}
	// The gateway of --role all answers a GET with the aggregate as tail
	// prints it, and a POST with its own.
	gw := "http://" + gwAddr + "/v1/flows/" + flow + "/requests"
	if code, body := gatewayDo(t, "GET", gw+"/"+ids[0]+"?wait=30s", ""); code != http.StatusOK || strings.TrimSpace(body) != lines[ids[0]] {
		t.Errorf("gateway GET: %d %s, want 200 with tail's %s", code, body, lines[ids[0]])
	}
	if code, body := gatewayDo(t, "POST", gw, `{"from":"AMS"}`); code != http.StatusOK || !strings.Contains(body, `"value":80`) {
		t.Errorf("gateway POST: %d %s, want the cheaper offer", code, body)
	}
	// The metrics agree with what was sent (two requests with send, one
	// through the gateway) and read; the roles are ready. A role counts
	// once its transaction's end returns, which may come after the
	// aggregate reached the gateway: the counts are waited for.
	wants := []string{
		fmt.Sprintf(`scattergather_requests_scattered_total{flow=%q} 3`, flow),
		fmt.Sprintf(`scattergather_tasks_scattered_total{flow=%q,target="two"} 3`, flow),
		fmt.Sprintf(`scattergather_aggregates_total{flow=%q,outcome="complete"} 3`, flow),
		fmt.Sprintf(`scattergather_results_written_total{flow=%q,status="OK",target="one"} 3`, flow),
		fmt.Sprintf(`scattergather_results_folded_total{flow=%q,status="OK",target="two"} 3`, flow),
		fmt.Sprintf(`scattergather_open_requests{flow=%q} 0`, flow),
		fmt.Sprintf(`scattergather_consumer_lag_records{flow=%q,role="scatter"} 0`, flow),
		// Transaction markers after the last task read may count: present, small.
		fmt.Sprintf(`scattergather_consumer_lag_records{flow=%q,role="worker/one"} `, flow),
		fmt.Sprintf(`scattergather_consumer_lag_records{flow=%q,role="gather"} 0`, flow),
		fmt.Sprintf(`scattergather_gateway_responses_total{code="200",flow=%q,method="POST"} 1`, flow),
		fmt.Sprintf(`scattergather_gateway_aggregates_read_total{flow=%q} 3`, flow),
		`scattergather_kafka_`,
	}
	var missing []string
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for deadline := time.Now().Add(30 * time.Second); ; <-tick.C {
		metricsText := get(t, "http://"+httpAddr+"/metrics", http.StatusOK)
		missing = missing[:0]
		for _, want := range wants {
			if !strings.Contains(metricsText, want) {
				missing = append(missing, want)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, want := range missing {
		t.Errorf("/metrics lacks %s", want)
	}
	get(t, "http://"+httpAddr+"/healthz", http.StatusOK)
	if ready := get(t, "http://"+httpAddr+"/readyz", http.StatusOK); !strings.Contains(ready, `"ready":true`) ||
		!strings.Contains(ready, fmt.Sprintf(`{"role":"gateway","flow":%q,"ready":true}`, flow)) {
		t.Errorf("/readyz: %s", ready)
	}

	replay := []string{"replay", "--topology", topo, "--flow", flow, "--stage", "gather", "--to", "earliest"}
	if r := runCmd(context.Background(), "", replay...); r.code != exitFail || !strings.Contains(r.stderr, "live member") {
		t.Errorf("replay while the gather runs: exit %d, stderr %q; want a refusal naming live members", r.code, r.stderr)
	}
	cancel()
	select {
	case r := <-runDone:
		if r.code != exitOK {
			t.Errorf("run exited %d: %s", r.code, r.stderr)
		}
	case <-time.After(time.Minute):
		t.Fatal("run did not stop within a minute of its context ending")
	}
	if r := runCmd(context.Background(), "", append(replay, "--dry-run")...); r.code != exitOK ||
		!strings.Contains(r.stdout, "reset to") || !strings.Contains(r.stdout, "dry run: nothing changed") {
		t.Errorf("replay --dry-run: %+v", r)
	}
	// After a clean stop the static member stays until its session times
	// out: replay refuses and prints the command that removes it.
	r := runCmd(context.Background(), "", replay...)
	if r.code != exitFail {
		t.Fatalf("replay after a clean stop: exit %d (%s), want a refusal while the static member lingers", r.code, r.stdout)
	}
	var cmdLine string
	for _, line := range strings.Split(r.stderr, "\n") {
		if l := strings.TrimSpace(line); strings.HasPrefix(l, "scattergather replay ") {
			cmdLine = l
		}
	}
	if !strings.Contains(cmdLine, "--remove-static ") || !strings.Contains(r.stderr, "session_timeout") {
		t.Fatalf("replay after a clean stop printed no command that removes the static member:\n%s", r.stderr)
	}
	args := strings.Fields(cmdLine)[1:]
	if r := runCmd(context.Background(), "", args...); r.code != exitOK || !strings.Contains(r.stdout, "offsets of") {
		t.Errorf("the printed command %q: exit %d\nstdout: %s\nstderr: %s", cmdLine, r.code, r.stdout, r.stderr)
	}
}

// gatewayDo calls the gateway with the bearer token of testRunSendTail.
func gatewayDo(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer gw-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// get fetches url, waiting for the server to listen, and checks the status.
func get(t *testing.T, url string, status int) string {
	t.Helper()
	var resp *http.Response
	processortest.Eventually(t, 30*time.Second, "http server at "+url, func() bool {
		var err error
		resp, err = http.Get(url)
		return err == nil
	})
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		t.Errorf("GET %s: %s, want %d: %s", url, resp.Status, status, b)
	}
	return string(b)
}

func TestDemo(t *testing.T) {
	r := runCmd(context.Background(), "", "demo", "--requests", "40", "--rate", "400")
	if r.code != exitOK {
		t.Fatalf("demo exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"40 requests -> 40 aggregates (exactly one each)", "aggregates by outcome:", "p50", "a few consolidated events:"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("demo output lacks %q:\n%s", want, r.stdout)
		}
	}
}

func TestReplayCommandQuotes(t *testing.T) {
	got := replayCommand("/etc/sg/my topology.yaml", "", "flights", "gather", "2026-11-30T08:00:00Z", []string{"gather-1", "it's"})
	want := `scattergather replay --topology '/etc/sg/my topology.yaml' --flow flights --stage gather --to 2026-11-30T08:00:00Z --remove-static 'gather-1,it'\''s'`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if got := replayCommand("t.yaml", "b1:9092,b2:9092", "f", "scatter", "earliest", []string{"s"}); got != "scattergather replay --topology t.yaml --brokers b1:9092,b2:9092 --flow f --stage scatter --to earliest --remove-static s" {
		t.Errorf("got %s", got)
	}
}

func TestSelectScenarios(t *testing.T) {
	all := []bench.Scenario{{Name: "fanout 3, all, 5-50ms"}, {Name: "fanout 3, all, 5-50ms, fixed 64"}, {Name: "fanout 8, all, instant"}}
	names := func(scs []bench.Scenario) (out []string) {
		for _, sc := range scs {
			out = append(out, sc.Name)
		}
		return out
	}
	for _, tc := range []struct {
		only string
		want []string
	}{
		{"", []string{"fanout 3, all, 5-50ms", "fanout 3, all, 5-50ms, fixed 64", "fanout 8, all, instant"}},
		{"5-50ms", []string{"fanout 3, all, 5-50ms", "fanout 3, all, 5-50ms, fixed 64"}},
		{"=fanout 3, all, 5-50ms; fanout 8", []string{"fanout 3, all, 5-50ms", "fanout 8, all, instant"}},
		{"=fanout 3", nil},
	} {
		if got := names(selectScenarios(tc.only, all)); !slices.Equal(got, tc.want) {
			t.Errorf("selectScenarios(%q) = %q, want %q", tc.only, got, tc.want)
		}
	}
}
