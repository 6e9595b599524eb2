package worker_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scattergather/scattergather/processor/topology"
	"github.com/scattergather/scattergather/processor/worker"
	"github.com/scattergather/scattergather/schemas"
)

// hedgeEvents records a hedge's events; on, if set, is told each too.
type hedgeEvents struct {
	mu   sync.Mutex
	list []string
	on   func(worker.HedgeEvent)
}

func (e *hedgeEvents) record(ev worker.HedgeEvent) {
	e.mu.Lock()
	e.list = append(e.list, ev.String())
	on := e.on
	e.mu.Unlock()
	if on != nil {
		on(ev)
	}
}

func (e *hedgeEvents) String() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return strings.Join(e.list, ",")
}

// slowCall answers a call made after the warm-up; backup tells the
// hedge's backup call from its primary.
type slowCall func(ctx context.Context, backup bool) ([]byte, error)

// warmHedge returns a handler hedged by a hedge of budget 1 and min_delay
// 1ms (unless cfg says otherwise) that has seen the fast calls it needs:
// the calls after those are answered by slow.
func warmHedge(t *testing.T, cfg *topology.Hedge, slow slowCall, mw ...worker.Middleware) (worker.Handler, *hedgeEvents) {
	t.Helper()
	if cfg == nil {
		cfg = &topology.Hedge{Quantile: 0.5, Budget: 1, Window: 100, MinDelay: topology.Duration{D: time.Millisecond}}
	}
	events := &hedgeEvents{}
	var warm atomic.Bool
	inner := worker.HandlerFunc(func(ctx context.Context, _ *schemas.Task) ([]byte, error) {
		if !warm.Load() {
			return []byte(`{"warm":true}`), nil
		}
		return slow(ctx, worker.Endpoint(ctx, 2) == 1)
	})
	h := worker.Chain(inner, append([]worker.Middleware{worker.NewHedge(*cfg, events.record).Middleware()}, mw...)...)
	for range topology.MinHedgeSamples {
		if _, err := h.Handle(t.Context(), task(time.Now().Add(time.Hour))); err != nil {
			t.Fatal(err)
		}
	}
	warm.Store(true)
	if got := events.String(); got != "" {
		t.Fatalf("events %q during the warm-up", got)
	}
	return h, events
}

// TestHedgeBackupWins: a primary that does not answer gets a backup
// call, with the same task, counted as an attempt; the backup's answer is
// kept and the primary is cancelled with ErrHedged.
func TestHedgeBackupWins(t *testing.T) {
	primaryCause := make(chan error, 1)
	var keys sync.Map
	h, events := warmHedge(t, nil, func(ctx context.Context, backup bool) ([]byte, error) {
		if backup {
			return []byte(`{"from":"backup"}`), nil
		}
		<-ctx.Done()
		primaryCause <- context.Cause(ctx)
		return nil, fmt.Errorf("provider call failed: %w", ctx.Err())
	}, worker.Middleware(func(next worker.Handler) worker.Handler {
		return worker.HandlerFunc(func(ctx context.Context, tk *schemas.Task) ([]byte, error) {
			keys.Store(tk.TaskID, true)
			return next.Handle(ctx, tk)
		})
	}))
	res := worker.Execute(t.Context(), h, task(time.Now().Add(time.Hour)), "w", time.Now)
	if res.Status != schemas.StatusOK || string(res.Payload) != `{"from":"backup"}` || res.Attempts != 2 {
		t.Fatalf("got %s %q (%s) after %d attempts, want the backup's answer after 2", res.Status, res.Payload, res.Error, res.Attempts)
	}
	if cause := <-primaryCause; !errors.Is(cause, worker.ErrHedged) {
		t.Errorf("the primary was cancelled with %v, want ErrHedged", cause)
	}
	if got := events.String(); got != "sent,won" {
		t.Errorf("events %q, want sent,won", got)
	}
	n := 0
	keys.Range(func(k, _ any) bool {
		n++
		if k != "r1/a/2" {
			t.Errorf("a call for task %v", k)
		}
		return true
	})
	if n != 1 {
		t.Errorf("%d task ids, want the one", n)
	}
}

