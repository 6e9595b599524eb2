package kafka

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/pprof"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scattergather/scattergather/processor/topology"
)

type flaky struct {
	errs    []error // returned by successive runs; then it blocks until ctx ends
	runs    int
	ready   chan struct{}
	running chan struct{} // closed when a run stops failing
}

func (f *flaky) Run(ctx context.Context) error {
	f.runs++
	if f.runs <= len(f.errs) {
		return f.errs[f.runs-1]
	}
	close(f.running)
	<-ctx.Done()
	return nil
}

func (f *flaky) Ready() <-chan struct{} { return f.ready }

func TestSuperviseRestartsTransientFailures(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &flaky{errs: []error{errors.New("broker gone"), fmt.Errorf("end transaction: %w", kerr.RequestTimedOut)}, running: make(chan struct{})}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		start := time.Now()
		go func() { done <- Supervise(ctx, r) }()
		<-r.running // the fake clock runs through the backoffs meanwhile
		if r.runs != 3 {
			t.Fatalf("%d runs, want 3 (two failures, then running)", r.runs)
		}
		// Backoffs of 500ms then 1s.
		if waited := time.Since(start); waited != 1500*time.Millisecond {
			t.Errorf("restarted after %s of backoff, want 1.5s", waited)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Supervise returned %v after ctx ended", err)
		}
	})
}

func TestSuperviseStopsOnPermanentFailures(t *testing.T) {
	for _, err := range []error{
		&PermanentError{Err: errors.New("lock held")},
		fmt.Errorf("check: %w", &TopicError{Topic: "x", Problem: "does not exist"}),
		fmt.Errorf("end: %w", kerr.ProducerFenced),
	} {
		r := &flaky{errs: []error{err}}
		got := Supervise(context.Background(), r)
		if !errors.Is(got, err) && got.Error() != err.Error() || r.runs != 1 {
			t.Errorf("%v: Supervise returned %v after %d runs, want it at once", err, got, r.runs)
		}
	}
}

func TestRoleOfNamesRoleAndFlow(t *testing.T) {
	f := &topology.Flow{Name: "flights"}
	sc := NewScatter(&topology.Topology{}, f, WithLogger(slog.New(slog.DiscardHandler)))
	if rl := roleOf(sc); rl.name != RoleScatter || rl.flow != "flights" {
		t.Errorf("roleOf(scatter) = %s/%s, want scatter/flights", rl.name, rl.flow)
	}
	if rl := roleOf(&flaky{}); rl.name != "*kafka.flaky" || rl.flow != "" {
		t.Errorf("roleOf(a runner of another type) = %s/%s, want its type and no flow", rl.name, rl.flow)
	}
}

// labelled records the profiler label role its Run sees.
type labelled struct{ role string }

func (l *labelled) Run(ctx context.Context) error {
	l.role, _ = pprof.Label(ctx, "role")
	return nil
}

func (l *labelled) Ready() <-chan struct{} { return nil }

func TestSuperviseLabelsTheRole(t *testing.T) {
	r := &labelled{}
	if err := Supervise(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	if r.role != "*kafka.labelled" {
		t.Errorf("Run saw the profiler label role=%q, want the runner's role", r.role)
	}
}

func TestReadinessLogsChanges(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	r := newReadiness(1, log)
	for _, st := range []Status{
		{Detail: "waiting for partitions of f.results"},
		{Detail: "waiting for partitions of f.results"},
		{Detail: "rebuilding the state of 1 partition(s)"},
		{Ready: true},
		{Ready: true},
		{Detail: "catching up: 5000 records behind"},
		{Detail: "catching up: 4000 records behind"},
		{Ready: true},
	} {
		r.observe(st)
	}
	want := `level=INFO msg="not ready yet" why="waiting for partitions of f.results"
level=INFO msg="not ready yet" why="rebuilding the state of 1 partition(s)"
level=INFO msg=ready
level=WARN msg="not ready" why="catching up: 5000 records behind"
level=INFO msg=ready
`
	if got := buf.String(); got != want {
		t.Errorf("log:\n%s\nwant:\n%s", got, want)
	}
}

type folded struct{ got []string }

func (f *folded) OnResultFolded(flow, target string, ok bool) {
	f.got = append(f.got, fmt.Sprintf("%s/%s/%v", flow, target, ok))
}

// Target labels are bounded by the topology: a made-up target in a
// manifest does not make a new series.
func TestFoldObserverBoundsTargets(t *testing.T) {
	rec := &folded{}
	o := newFoldObserver(hooks{rec}, &topology.Flow{Name: "f", Targets: []*topology.Target{{Name: "a"}, {Name: "b"}}})
	o.ResultFolded("a", true)
	o.ResultFolded("made-up-1", false)
	o.ResultFolded("made-up-2", true)
	want := []string{"f/a/true", "f/_other/false", "f/_other/true"}
	if !slices.Equal(rec.got, want) {
		t.Errorf("hooks told %v, want %v", rec.got, want)
	}
}

// Readiness says what is wrong while the brokers do not serve the role:
// fetch errors, until a clean poll, and a transaction they have not
// acknowledged for a while.
func TestReadinessWhileTheBrokersDoNotServe(t *testing.T) {
	r := newReadiness(1, slog.New(slog.DiscardHandler))
	failing := kgo.Fetches{{Topics: []kgo.FetchTopic{{Topic: "t", Partitions: []kgo.FetchPartition{{Partition: 0, Err: errors.New("unable to dial: connection refused")}}}}}}
	r.polled(failing)
	if got := r.troubled(); !strings.Contains(got, "waiting for the brokers: unable to dial") {
		t.Errorf("after a failing poll: %q", got)
	}
	r.polled(kgo.Fetches{})
	if got := r.troubled(); got != "" {
		t.Errorf("after a clean poll: %q", got)
	}
	r.transaction(true)
	if got := r.troubled(); got != "" {
		t.Errorf("a transaction just begun: %q", got)
	}
	r.txnSince.Store(time.Now().Add(-time.Minute).UnixMilli())
	if got := r.troubled(); !strings.Contains(got, "a transaction has waited 1m0s for the brokers") {
		t.Errorf("a transaction waiting a minute: %q", got)
	}
	r.transaction(false)
	if got := r.troubled(); got != "" {
		t.Errorf("after the transaction: %q", got)
	}
}
