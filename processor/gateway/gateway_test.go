package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scattergather/scattergather/internal/processortest"
	"github.com/scattergather/scattergather/processor/gateway"
	"github.com/scattergather/scattergather/processor/kafka"
	"github.com/scattergather/scattergather/processor/topology"
	"github.com/scattergather/scattergather/processor/worker"
	"github.com/scattergather/scattergather/schemas"
)

func answer(price int) worker.Handler {
	return worker.HandlerFunc(func(context.Context, *schemas.Task) ([]byte, error) {
		return fmt.Appendf(nil, `{"price": %d}`, price), nil
	})
}

// hangingUntil answers ERROR once release is closed; until then only the
// call's end (deadline, cancellation) ends it.
func hangingUntil(release <-chan struct{}) worker.Handler {
	return worker.HandlerFunc(func(ctx context.Context, _ *schemas.Task) ([]byte, error) {
		select {
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-release:
			return nil, errors.New("released")
		}
	})
}

// hanging never answers: only the task's deadline ends the call.
func hanging() worker.Handler {
	return worker.HandlerFunc(func(ctx context.Context, _ *schemas.Task) ([]byte, error) {
		<-ctx.Done()
		return nil, context.Cause(ctx)
	})
}

// gated answers price once open is closed.
func gated(open <-chan struct{}, price int) worker.Handler {
	return worker.HandlerFunc(func(ctx context.Context, _ *schemas.Task) ([]byte, error) {
		select {
		case <-open:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
		return fmt.Appendf(nil, `{"price": %d}`, price), nil
	})
}

// waitingHook counts the requests waiting.
type waitingHook struct{ waiting atomic.Int64 }

func (h *waitingHook) OnGatewayWaiting(_ string, delta int) { h.waiting.Add(int64(delta)) }

// aggregate is an aggregate as the gateway answers it.
type aggregate struct {
	RequestID string          `json:"request_id"`
	Flow      string          `json:"flow"`
	Outcome   string          `json:"outcome"`
	Result    json.RawMessage `json:"result"`
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) aggregate(t *testing.T) aggregate {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status %d (%s), want 200 with an aggregate", r.status, r.body)
	}
	var a aggregate
	if err := json.Unmarshal(r.body, &a); err != nil {
		t.Fatalf("aggregate %s: %v", r.body, err)
	}
	return a
}

func (r response) problem(t *testing.T, status int, kind string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d (%s), want %d", r.status, r.body, status)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("content type %q, want application/problem+json", ct)
	}
	var p gateway.Problem
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("problem %s: %v", r.body, err)
	}
	if p.Type != "urn:scattergather:problem:"+kind || p.Status != status || p.Title == "" {
		t.Errorf("problem %+v, want kind %s and status %d", p, kind, status)
	}
}

func do(t *testing.T, method, url, body string, header ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, b}
}