// TestHedgePrimaryWins: a primary that answers after its backup was sent
// is kept, and the backup is cancelled with ErrHedged.
func TestHedgePrimaryWins(t *testing.T) {
	backupStarted := make(chan struct{})
	backupCause := make(chan error, 1)
	h, events := warmHedge(t, nil, func(ctx context.Context, backup bool) ([]byte, error) {
		if !backup {
			<-backupStarted
			return []byte(`{"from":"primary"}`), nil
		}
		close(backupStarted)
		<-ctx.Done()
		backupCause <- context.Cause(ctx)
		return nil, ctx.Err()
	})
	out, err := h.Handle(t.Context(), task(time.Now().Add(time.Hour)))
	if err != nil || string(out) != `{"from":"primary"}` {
		t.Fatalf("got %q, %v; want the primary's answer", out, err)
	}
	if cause := <-backupCause; !errors.Is(cause, worker.ErrHedged) {
		t.Errorf("the backup was cancelled with %v, want ErrHedged", cause)
	}
	if got := events.String(); got != "sent" {
		t.Errorf("events %q, want sent", got)
	}
}

// TestHedgeFailures: when the first call to end failed, the other is
// waited for; when both failed, the primary's error is returned; a
// panicking call is an error, not a crash.
func TestHedgeFailures(t *testing.T) {
	errPrimary, errBackup := errors.New("primary failed"), errors.New("backup failed")
	for _, tc := range []struct {
		name          string
		backupFirst   bool // the backup ends first, else the primary
		primary       error
		backup        error
		panics        bool
		wantOut       string
		wantErr       error
		wantEvents    string
		wantAttempts  int32
		wantErrSubstr string
	}{
		{name: "primary fails, backup answers", primary: errPrimary, wantOut: "backup", wantEvents: "sent,won"},
		{name: "backup fails, primary answers", backupFirst: true, backup: errBackup, wantOut: "primary", wantEvents: "sent"},
		{name: "both fail, primary first", primary: errPrimary, backup: errBackup, wantErr: errPrimary, wantEvents: "sent"},
		{name: "both fail, backup first", backupFirst: true, primary: errPrimary, backup: errBackup, wantErr: errPrimary, wantEvents: "sent"},
		{name: "both panic", panics: true, wantErr: worker.ErrPanic, wantEvents: "sent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			backupStarted, firstDone := make(chan struct{}), make(chan struct{})
			h, events := warmHedge(t, nil, func(ctx context.Context, backup bool) ([]byte, error) {
				if backup {
					close(backupStarted)
				} else {
					<-backupStarted
				}
				first := backup == tc.backupFirst
				if !first {
					<-firstDone
				} else {
					defer close(firstDone)
				}
				if tc.panics {
					panic("provider library bug")
				}
				if backup {
					return []byte("backup"), tc.backup
				}
				return []byte("primary"), tc.primary
			})
			res := worker.Execute(t.Context(), h, task(time.Now().Add(time.Hour)), "w", time.Now)
			if tc.wantErr != nil {
				if res.Status != schemas.StatusError || !strings.Contains(res.Error, tc.wantErr.Error()) {
					t.Errorf("got %s %q, want ERROR %q", res.Status, res.Error, tc.wantErr)
				}
			} else if res.Status != schemas.StatusOK || string(res.Payload) != tc.wantOut {
				t.Errorf("got %s %q (%s), want %q", res.Status, res.Payload, res.Error, tc.wantOut)
			}
			if res.Attempts != 2 {
				t.Errorf("%d attempts, want 2", res.Attempts)
			}
			if got := events.String(); got != tc.wantEvents {
				t.Errorf("events %q, want %q", got, tc.wantEvents)
			}
		})
	}
}

