package bench

import (
	"bytes"
	"context"
	"math"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sync"
	"testing"
	"time"

	"github.com/google/pprof/profile"
)

func TestSplitByRole(t *testing.T) {
	fn := &profile.Function{ID: 1, Name: "work"}
	loc := &profile.Location{ID: 1, Line: []profile.Line{{Function: fn}}}
	sample := func(ns int64, role string) *profile.Sample {
		s := &profile.Sample{Location: []*profile.Location{loc}, Value: []int64{1, ns}}
		if role != "" {
			s.Label = map[string][]string{"role": {role}, "flow": {"f"}}
		}
		return s
	}
	p := &profile.Profile{
		SampleType: []*profile.ValueType{{Type: "samples", Unit: "count"}, {Type: "cpu", Unit: "nanoseconds"}},
		PeriodType: &profile.ValueType{Type: "cpu", Unit: "nanoseconds"}, Period: 10_000_000,
		Function: []*profile.Function{fn}, Location: []*profile.Location{loc},
		Sample: []*profile.Sample{
			sample(10e6, "scatter"), sample(20e6, "gather"), sample(30e6, "gather"),
			sample(40e6, "worker"), sample(50e6, ""), sample(60e6, "scatter"),
		},
	}
	var buf bytes.Buffer
	if err := p.Write(&buf); err != nil {
		t.Fatal(err)
	}
	parsed, err := profile.Parse(&buf)
	if err != nil {
		t.Fatal(err)
	}
	got, err := splitByRole(parsed)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]time.Duration{"scatter": 70 * time.Millisecond, "gather": 50 * time.Millisecond, "worker": 40 * time.Millisecond, roleOther: 50 * time.Millisecond}
	if len(got) != len(want) {
		t.Errorf("split = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %v, want %v", k, got[k], v)
		}
	}
	p.SampleType = []*profile.ValueType{{Type: "alloc_space", Unit: "bytes"}, {Type: "inuse_space", Unit: "bytes"}}
	if _, err := splitByRole(p); err == nil {
		t.Error("a profile without cpu samples split without an error")
	}
}