// pipeline runs every role of a three-target flow with handlers a, b, c,
// and n gateways, each served by an httptest server whose URL is
// returned.
func pipeline(t *testing.T, brokers []string, flowBody string, a, b, c worker.Handler, n int, opts ...gateway.Option) (*topology.Topology, *topology.Flow, []string) {
	t.Helper()
	topo, f := processortest.Topology(t, brokers, flowBody)
	processortest.CreateTopics(t, topo, f)
	runners, err := kafka.Roles(topo, topo.Flows, kafka.RoleAll, t.TempDir(),
		kafka.WithHandler("a", a), kafka.WithHandler("b", b), kafka.WithHandler("c", c))
	if err != nil {
		t.Fatal(err)
	}
	var urls []string
	for range n {
		g, err := gateway.New(topo, nil, append([]gateway.Option{gateway.WithAddr("")}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(g)
		t.Cleanup(srv.Close)
		runners = append(runners, g)
		urls = append(urls, srv.URL)
	}
	processortest.Start(t, runners...)
	return topo, f, urls
}

const threeTargets = `
timeout: %s
targets: [{name: a}, {name: b}, {name: c}]
strategy: %s
consolidate: {type: min, field: price}
worker: {deadline_grace: 200ms}
limits: {max_payload_bytes: 1KiB}
`

func TestGatewayStrategies(t *testing.T) { testStrategies(t, processortest.Fake(t)) }

func TestIntegrationGatewayStrategies(t *testing.T) { testStrategies(t, processortest.Brokers(t)) }

// testStrategies sends a request of each strategy through the gateway and
// checks the consolidated answer.
func testStrategies(t *testing.T, brokers []string) {
	// Only the case that ends at its deadline has a short timeout: the
	// others end once the answers they need are in, which a pipeline
	// starting on a busy machine may take more than 2 s to bring. A nil
	// handler hangs until the subtest ends, so that a call not cut short
	// does not hold the workers' shutdown for the whole timeout.
	for _, sc := range []struct {
		strategy string
		timeout  string
		a, b, c  worker.Handler
		outcome  string
		result   string
	}{
		{"{type: all}", "30s", answer(100), answer(90), answer(95), "complete", `"value":90`},
		{"{type: all}", "2s", answer(100), answer(90), nil, "timeout", `"value":90`},
		{"{type: first}", "30s", nil, answer(90), nil, "first", `"target":"b"`},
		{"{type: quorum, quorum: 2}", "30s", answer(100), answer(90), nil, "quorum", `"value":90`},
		{"{type: timeout}", "30s", answer(100), answer(80), answer(90), "complete", `"value":80`},
	} {
		t.Run(sc.outcome+"-"+strings.Trim(sc.strategy, "{}"), func(t *testing.T) {
			release := make(chan struct{})
			hs := []worker.Handler{sc.a, sc.b, sc.c}
			for i, h := range hs {
				if h == nil {
					hs[i] = hangingUntil(release)
				}
			}
			_, f, urls := pipeline(t, brokers, fmt.Sprintf(threeTargets, sc.timeout, sc.strategy), hs[0], hs[1], hs[2], 1)
			t.Cleanup(func() { close(release) }) // before the pipeline stops
			// The strategy's outcome is what is checked, not how soon it
			// comes: the POST may wait longer than the flow's timeout for a
			// pipeline that starts slowly on a busy machine.
			r := do(t, "POST", urls[0]+"/v1/flows/"+f.Name+"/requests?wait=30s", `{"from":"AMS","to":"JFK"}`)
			a := r.aggregate(t)
			if a.Outcome != sc.outcome || !strings.Contains(string(a.Result), sc.result) || a.Flow != f.Name || a.RequestID == "" {
				t.Errorf("aggregate %s; want outcome %s with %s", r.body, sc.outcome, sc.result)
			}
			if loc := r.header.Get("Content-Location"); loc != "/v1/flows/"+f.Name+"/requests/"+a.RequestID {
				t.Errorf("Content-Location %q", loc)
			}
		})
	}
}

func TestGatewayIdempotentRetry(t *testing.T) { testIdempotentRetry(t, processortest.Fake(t)) }

func TestIntegrationGatewayIdempotentRetry(t *testing.T) {
	testIdempotentRetry(t, processortest.Brokers(t))
}

// testIdempotentRetry retries POSTs with one Idempotency-Key, at once and
// after the answer: one request on the topic, the same answer each time.
func testIdempotentRetry(t *testing.T, brokers []string) {
	topo, f, urls := pipeline(t, brokers, fmt.Sprintf(threeTargets, "2s", "{type: all}"), answer(100), answer(90), answer(95), 1)
	// The test is of the answers, not their speed: each POST may wait for
	// the aggregate as long as a slow start on a busy machine needs.
	url := urls[0] + "/v1/flows/" + f.Name + "/requests?wait=30s"
	const body = `{"from":"AMS","to":"JFK"}`
	var wg sync.WaitGroup
	first := make([]response, 3)
	for i := range first {
		wg.Add(1)
		go func() {
			defer wg.Done()
			first[i] = do(t, "POST", url, body, "Idempotency-Key", "order-1")
		}()
	}
	wg.Wait()
	again := do(t, "POST", url, body, "Idempotency-Key", "order-1")
	for i, r := range append(first, again) {
		if a := r.aggregate(t); a.RequestID != "order-1" || string(r.body) != string(again.body) {
			t.Errorf("answer %d: %s, want %s", i, r.body, again.body)
		}
	}
	do(t, "POST", url, `{"other":true}`, "Idempotency-Key", "order-1").aggregate(t) // answered: the aggregate
	// A second request after the first tells when the topic holds all
	// the gateway wrote.
	do(t, "POST", url, body, "Idempotency-Key", "order-2").aggregate(t)
	recs := processortest.Records(t, topo, f.Topics.Requests, 2, time.Minute)
	if len(recs) != 2 {
		t.Errorf("%d requests on %s, want 2 (order-1 once, order-2)", len(recs), f.Topics.Requests)
	}
	for _, rec := range recs {
		var req schemas.Request
		if err := schemas.DecodeInto(rec.Value, &req); err != nil {
			t.Fatal(err)
		}
		if string(rec.Key) != req.RequestID || string(req.Payload) != body || req.ContentType != schemas.ContentTypeJSON {
			t.Errorf("request record key %q: %+v", rec.Key, req)
		}
	}
}

func TestGatewayWaitRunsOut(t *testing.T) { testWaitRunsOut(t, processortest.Fake(t)) }

func TestIntegrationGatewayWaitRunsOut(t *testing.T) { testWaitRunsOut(t, processortest.Brokers(t)) }

// testWaitRunsOut answers 202 while the providers hold their answers,
// then the aggregate to a GET on this gateway and on another one; a
// POST beyond the waiting limit is refused meanwhile.
func testWaitRunsOut(t *testing.T, brokers []string) {
	hook := &waitingHook{}
	open := make(chan struct{})
	_, f, urls := pipeline(t, brokers, fmt.Sprintf(threeTargets, "60s", "{type: all}"),
		gated(open, 100), gated(open, 90), gated(open, 95), 2, gateway.WithMaxWaiting(1), gateway.WithHooks(hook))
	post := urls[0] + "/v1/flows/" + f.Name + "/requests"
	r := do(t, "POST", post, `{"from":"AMS"}`, "Idempotency-Key", "slow-1", "Prefer", "wait=0")
	if r.status != http.StatusAccepted || r.header.Get("Preference-Applied") != "wait=0" {
		t.Fatalf("POST: %d %v %s, want 202 with Preference-Applied", r.status, r.header, r.body)
	}
	loc := r.header.Get("Location")
	if loc != "/v1/flows/"+f.Name+"/requests/slow-1" {
		t.Fatalf("Location %q", loc)
	}
	if r := do(t, "GET", urls[0]+loc, ""); r.status != http.StatusAccepted {
		t.Errorf("GET of an open request on its gateway: %d %s, want 202", r.status, r.body)
	}
	do(t, "GET", urls[1]+loc, "").problem(t, http.StatusNotFound, gateway.ProblemUnknownRequest)

	// One request may wait at once: a second is refused while the first
	// waits.
	waiting := make(chan response, 1)
	go func() { waiting <- do(t, "POST", post, `{"from":"AMS"}`, "Idempotency-Key", "slow-2") }()
	processortest.Eventually(t, time.Minute, "a POST waiting", func() bool { return hook.waiting.Load() == 1 })
	r = do(t, "POST", post, `{"from":"LHR"}`, "Idempotency-Key", "slow-3", "Prefer", "wait=0")
	r.problem(t, http.StatusServiceUnavailable, gateway.ProblemBusy)
	if r.header.Get("Retry-After") == "" {
		t.Error("busy without Retry-After")
	}
	close(open)
	if a := (<-waiting).aggregate(t); a.RequestID != "slow-2" || a.Outcome != "complete" {
		t.Errorf("waiting POST answered %+v", a)
	}
	for _, u := range urls {
		a := do(t, "GET", u+loc+"?wait=30s", "").aggregate(t)
		if a.RequestID != "slow-1" || !strings.Contains(string(a.Result), `"value":90`) {
			t.Errorf("GET %s: %+v", u, a)
		}
	}
}

func TestGatewayBadInput(t *testing.T) { testBadInput(t, processortest.Fake(t)) }

func TestIntegrationGatewayBadInput(t *testing.T) { testBadInput(t, processortest.Brokers(t)) }

func testBadInput(t *testing.T, brokers []string) {
	topo, f := processortest.Topology(t, brokers, fmt.Sprintf(threeTargets, "2s", "{type: all}"))
	processortest.CreateTopics(t, topo, f)
	g, err := gateway.New(topo, nil, gateway.WithAddr(""), gateway.WithBearerToken("s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	processortest.Start(t, g)
	srv := httptest.NewServer(g)
	defer srv.Close()
	auth := []string{"Authorization", "Bearer s3cret"}
	post := srv.URL + "/v1/flows/" + f.Name + "/requests"
	with := func(h ...string) []string { return append(append([]string(nil), auth...), h...) }

	r := do(t, "POST", post, `{}`)
	r.problem(t, http.StatusUnauthorized, gateway.ProblemUnauthorized)
	if r.header.Get("WWW-Authenticate") == "" {
		t.Error("401 without WWW-Authenticate")
	}
	do(t, "POST", post, `{}`, "Authorization", "Bearer s3cres").problem(t, http.StatusUnauthorized, gateway.ProblemUnauthorized)
	do(t, "POST", srv.URL+"/v1/flows/nope/requests", `{}`, auth...).problem(t, http.StatusNotFound, gateway.ProblemUnknownFlow)
	do(t, "POST", post, `{"from":`, auth...).problem(t, http.StatusBadRequest, gateway.ProblemNotJSON)
	do(t, "POST", post, `{"pad":"`+strings.Repeat("x", 1024)+`"}`, auth...).problem(t, http.StatusRequestEntityTooLarge, gateway.ProblemTooLarge)
	do(t, "POST", post, `{"payload":{"pad":"`+strings.Repeat("x", 1024)+`"}}`, with("Content-Type", gateway.EnvelopeContentType)...).
		problem(t, http.StatusRequestEntityTooLarge, gateway.ProblemTooLarge)
	do(t, "POST", post, `{"attributes":{}}`, with("Content-Type", gateway.EnvelopeContentType)...).problem(t, http.StatusBadRequest, gateway.ProblemNotJSON)
	do(t, "POST", post, `{}`, with("Idempotency-Key", strings.Repeat("k", schemas.MaxRequestIDBytes+1))...).
		problem(t, http.StatusBadRequest, gateway.ProblemBadRequestID)
	do(t, "POST", post, `{}`, with("Idempotency-Key", `"`+" x"+`"`)...).problem(t, http.StatusBadRequest, gateway.ProblemBadRequestID)
	do(t, "POST", post+"?wait=soon", `{}`, auth...).problem(t, http.StatusBadRequest, gateway.ProblemBadWait)
	do(t, "GET", post+"/never-sent", "", auth...).problem(t, http.StatusNotFound, gateway.ProblemUnknownRequest)
	do(t, "GET", post+"/%20x", "", auth...).problem(t, http.StatusBadRequest, gateway.ProblemBadRequestID)

	// A request sent, then its id reused with another body.
	if r := do(t, "POST", post, `{"a":1}`, with("Idempotency-Key", "k1", "Prefer", "wait=0")...); r.status != http.StatusAccepted {
		t.Fatalf("POST: %d %s, want 202 (no pipeline runs)", r.status, r.body)
	}
	do(t, "POST", post, `{"a":2}`, with("Idempotency-Key", "k1", "Prefer", "wait=0")...).
		problem(t, http.StatusUnprocessableEntity, gateway.ProblemKeyReused)
	// An id with a slash and a space is one path segment of its Location.
	r = do(t, "POST", post, `{}`, with("Idempotency-Key", "a/b c", "Prefer", "wait=0")...)
	if loc := r.header.Get("Location"); r.status != http.StatusAccepted || loc != "/v1/flows/"+f.Name+"/requests/a%2Fb%20c" {
		t.Fatalf("POST a/b c: %d, Location %q", r.status, loc)
	}
	if r := do(t, "GET", srv.URL+r.header.Get("Location"), "", auth...); r.status != http.StatusAccepted {
		t.Errorf("GET of its Location: %d %s, want 202", r.status, r.body)
	}
	// An envelope's attributes travel with the request.
	if r := do(t, "POST", post, `{"payload":{"a":3},"attributes":{"tenant":"acme"}}`,
		with("Content-Type", gateway.EnvelopeContentType, "Idempotency-Key", "k2", "Prefer", "wait=0")...); r.status != http.StatusAccepted {
		t.Fatalf("envelope POST: %d %s", r.status, r.body)
	}
	recs := processortest.Records(t, topo, f.Topics.Requests, 3, time.Minute)
	var req schemas.Request
	for _, rec := range recs {
		if string(rec.Key) == "k2" {
			if err := schemas.DecodeInto(rec.Value, &req); err != nil {
				t.Fatal(err)
			}
		}
	}
	if v, _ := req.Attributes.Get("tenant"); v != "acme" || string(req.Payload) != `{"a":3}` || req.RequestID != "k2" {
		t.Errorf("envelope request %+v", req)
	}
}

// TestGatewayBrokerUnreachable: a gateway whose broker does not answer
// answers 503 with Retry-After within its produce timeout, and again to a
// retry, and its status says why it is not ready.
func TestGatewayBrokerUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	topo, f := processortest.Topology(t, []string{addr}, fmt.Sprintf(threeTargets, "2s", "{type: all}"))
	g, err := gateway.New(topo, nil, gateway.WithAddr(""), gateway.WithProduceTimeout(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	srv := httptest.NewServer(g)
	defer srv.Close()
	for range 2 {
		r := do(t, "POST", srv.URL+"/v1/flows/"+f.Name+"/requests", `{}`, "Idempotency-Key", "k")
		r.problem(t, http.StatusServiceUnavailable, gateway.ProblemUnavailable)
		if r.header.Get("Retry-After") == "" {
			t.Error("503 without Retry-After")
		}
	}
	if st := g.Status(); st.Ready || !strings.Contains(st.Detail, "Kafka did not acknowledge a request") {
		t.Errorf("status after the 503s: %+v", st)
	}
}