// TestHedgeBudgetExhausted: with a budget of 5%, the 20 calls of the
// warm-up and the next one earn one backup; the call after gets none and
// waits for its primary.
func TestHedgeBudgetExhausted(t *testing.T) {
	exhausted := make(chan struct{})
	var calls atomic.Int32
	cfg := &topology.Hedge{Quantile: 0.5, Budget: 0.05, Window: 100, MinDelay: topology.Duration{D: time.Millisecond}}
	h, events := warmHedge(t, cfg, func(ctx context.Context, backup bool) ([]byte, error) {
		calls.Add(1)
		switch {
		case backup:
			return []byte("backup"), nil
		case calls.Load() == 1: // the first slow call's primary
			<-ctx.Done()
			return nil, ctx.Err()
		default:
			<-exhausted
			return []byte("primary"), nil
		}
	})
	events.on = func(ev worker.HedgeEvent) {
		if ev == worker.HedgeBudgetExhausted {
			close(exhausted)
		}
	}
	for i, want := range []string{"backup", "primary"} {
		res := worker.Execute(t.Context(), h, task(time.Now().Add(time.Hour)), "w", time.Now)
		if string(res.Payload) != want {
			t.Errorf("call %d: %s %q (%s), want %q", i, res.Status, res.Payload, res.Error, want)
		}
	}
	if got := events.String(); got != "sent,won,budget_exhausted" {
		t.Errorf("events %q, want sent,won,budget_exhausted", got)
	}
}

