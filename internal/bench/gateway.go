package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/scattergather/scattergather/internal/load"
	"github.com/scattergather/scattergather/processor/gateway"
)

// GatewayStep is one measurement through the HTTP gateway: open loop (a
// request started at each scheduled time, latency from that time) or
// closed loop (Clients clients, each sending its next request when the
// last is answered).
type GatewayStep struct {
	Mode     string  `json:"mode"`
	Rate     float64 `json:"target_rate,omitempty"`
	Clients  int     `json:"clients,omitempty"`
	Achieved float64 `json:"achieved_rate"`
	Sent     int     `json:"sent"`
	// OK counts 200 answers carrying the aggregate of the request sent;
	// Other every other answer or failed call.
	OK    int `json:"ok"`
	Other int `json:"other"`
	// Statuses counts the answers by HTTP status code; 0 counts calls
	// that got no answer (a connection refused or reset).
	Statuses map[int]int `json:"statuses"`
	// FirstError is the first call of the step that got no answer.
	FirstError string `json:"first_error,omitempty"`
	// Aggregates is how many of the step's requests a read_committed
	// consumer read an aggregate of; Duplicates how many aggregates came
	// twice over the whole run.
	Aggregates int `json:"aggregates"`
	Duplicates int `json:"duplicates"`
	// Client is from the (intended) send to the HTTP response; Pipeline
	// from the same time to a read_committed consumer reading the
	// aggregate.
	Client   Latency `json:"client_latency"`
	Pipeline Latency `json:"pipeline_latency"`
	// BehindMs is how far an open-loop sender fell behind its schedule at
	// worst.
	BehindMs    float64 `json:"sender_behind_ms,omitempty"`
	Sustainable bool    `json:"sustainable"`
}

// GatewayResult is a scenario measured through the gateway.
type GatewayResult struct {
	Scenario Scenario      `json:"scenario"`
	Steps    []GatewayStep `json:"steps"`
	// Knee is the highest open-loop rate of the sweep that was
	// sustainable: every request answered 200 with its aggregate, p99
	// under 2 s, the sender on schedule. 0 without a sweep (LowOnly).
	Knee float64 `json:"knee_rate"`
}

// RunGateway runs sc's pipeline with a gateway in front: an open-loop step
// at cfg.LowRate, closed-loop steps with each of clients, then (unless
// cfg.LowOnly) an open-loop sweep from cfg.StartRate, doubling until a
// step is not sustainable, for the knee.
func RunGateway(ctx context.Context, cfg Config, sc Scenario, clients []int) (*GatewayResult, error) {
	cfg.defaults()
	r, err := startScenario(ctx, &cfg, sc)
	if err != nil {
		return nil, err
	}
	defer r.stop()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	g, err := gateway.New(r.topo, nil, gateway.WithListener(ln), gateway.WithLogger(cfg.Logger))
	if err != nil {
		ln.Close()
		return nil, err
	}
	gctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(gctx) }()
	defer func() {
		stop()
		<-done
	}()
	select {
	case <-g.Ready():
	case err := <-done:
		done <- err
		return nil, fmt.Errorf("bench: gateway: %w", err)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	gb := &gatewayBench{r: r, url: "http://" + g.Addr() + "/v1/flows/" + r.flow.Name + "/requests",
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1024}, Timeout: time.Minute}}
	res := &GatewayResult{Scenario: sc}
	report := func(st GatewayStep) {
		res.Steps = append(res.Steps, st)
		fmt.Fprintf(cfg.Progress, "  %-28s gateway %-6s %5s: %7.0f req/s, %d/%d ok (statuses %v), %d aggregates, client p50 %6.1f ms p99 %7.1f ms; pipeline p50 %6.1f ms p99 %7.1f ms\n",
			sc.Name, st.Mode, gb.label(st), st.Achieved, st.OK, st.Sent, st.Statuses, st.Aggregates, st.Client.P50, st.Client.P99, st.Pipeline.P50, st.Pipeline.P99)
	}
	st, err := gb.step(ctx, cfg, "open", cfg.LowRate, 0)
	if err != nil {
		return nil, err
	}
	report(st)
	for _, c := range clients {
		st, err := gb.step(ctx, cfg, "closed", 0, c)
		if err != nil {
			return nil, err
		}
		report(st)
	}
	if cfg.LowOnly {
		return res, nil
	}
	sweep := func(rate float64) (bool, error) {
		st, err := gb.step(ctx, cfg, "open", rate, 0)
		if err != nil {
			return false, err
		}
		report(st)
		if st.FirstError != "" {
			fmt.Fprintf(cfg.Progress, "  %-28s first call without an answer: %s\n", sc.Name, st.FirstError)
		}
		if st.Sustainable {
			res.Knee = rate
		}
		return st.Sustainable, nil
	}
	bad := 0.0
	for rate := cfg.StartRate; rate <= 1e6; rate *= 2 {
		ok, err := sweep(rate)
		if err != nil {
			return nil, err
		}
		if !ok {
			bad = rate
			break
		}
	}
	if res.Knee > 0 && bad > 0 { // one step halfway refines the knee
		if _, err := sweep((res.Knee + bad) / 2); err != nil {
			return nil, err
		}
	}
	return res, nil
}

type gatewayBench struct {
	r      *runner
	url    string
	client *http.Client

	mu       sync.Mutex
	firstErr string
}

func (gb *gatewayBench) label(st GatewayStep) string {
	if st.Mode == "open" {
		return strconv.FormatFloat(st.Rate, 'f', 0, 64) + "/s"
	}
	return strconv.Itoa(st.Clients) + "c"
}

