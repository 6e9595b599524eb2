package demo

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/scattergather/scattergather/internal/collect"
	"github.com/scattergather/scattergather/processor/kafka"
	"github.com/scattergather/scattergather/processor/topology"
	"github.com/scattergather/scattergather/schemas"
)

// report is what a demo run saw, written once the run is over.
type report struct {
	requests  int
	elapsed   time.Duration
	flow      *topology.Flow
	stats     kafka.GatherStats
	providers []*Provider
	load      *sends
	col       *collect.Collector
}

func (r *report) exactlyOnce() bool {
	r.load.mu.Lock()
	defer r.load.mu.Unlock()
	return r.col.Count() == r.requests && r.col.Duplicates() == 0 && r.load.sendErrs == 0
}

// latency is the histogram of request → aggregate latency in ms: from the
// send to the read_committed read.
func (r *report) latency() *hdrhistogram.Histogram {
	hist := hdrhistogram.New(1, 120_000, 3)
	r.load.mu.Lock()
	defer r.load.mu.Unlock()
	for _, id := range r.load.ids {
		if at, ok := r.col.Arrived(id); ok {
			_ = hist.RecordValue(max(at.Sub(r.load.at[id]).Milliseconds(), 1))
		}
	}
	return hist
}

func (r *report) write(out io.Writer) {
	ids := r.col.IDs()
	aggs := make(map[string]*schemas.Aggregate, len(ids))
	byOutcome := map[schemas.Outcome]int{}
	for _, id := range ids {
		a := r.col.Aggregate(id)
		aggs[id] = a
		byOutcome[a.Outcome]++
	}
	verdict := "exactly one each"
	if !r.exactlyOnce() {
		r.load.mu.Lock()
		verdict = fmt.Sprintf("MISSING %d, DUPLICATES %d, SEND ERRORS %d", r.requests-len(ids), r.col.Duplicates(), r.load.sendErrs)
		r.load.mu.Unlock()
	}
	fmt.Fprintf(out, "\n%d requests -> %d aggregates (%s) in %.1fs\n\n", r.requests, len(ids), verdict, r.elapsed.Seconds())
	fmt.Fprintln(out, "aggregates by outcome:")
	for _, o := range []schemas.Outcome{schemas.OutcomeComplete, schemas.OutcomeFirst, schemas.OutcomeQuorum, schemas.OutcomeDeadline, schemas.OutcomeTimeout, schemas.OutcomeFailed} {
		if c := byOutcome[o]; c > 0 {
			fmt.Fprintf(out, "  %-9s %5d  %s\n", o, c, outcomeNote(o))
		}
	}
	hist := r.latency()
	fmt.Fprintf(out, "\nrequest -> aggregate latency (send to read_committed read): p50 %d ms, p90 %d ms, p99 %d ms, max %d ms\n",
		hist.ValueAtQuantile(50), hist.ValueAtQuantile(90), hist.ValueAtQuantile(99), hist.Max())
	fmt.Fprintf(out, "late results: %d (answers after their deadline, in %s); dead letters: %d; ticks written: %d\n",
		r.stats.Late, r.flow.Topics.Late, r.stats.DeadLettered, r.stats.Ticks)
	var calls []string
	for _, p := range r.providers {
		calls = append(calls, p.callCount())
	}
	fmt.Fprintf(out, "provider calls: %s\n", strings.Join(calls, ", "))

	fmt.Fprintln(out, "\na few consolidated events:")
	for _, id := range sample(ids, aggs) {
		b, _ := json.Marshal(summaryOf(aggs[id]))
		fmt.Fprintf(out, "  %s\n", b)
	}
}

func outcomeNote(o schemas.Outcome) string {
	switch o {
	case schemas.OutcomeComplete:
		return "every provider answered (OK or error) before the deadline"
	case schemas.OutcomeTimeout:
		return "a provider had not answered at the deadline; the cheapest offer that arrived is kept"
	case schemas.OutcomeFailed:
		return "every provider failed"
	}
	return ""
}

// sample picks a few aggregates that show different outcomes.
func sample(order []string, aggs map[string]*schemas.Aggregate) []string {
	var out []string
	seen := map[schemas.Outcome]int{}
	for _, id := range order {
		o := aggs[id].Outcome
		if seen[o] < 2 && len(out) < 4 {
			seen[o]++
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

type eventSummary struct {
	RequestID string          `json:"request_id"`
	Outcome   string          `json:"outcome"`
	Reason    string          `json:"reason,omitempty"`
	Result    json.RawMessage `json:"result"`
	Answered  []string        `json:"answered"`
	Failed    []string        `json:"failed,omitempty"`
	Missing   []string        `json:"missing,omitempty"`
	TookMs    int64           `json:"took_ms"`
}

func summaryOf(a *schemas.Aggregate) eventSummary {
	s := eventSummary{RequestID: a.RequestID, Outcome: string(a.Outcome), Reason: a.Reason, Result: a.Result, TookMs: a.CompletedMs - a.OpenedMs, Answered: []string{}}
	for _, x := range a.Answered {
		s.Answered = append(s.Answered, x.Target)
	}
	for _, x := range a.Failed {
		s.Failed = append(s.Failed, x.Target+": "+x.Error)
	}
	for _, x := range a.Missing {
		s.Missing = append(s.Missing, x.Target)
	}
	return s
}
