package faults

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scattergather/scattergather/internal/processortest"
	"github.com/scattergather/scattergather/internal/proctest"
	"github.com/scattergather/scattergather/schemas"
)

// newPipeline is the single-broker pipeline: the flow's timeout, and the
// target that hangs ("" for none).
func newPipeline(t *testing.T, brokers []string, timeout string, hang string) *proctest.Pipeline {
	t.Helper()
	return proctest.New(t, proctest.Config{Brokers: brokers, Prefix: "f", Timeout: timeout, Hang: hang})
}

const (
	requests = 300
	rate     = 60.0
	faultAt  = 90 // requests sent before the fault
)

// p50 is the median request→aggregate latency of requests sent well
// before the fault.
func p50(p *proctest.Pipeline, fault time.Time) time.Duration {
	p50, _ := p.Latency(time.Time{}, fault.Add(-time.Second))
	return p50
}

func TestIntegrationFaults(t *testing.T) {
	brokers := processortest.Brokers(t)
	proctest.Binary(t)
	type scenario struct {
		name  string
		setup func(p *proctest.Pipeline) map[string]*proctest.Proc
		fault func(p *proctest.Pipeline, ps map[string]*proctest.Proc)
	}
	standard := func(p *proctest.Pipeline) map[string]*proctest.Proc {
		return map[string]*proctest.Proc{
			"scatter": p.Start("scatter", "scatter", "s1"),
			"worker":  p.Start("worker", "worker", "w1"),
			"gather":  p.Start("gather", "gather", "g1", "--state-dir", filepath.Join(p.Dir, "state-g1")),
		}
	}
	killRestart := func(name string, extra ...string) func(p *proctest.Pipeline, ps map[string]*proctest.Proc) {
		return func(p *proctest.Pipeline, ps map[string]*proctest.Proc) {
			ps[name].Kill()
			ps[name] = p.Restart(ps[name], extra...)
		}
	}
	scenarios := []scenario{
		{"gather kill -9, same state", standard, killRestart("gather")},
		{"gather kill -9, empty state", standard, func(p *proctest.Pipeline, ps map[string]*proctest.Proc) {
			ps["gather"].Kill()
			ps["gather"] = p.Restart(ps["gather"], "--state-dir", filepath.Join(p.Dir, "state-empty"))
		}},
		{"scatter kill -9", standard, killRestart("scatter")},
		{"worker kill -9", standard, killRestart("worker")},
		{"SIGTERM of every role, then restart", standard, func(p *proctest.Pipeline, ps map[string]*proctest.Proc) {
			var took []string
			for _, name := range []string{"scatter", "worker", "gather"} {
				d, err := ps[name].Term(p.T)
				if err != nil {
					p.T.Fatal(err)
				}
				took = append(took, fmt.Sprintf("%s %s", name, d.Round(10*time.Millisecond)))
				ps[name] = p.Restart(ps[name])
			}
			p.T.Logf("graceful shutdown took: %s", strings.Join(took, ", "))
		}},
		{"two gathers, one killed; a third joins", func(p *proctest.Pipeline) map[string]*proctest.Proc {
			ps := standard(p)
			ps["gather2"] = p.Start("gather2", "gather", "g2", "--state-dir", filepath.Join(p.Dir, "state-g2"))
			return ps
		}, func(p *proctest.Pipeline, ps map[string]*proctest.Proc) {
			before := ps["gather2"].CountLog("partition assigned")
			ps["gather"].Kill()
			// The survivor takes the dead instance's partitions once its
			// session times out; then a new instance joins and partitions
			// move again while requests are open.
			g2 := ps["gather2"]
			joined := make(chan struct{})
			p.T.Cleanup(func() { <-joined })
			go func() {
				defer close(joined)
				if g2.WaitLog("partition assigned", before+1, time.Minute) {
					p.Start("gather3", "gather", "g3", "--state-dir", filepath.Join(p.Dir, "state-g3"))
				}
			}()
		}},
	}
	if script := os.Getenv("SG_KAFKA_SCRIPT"); script != "" {
		scenarios = append(scenarios, scenario{"broker stopped and restarted", standard, func(*proctest.Pipeline, map[string]*proctest.Proc) {
			start := time.Now()
			out, err := exec.Command(script, "restart").CombinedOutput()
			if err != nil {
				t.Errorf("broker restart: %v\n%s", err, out)
			}
			t.Logf("broker stopped and restarted in %s (scripts/kafka.sh restart)", time.Since(start).Round(10*time.Millisecond))
		}})
	} else if os.Getenv(processortest.EnvRequire) != "" {
		t.Errorf("SG_KAFKA_SCRIPT is not set: the broker-restart fault cannot run")
	}

	var report []string
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			p := newPipeline(t, brokers, "40s", "")
			ps := sc.setup(p)
			var faultTime time.Time
			p.Load(requests, rate, map[int]func(){faultAt: func() {
				sc.fault(p, ps)
				// Recovery counts from the end of the fault's action: at once
				// for a kill, once the broker is back for a restart.
				faultTime = time.Now()
			}})
			p.Check(requests)
			line := fmt.Sprintf("%-40s %d requests, %d aggregates, exactly once; p50 before %s; recovery %s",
				sc.name, requests, requests, p50(p, faultTime), p.Recovery(faultTime))
			t.Log(line)
			report = append(report, line)
		})
	}
	t.Run("provider hangs forever", func(t *testing.T) {
		p := newPipeline(t, brokers, "2s", "c")
		standard(p)
		const n = 60
		p.Load(n, 30, nil)
		aggs := processortest.Aggregates(t, p.Topo, p.Flow, n, 2*time.Minute)
		var worst int64
		for id, a := range aggs {
			if a.Outcome != schemas.OutcomeTimeout || len(a.Missing) != 1 || a.Missing[0].Target != "c" {
				t.Errorf("%s: outcome %s missing %v", id, a.Outcome, a.Missing)
			}
			worst = max(worst, a.CompletedMs-a.DeadlineMs)
		}
		line := fmt.Sprintf("%-40s %d requests, %d aggregates (timeout, c missing); latest completion %d ms after the deadline (log time)", "provider hangs forever", n, len(aggs), worst)
		t.Log(line)
		report = append(report, line)
	})
	t.Logf("fault report:\n%s", strings.Join(report, "\n"))
}