// call POSTs one request with id as its Idempotency-Key; ok when the
// answer is its aggregate. status is the answer's code, 0 for none.
func (gb *gatewayBench) call(ctx context.Context, id string, payload []byte) (ok bool, status int) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, gb.url, bytes.NewReader(payload))
	if err != nil {
		return false, 0
	}
	req.Header.Set("Idempotency-Key", id)
	resp, err := gb.client.Do(req)
	if err != nil {
		gb.mu.Lock()
		if gb.firstErr == "" {
			gb.firstErr = err.Error()
		}
		gb.mu.Unlock()
		return false, 0
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return false, resp.StatusCode
	}
	var a struct {
		RequestID string `json:"request_id"`
	}
	return json.Unmarshal(b, &a) == nil && a.RequestID == id, resp.StatusCode
}

// step measures warmup then window, in mode "open" at rate or "closed"
// with clients.
func (gb *gatewayBench) step(ctx context.Context, cfg Config, mode string, rate float64, clients int) (GatewayStep, error) {
	r := gb.r
	payload := []byte(`{"q":"` + strings.Repeat("x", max(cfg.PayloadBytes-8, 0)) + `"}`)
	var (
		mu     sync.Mutex
		hist   *hdrhistogram.Histogram
		ok     int
		other  int
		ids    []string
		behind time.Duration
		codes  = map[int]int{}
	)
	run := func(d time.Duration, track bool) error {
		record := func(id string, intended time.Time, good bool, status int) {
			mu.Lock()
			defer mu.Unlock()
			if !track {
				return
			}
			codes[status]++
			_ = hist.RecordValue(max(time.Since(intended).Microseconds(), 1))
			if good {
				ok++
			} else {
				other++
			}
		}
		next := func(intended time.Time) string {
			id := "g" + strconv.FormatInt(r.seq.Add(1), 10)
			if track {
				r.track.expect(id, intended)
				mu.Lock()
				ids = append(ids, id)
				mu.Unlock()
			}
			return id
		}
		var wg sync.WaitGroup
		if mode == "open" {
			sched := load.NewSchedule(rate)
			for i := range int(d.Seconds() * rate) {
				late, err := sched.Wait(ctx, i)
				if err != nil {
					return err
				}
				if track {
					behind = max(behind, late)
				}
				intended := sched.Due(i)
				id := next(intended)
				wg.Add(1)
				go func() {
					defer wg.Done()
					good, status := gb.call(ctx, id, payload)
					record(id, intended, good, status)
				}()
			}
		} else {
			end := time.Now().Add(d)
			for range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for time.Now().Before(end) && ctx.Err() == nil {
						start := time.Now()
						id := next(start)
						good, status := gb.call(ctx, id, payload)
						record(id, start, good, status)
					}
				}()
			}
		}
		wg.Wait()
		return ctx.Err()
	}
	r.track.begin(0)
	if err := run(cfg.Warmup, false); err != nil {
		return GatewayStep{}, err
	}
	expected := int(rate * cfg.Window.Seconds())
	r.track.begin(expected)
	hist = hdrhistogram.New(1, 600_000_000, 3)
	gb.mu.Lock()
	gb.firstErr = ""
	gb.mu.Unlock()
	start := time.Now()
	if err := run(cfg.Window, true); err != nil {
		return GatewayStep{}, err
	}
	elapsed := time.Since(start)
	if err := r.await(ctx, time.Now().Add(10*time.Second), ids); err != nil {
		return GatewayStep{}, err
	}
	r.track.mu.Lock()
	st := GatewayStep{Mode: mode, Rate: rate, Clients: clients, Achieved: float64(len(ids)) / elapsed.Seconds(),
		Sent: len(ids), OK: ok, Other: other, Statuses: codes, Aggregates: r.track.got, Duplicates: r.col.Duplicates(),
		Client: summarize(hist), Pipeline: summarize(r.track.hist), BehindMs: float64(behind.Microseconds()) / 1000}
	r.track.mu.Unlock()
	gb.mu.Lock()
	st.FirstError = gb.firstErr
	gb.mu.Unlock()
	st.Sustainable = st.OK == st.Sent && st.Client.P99 < 2000 && (mode == "closed" || behind < 200*time.Millisecond)
	return st, nil
}

// WriteGatewayTable writes gateway results as a readable table.
func WriteGatewayTable(w io.Writer, rs []*GatewayResult) {
	if len(rs) == 0 {
		return
	}
	fmt.Fprintf(w, "\n%-28s %-10s %9s %9s %10s %10s %12s %12s %6s\n", "gateway scenario", "load", "req/s", "ok/sent", "client p50", "client p99", "pipeline p50", "pipeline p99", "dups")
	for _, r := range rs {
		for _, st := range r.Steps {
			load := fmt.Sprintf("open %.0f/s", st.Rate)
			if st.Mode == "closed" {
				load = fmt.Sprintf("closed %dc", st.Clients)
			}
			fmt.Fprintf(w, "%-28s %-10s %9.0f %4d/%-4d %8.1fms %8.1fms %10.1fms %10.1fms %6d\n", r.Scenario.Name, load,
				st.Achieved, st.OK, st.Sent, st.Client.P50, st.Client.P99, st.Pipeline.P50, st.Pipeline.P99, st.Duplicates)
		}
		if r.Knee > 0 {
			fmt.Fprintf(w, "%-28s knee (highest sustainable open-loop rate): %.0f req/s\n", r.Scenario.Name, r.Knee)
		}
	}
}