// The meter's profile sees the labels of a goroutine that a labelled
// goroutine started, as the roles' Kafka clients are.
func TestMeterSplitsInheritedLabels(t *testing.T) {
	if _, ok := procCPU("self"); !ok {
		t.Skip("no /proc/self/stat")
	}
	m := startMeter(true, 0)
	if m.prof == nil {
		t.Skip("the profiler is busy")
	}
	var wg sync.WaitGroup
	pprof.Do(context.Background(), pprof.Labels("role", "gather"), func(context.Context) {
		wg.Go(func() {
			// Burn until the process used 300 ms of CPU: about 30 samples.
			start, _ := procCPU("self")
			for x := 1.0; ; x = math.Sqrt(x + 1) {
				if now, ok := procCPU("self"); !ok || now-start >= 300*time.Millisecond {
					return
				}
			}
		})
	})
	wg.Wait()
	kept := filepath.Join(t.TempDir(), "window.pprof")
	c := m.stop(10, kept)
	if !c.Profiled || c.Gather <= 0 || c.Process <= 0 {
		t.Fatalf("cpu %+v, want the gather's share and the process's time", c)
	}
	if c.Gather < c.Other+c.Scatter+c.Workers {
		t.Errorf("cpu %+v: the goroutine labelled gather burned most of the CPU, yet gather is not the most of it", c)
	}
	if _, _, g := c.Shares(); g != 1 {
		t.Errorf("gather's share of the roles = %v, want 1", g)
	}
	// The window's profile is kept as it was split.
	fh, err := os.Open(kept)
	if err != nil {
		t.Fatalf("the window's profile was not kept: %v (%s)", err, c.ProfileError)
	}
	defer fh.Close()
	p, err := profile.Parse(fh)
	if err != nil {
		t.Fatal(err)
	}
	by, err := splitByRole(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := float64(by["gather"].Microseconds()) / 10; got != c.Gather {
		t.Errorf("the kept profile has %v µs/request of gather, the split %v", got, c.Gather)
	}
}

func TestProfilePath(t *testing.T) {
	r := &runner{cfg: &Config{ProfileDir: "/p", Instances: 2}, sc: Scenario{Name: "fanout 3, all, 5-50ms, fixed 64"}}
	if got, want := r.profilePath(1500), "/p/fanout-3-all-5-50ms-fixed-64-2x-1500.pprof"; got != want {
		t.Errorf("profilePath = %q, want %q", got, want)
	}
	r.cfg.ProfileDir = ""
	if got := r.profilePath(1500); got != "" {
		t.Errorf("without a directory, profilePath = %q, want none", got)
	}
}

func TestParseStat(t *testing.T) {
	// The command may hold spaces and parentheses.
	line := "4855 (java (x) y) S 1 4855 4855 0 -1 4194560 171245 0 12 0 1234 567 0 0 20 0 80 0 1000 6000000000 300000\n"
	d, err := parseStat(line)
	if err != nil {
		t.Fatal(err)
	}
	if want := (1234 + 567) * clockTick; d != want {
		t.Errorf("parseStat = %v, want %v", d, want)
	}
	for _, bad := range []string{"", "4855 java S 1", "1 (x) S 1 2", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 u s"} {
		if _, err := parseStat(bad); err == nil {
			t.Errorf("parseStat(%q) gave no error", bad)
		}
	}
	if d, ok := procCPU("self"); !ok || d < 0 {
		t.Errorf("procCPU(self) = %v, %v", d, ok)
	}
}

func TestRepeated(t *testing.T) {
	for _, tc := range []struct {
		runs           []float64
		median, spread float64
	}{
		{nil, 0, 0},
		{[]float64{100}, 100, 0},
		{[]float64{300, 100, 200}, 200, 1},
		{[]float64{400, 100, 300, 200}, 250, 300.0 / 250},
		{[]float64{0, 0}, 0, 0},
	} {
		r := newRepeated(tc.runs)
		if r.Median != tc.median || math.Abs(r.Spread-tc.spread) > 1e-12 {
			t.Errorf("newRepeated(%v) = median %v spread %v, want %v, %v", tc.runs, r.Median, r.Spread, tc.median, tc.spread)
		}
		if len(tc.runs) > 1 && tc.runs[0] != r.Runs[0] {
			t.Errorf("newRepeated(%v) reordered the runs: %v", tc.runs, r.Runs)
		}
	}
}

func TestReportBrokerLimit(t *testing.T) {
	sc := &ScenarioResult{Scenario: Scenario{Fanout: 3}, MaxSustainable: 1000}
	r := &Report{Scenarios: []*ScenarioResult{sc}}
	r.SetBrokerLimit(&BrokerLimit{Repeated: newRepeated([]float64{90_000, 100_000, 110_000}), RecordBytes: 200}, false)
	if r.Raw != 100_000 || r.RawSize != 200 || math.Abs(sc.Efficiency-0.09) > 1e-12 {
		t.Errorf("after the start: raw %v (%d bytes), efficiency %v; want 100000, 200, 0.09", r.Raw, r.RawSize, sc.Efficiency)
	}
	if w := r.Warnings(); len(w) != 1 || !bytes.Contains([]byte(w[0]), []byte("start spreads by 20 %")) {
		t.Errorf("warnings %q, want the start's spread of 20 %%", w)
	}
	// The end: the median of all six runs, and the move from the start.
	r.SetBrokerLimit(&BrokerLimit{Repeated: newRepeated([]float64{60_000, 61_000, 62_000}), RecordBytes: 200}, true)
	if r.Raw != (62_000+90_000)/2 || math.Abs(sc.Efficiency-9000/r.Raw) > 1e-12 {
		t.Errorf("after the end: raw %v, efficiency %v; want the median of both runs' 76000 and 9000 ÷ it", r.Raw, sc.Efficiency)
	}
	if w := r.Warnings(); len(w) != 2 || !bytes.Contains([]byte(w[1]), []byte("moved by -39 %")) {
		t.Errorf("warnings %q, want the start's spread and the move of -39 %%", w)
	}
	var buf bytes.Buffer
	r.WriteTable(&buf)
	for _, want := range []string{"start median    100000 records/s, spread  20 %", "end   median     61000", "efficiency uses 76000", "WARNING: the broker limit moved"} {
		if !bytes.Contains(buf.Bytes(), []byte(want)) {
			t.Errorf("table lacks %q:\n%s", want, buf.String())
		}
	}
}
