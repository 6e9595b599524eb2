package cluster

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scattergather/scattergather/internal/proctest"
)

const rate = 25.0 // requests per second

// at is the index of the request sent sec seconds into the load.
func at(sec float64) int { return int(sec * rate) }

// report collects one line per scenario, logged at the end.
type report struct {
	mu    sync.Mutex
	lines []string
}

func (r *report) add(t *testing.T, format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	t.Log(line)
	r.mu.Lock()
	r.lines = append(r.lines, line)
	r.mu.Unlock()
}

func TestIntegrationCluster(t *testing.T) {
	c := openCluster(t)
	proctest.Binary(t)
	var rep report
	defer func() { t.Logf("cluster fault report:\n%s", strings.Join(rep.lines, "\n")) }()

	// killAndRestart kills node pick() 4 s into a 30 s load and starts it
	// again 2 s later (in the background: the load goes on).
	killAndRestart := func(t *testing.T, name string, pick func(p *proctest.Pipeline) (int32, string)) {
		c.heal(t)
		p := newPipeline(t, c)
		standard(p)
		n := at(30)
		var node int32
		var what string
		var faultAt, backAt time.Time
		p.Load(n, rate, map[int]func(){
			at(4): func() {
				node, what = pick(p)
				c.kill(t, node)
				faultAt = time.Now()
			},
			at(6): func() {
				p.Go(func() {
					c.startNode(t, node)
					backAt = time.Now()
				})
			},
		})
		check(p, n)
		p50, _ := p.Latency(time.Time{}, faultAt.Add(-time.Second))
		rep.add(t, "%-34s node %d (%s): %d requests exactly once; p50 before %s; recovery after kill %s, after restart %s",
			name, node, what, n, p50, p.Recovery(faultAt), p.Recovery(backAt))
	}

	t.Run("leader of the most results partitions kill -9", func(t *testing.T) {
		killAndRestart(t, "results leader kill -9", func(p *proctest.Pipeline) (int32, string) {
			counts := c.leaders(t, p.Flow.Topics.Results)
			var best int32 = -1
			for _, n := range c.nodes {
				if best < 0 || counts[n] > counts[best] {
					best = n
				}
			}
			return best, fmt.Sprintf("leads %d of %d results partitions", counts[best], p.Flow.Partitions)
		})
	})

	t.Run("gather transaction coordinator kill -9", func(t *testing.T) {
		killAndRestart(t, "transaction coordinator kill -9", func(p *proctest.Pipeline) (int32, string) {
			txnID := p.Topo.Group(p.Flow, "gather") + ".g1"
			adm := c.admin(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			co := adm.FindTxnCoordinators(ctx, txnID)[txnID]
			if co.Err != nil {
				t.Fatalf("find the coordinator of %s: %v", txnID, co.Err)
			}
			state := "?"
			if d, err := adm.DescribeTransactions(ctx, txnID); err == nil {
				if s, ok := d[txnID]; ok && s.Err == nil {
					state = s.State
				}
			}
			return co.NodeID, fmt.Sprintf("coordinates %s, state %s", txnID, state)
		})
	})

	t.Run("gather group coordinator kill -9", func(t *testing.T) {
		killAndRestart(t, "group coordinator kill -9", func(p *proctest.Pipeline) (int32, string) {
			group := p.Topo.Group(p.Flow, "gather")
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			co := c.admin(t).FindGroupCoordinators(ctx, group)[group]
			if co.Err != nil {
				t.Fatalf("find the coordinator of %s: %v", group, co.Err)
			}
			return co.NodeID, "coordinates " + group
		})
	})

	t.Run("two brokers down", func(t *testing.T) {
		c.heal(t)
		p := newPipeline(t, c)
		ps := standard(p)
		n := at(40) // two down at 4 s, one back at 14 s, the other at 24 s
		down := []int32{c.nodes[0], c.nodes[1]}
		var faultAt, backAt, upAt time.Time
		var ready readyLog
		stopWatch := make(chan struct{})
		p.Load(n, rate, map[int]func(){
			at(4): func() {
				c.kill(t, down[0])
				c.kill(t, down[1])
				faultAt = time.Now()
				p.Go(func() {
					ready.watch(ps, stopWatch)
				})
			},
			at(14): func() {
				backAt = time.Now()
				close(stopWatch)
				p.Go(func() {
					c.startNode(t, down[0])
					upAt = time.Now()
				})
			},
			at(24): func() {
				p.Go(func() {
					c.startNode(t, down[1])
				})
			},
		})
		check(p, n)
		// Nothing is acknowledged, nor aggregated, on one broker: a request
		// sent while two were down is acknowledged, and its aggregate read,
		// only once a second node is back.
		acked := p.Acked()
		early := 0
		for id, at := range p.Sent() {
			if !at.After(faultAt) {
				continue
			}
			if a := acked[id]; a.Before(backAt) {
				early++
				if early <= 5 {
					t.Errorf("%s sent %s after two nodes were down, acknowledged %s before one returned", id, at.Sub(faultAt), backAt.Sub(a))
				}
			}
			if r, _ := p.Col.Arrived(id); r.Before(backAt) {
				early++
				if early <= 5 {
					t.Errorf("%s sent %s after two nodes were down, aggregated before one returned", id, at.Sub(faultAt))
				}
			}
		}
		t.Logf("/readyz while two nodes were down:\n%s", ready.String())
		rep.add(t, "%-34s nodes %d and %d for %s: %d requests exactly once, none acknowledged on one node; recovery after the kill %s, after the first node serves again %s",
			"two of three brokers kill -9", down[0], down[1], upAt.Sub(faultAt).Round(100*time.Millisecond), n, p.Recovery(faultAt), p.Recovery(upAt))
	})

	t.Run("rebalance storm", func(t *testing.T) {
		c.heal(t)
		p := newPipeline(t, c)
		seed := uint64(time.Now().UnixNano())
		if s := os.Getenv("SG_STORM_SEED"); s != "" {
			seed, _ = strconv.ParseUint(s, 10, 64)
		}
		rng := rand.New(rand.NewPCG(seed, 0))
		p.WaitReady(p.Start("scatter", "scatter", "s1"))
		type slot struct {
			name, role, id string
			pr             *proctest.Proc
		}
		var slots []*slot
		for i := 1; i <= 3; i++ {
			slots = append(slots, &slot{name: fmt.Sprintf("gather%d", i), role: "gather", id: fmt.Sprintf("g%d", i)})
			slots = append(slots, &slot{name: fmt.Sprintf("worker%d", i), role: "worker", id: fmt.Sprintf("w%d", i)})
		}
		launch := func(s *slot) {
			var extra []string
			if s.role == "gather" {
				extra = []string{"--state-dir", filepath.Join(p.Dir, "state-"+s.id)}
			}
			s.pr = p.Start(s.name, s.role, s.id, extra...)
		}
		for _, s := range slots[:4] { // g1, w1, g2, w2
			launch(s)
			p.WaitReady(s.pr)
		}
		const storm = time.Minute
		n := int(rate * (storm.Seconds() + 12))
		var events []string
		var stormFrom, stormTo time.Time
		stop := make(chan struct{})
		p.Load(n, rate, map[int]func(){
			at(4): func() {
				stormFrom = time.Now()
				p.Go(func() {
					defer func() { stormTo = time.Now() }()
					end := time.After(storm)
					for {
						select {
						case <-end:
							return
						case <-stop:
							return
						case <-time.After(time.Duration(2000+rng.IntN(2000)) * time.Millisecond):
						}
						s := slots[rng.IntN(len(slots))]
						if s.pr == nil || !s.pr.Running() {
							launch(s)
							events = append(events, fmt.Sprintf("%s+%s joins", time.Since(stormFrom).Round(100*time.Millisecond), s.id))
							continue
						}
						alive := 0
						for _, o := range slots {
							if o.role == s.role && o.pr != nil && o.pr.Running() {
								alive++
							}
						}
						if alive == 1 {
							continue // one instance of each role stays
						}
						how := "SIGTERM"
						if rng.IntN(2) == 0 {
							how = "kill -9"
							s.pr.Kill()
						} else if _, err := s.pr.Term(t); err != nil {
							t.Error(err)
						}
						events = append(events, fmt.Sprintf("%s+%s %s", time.Since(stormFrom).Round(100*time.Millisecond), s.id, how))
					}
				})
			},
		})
		close(stop)
		check(p, n)
		p50, worst := p.Latency(stormFrom, stormTo)
		t.Logf("storm (seed %d): %s", seed, strings.Join(events, ", "))
		rep.add(t, "%-34s seed %d, %d joins and leaves in %s: %d requests exactly once; latency during the storm p50 %s, worst %s",
			"rebalance storm", seed, len(events), stormTo.Sub(stormFrom).Round(time.Second), n, p50, worst)
	})

	c.heal(t)
}

// readyLog keeps what /readyz answered, each distinct answer once.
type readyLog struct {
	mu   sync.Mutex
	seen []string
}

// watch polls every process's /readyz every half second until stop.
func (r *readyLog) watch(ps map[string]*proctest.Proc, stop <-chan struct{}) {
	names := make([]string, 0, len(ps))
	for name := range ps {
		names = append(names, name)
	}
	slices.Sort(names)
	cl := &http.Client{Timeout: 2 * time.Second}
	for {
		for _, name := range names {
			addr := ps[name].Addr()
			if addr == "" {
				continue
			}
			resp, err := cl.Get("http://" + addr + "/readyz")
			if err != nil {
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			line := fmt.Sprintf("%s: %d %s", name, resp.StatusCode, strings.TrimSpace(string(b)))
			r.mu.Lock()
			if !slices.Contains(r.seen, line) {
				r.seen = append(r.seen, line)
			}
			r.mu.Unlock()
		}
		select {
		case <-stop:
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (r *readyLog) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.seen, "\n")
}