// TestHedgeLoserSparesTheBreaker: a call cut short because the other call
// answered is no failure of the provider: a breaker that opens at the
// first failure stays closed.
func TestHedgeLoserSparesTheBreaker(t *testing.T) {
	var breakerEvents hedgeEvents
	br := worker.NewBreaker(1, time.Hour, func(ev worker.BreakerEvent) {
		breakerEvents.mu.Lock()
		breakerEvents.list = append(breakerEvents.list, ev.String())
		breakerEvents.mu.Unlock()
	})
	legs := make(chan error, 2*topology.MinHedgeSamples) // what the calls returned through the breaker
	after := worker.Middleware(func(next worker.Handler) worker.Handler {
		return worker.HandlerFunc(func(ctx context.Context, tk *schemas.Task) ([]byte, error) {
			out, err := next.Handle(ctx, tk)
			if worker.Endpoint(ctx, 2) == 0 || err != nil {
				legs <- err
			}
			return out, err
		})
	})
	var slow atomic.Bool
	h, _ := warmHedge(t, nil, func(ctx context.Context, backup bool) ([]byte, error) {
		if !backup && slow.Load() {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return []byte("ok"), nil
	}, after, br.Middleware())
	for range topology.MinHedgeSamples {
		<-legs // the warm-up's
	}
	slow.Store(true)
	if out, err := h.Handle(t.Context(), task(time.Now().Add(time.Hour))); err != nil || string(out) != "ok" {
		t.Fatalf("got %q, %v", out, err)
	}
	if err := <-legs; !errors.Is(err, context.Canceled) {
		t.Fatalf("the primary returned %v, want it cancelled", err)
	}
	slow.Store(false)
	if out, err := h.Handle(t.Context(), task(time.Now().Add(time.Hour))); err != nil || string(out) != "ok" {
		t.Errorf("the next call: %q, %v; want it through the breaker", out, err)
	}
	if got := breakerEvents.String(); got != "" {
		t.Errorf("breaker events %q, want none", got)
	}
}

// TestHTTPEndpoints: with http.endpoints the tries of a retry go to each
// endpoint in turn, and a hedge's backup call to the endpoint after its
// primary's, with the same Idempotency-Key; the primary's request is
// cancelled.
func TestHTTPEndpoints(t *testing.T) {
	var hits [2]atomic.Int32
	var hang atomic.Bool
	cut := make(chan string, 1)
	var mu sync.Mutex
	var keys []string
	endpoint := func(i int) *httptest.Server {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits[i].Add(1)
			// Read to the end: the server notices a closed connection, and
			// cancels the request's context, only then.
			_, _ = io.Copy(io.Discard, r.Body)
			mu.Lock()
			keys = append(keys, r.Header.Get("Idempotency-Key"))
			mu.Unlock()
			switch {
			case r.URL.Query().Get("fail") != "":
				http.Error(w, "busy", http.StatusServiceUnavailable)
			case i == 0 && hang.Load():
				<-r.Context().Done()
				cut <- r.Header.Get("Idempotency-Key")
			default:
				fmt.Fprintf(w, `{"endpoint":%d}`, i)
			}
		}))
		t.Cleanup(srv.Close)
		return srv
	}
	a, b := endpoint(0), endpoint(1)

	cfg := httpTarget("")
	cfg.URL, cfg.Retries = "", 4
	cfg.Endpoints = []string{a.URL + "/?fail=1", b.URL + "/?fail=1"}
	res := worker.Execute(t.Context(), worker.HTTPHandler(cfg, nil, nil, nil), task(time.Now().Add(time.Hour)), "w", time.Now)
	if res.Status != schemas.StatusError || res.Attempts != 5 || hits[0].Load() != 3 || hits[1].Load() != 2 {
		t.Fatalf("got %s after %d attempts, %d and %d calls to the endpoints; want ERROR after 5, 3 and 2",
			res.Status, res.Attempts, hits[0].Load(), hits[1].Load())
	}

	hits[0].Store(0)
	hits[1].Store(0)
	cfg = httpTarget("")
	cfg.URL, cfg.MaxResponseBytes = "", 1024
	cfg.Endpoints = []string{a.URL, b.URL}
	events := &hedgeEvents{}
	hedge := worker.NewHedge(topology.Hedge{Quantile: 0.5, Budget: 1, Window: 100, MinDelay: topology.Duration{D: time.Millisecond}}, events.record)
	h := worker.HTTPHandler(cfg, nil, nil, hedge)
	// The warm-up: fast answers of the first endpoint, with a backup now
	// and then to the second.
	for range topology.MinHedgeSamples {
		if res := worker.Execute(t.Context(), h, task(time.Now().Add(time.Hour)), "w", time.Now); res.Status != schemas.StatusOK {
			t.Fatalf("warm-up: %s %s", res.Status, res.Error)
		}
	}
	warmA, warmB := hits[0].Load(), hits[1].Load()
	if warmA != int32(topology.MinHedgeSamples) {
		t.Fatalf("%d calls of the warm-up to the first endpoint, want %d", warmA, topology.MinHedgeSamples)
	}
	hang.Store(true)
	res = worker.Execute(t.Context(), h, task(time.Now().Add(time.Hour)), "w", time.Now)
	if res.Status != schemas.StatusOK || string(res.Payload) != `{"endpoint":1}` || res.Attempts != 2 {
		t.Fatalf("got %s %q (%s) after %d attempts, want the second endpoint's answer after 2", res.Status, res.Payload, res.Error, res.Attempts)
	}
	if key := <-cut; key != "r1/a/2" {
		t.Errorf("the cut request had Idempotency-Key %q", key)
	}
	if hits[0].Load() != warmA+1 || hits[1].Load() != warmB+1 {
		t.Errorf("%d and %d calls to the endpoints after the warm-up, want one each", hits[0].Load()-warmA, hits[1].Load()-warmB)
	}
	mu.Lock()
	defer mu.Unlock()
	if i := slices.IndexFunc(keys, func(k string) bool { return k != "r1/a/2" }); i >= 0 {
		t.Errorf("a call with Idempotency-Key %q", keys[i])
	}
	if !strings.HasSuffix(events.String(), "sent,won") {
		t.Errorf("events %q, want them to end with sent,won", events.String())
	}
}
