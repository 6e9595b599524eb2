package cluster

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/scattergather/scattergather/internal/processortest"
	"github.com/scattergather/scattergather/internal/proctest"
	"github.com/scattergather/scattergather/schemas"
)

var (
	soakDuration = flag.Duration("soak.duration", 2*time.Minute, "how long TestIntegrationClusterSoak sends its load while faults are injected")
	soakSeed     = flag.Uint64("soak.seed", 0, "seed of TestIntegrationClusterSoak's fault schedule; 0 takes "+EnvSoakSeed+" or the clock")
)

// EnvSoakSeed replays a soak's fault schedule when -soak.seed is not given.
const EnvSoakSeed = "SG_SOAK_SEED"

// soakCalm is the end of the load during which no fault starts.
const soakCalm = 15 * time.Second

// TestIntegrationClusterSoak sends a steady load for -soak.duration while
// a seeded random schedule injects faults: kill -9 or SIGTERM of a role
// instance (restarted after a second or three), SIGSTOP of one for a few
// seconds, kill -9 of a broker (restarted; one down at a time, the next
// only once every replica is in sync again) and a target of the provider
// that hangs for a few seconds. Then every request must have exactly one
// aggregate with the right value (the requests that met the hanging
// target may end by their deadline), and the dead-letter topic must be
// empty: every request was good.
func TestIntegrationClusterSoak(t *testing.T) {
	c := openCluster(t)
	proctest.Binary(t)
	seed := *soakSeed
	if seed == 0 {
		if v := os.Getenv(EnvSoakSeed); v != "" {
			var err error
			if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
				t.Fatalf("%s=%s: %v", EnvSoakSeed, v, err)
			}
		}
	}
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	duration := *soakDuration
	t.Logf("soak seed %d (replay: -soak.seed %d), duration %s", seed, seed, duration)

	c.heal(t)
	s := &soak{t: t, c: c, hangs: &proctest.Hangs{}, rng: rand.New(rand.NewPCG(seed, 0))}
	s.p = newPipeline(t, c, func(cfg *proctest.Config) {
		cfg.Prefix = "soak"
		cfg.Hangs = s.hangs
		cfg.SendWithin = duration + 5*time.Minute
	})
	for _, role := range []string{"scatter", "worker", "gather"} {
		for i := 1; i <= 2; i++ {
			id := fmt.Sprintf("%c%d", role[0], i)
			var extra []string
			if role == "gather" {
				extra = []string{"--state-dir", filepath.Join(s.p.Dir, "state-"+id)}
			}
			s.slots = append(s.slots, &soakSlot{pr: s.p.Start(fmt.Sprintf("%s%d", role, i), role, id, extra...)})
		}
	}
	for _, sl := range s.slots {
		s.p.WaitReady(sl.pr)
	}

	n := int(rate * duration.Seconds())
	s.p.Load(n, rate, map[int]func(){
		0: func() {
			s.from = time.Now()
			until := s.from.Add(duration - soakCalm)
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.schedule(until)
			}()
		},
	})
	s.wg.Wait()
	s.check(seed, duration, n)
}

// soakSlot is one role instance of the soak: the process that runs it
// now, and whether a fault is under way on it.
type soakSlot struct {
	pr   *proctest.Proc
	busy bool
}

// fault is one fault the soak injected.
type fault struct {
	at   time.Time
	kind string // "kill -9", "SIGTERM", "SIGSTOP", "broker kill -9" or "hang"
	what string
}

// soak is one run of TestIntegrationClusterSoak.
type soak struct {
	t     *testing.T
	c     *cluster
	p     *proctest.Pipeline
	hangs *proctest.Hangs
	rng   *rand.Rand // only the scheduling goroutine draws from it
	from  time.Time  // the start of the load
	wg    sync.WaitGroup

	mu                   sync.Mutex
	slots                []*soakSlot
	brokerBusy, hangBusy bool
	faults               []fault
}

// schedule injects a fault every 1.5 to 4 seconds until until; each runs
// on its own goroutine and ends with what it broke repaired.
func (s *soak) schedule(until time.Time) {
	for {
		wait := time.Duration(1500+s.rng.IntN(2500)) * time.Millisecond
		if time.Now().Add(wait).After(until) {
			return
		}
		<-time.After(wait)
		hold := time.Duration(1000+s.rng.IntN(2000)) * time.Millisecond // how long the fault lasts
		switch k := s.rng.IntN(20); {
		case k < 5:
			s.process(s.rng.IntN(len(s.slots)), "kill -9", hold)
		case k < 10:
			s.process(s.rng.IntN(len(s.slots)), "SIGTERM", hold)
		case k < 15:
			s.process(s.rng.IntN(len(s.slots)), "SIGSTOP", hold+time.Duration(s.rng.IntN(3000))*time.Millisecond)
		case k < 18:
			s.broker(s.c.nodes[s.rng.IntN(len(s.c.nodes))], hold+time.Duration(s.rng.IntN(5000))*time.Millisecond)
		default:
			s.hang(string(rune('a'+s.rng.IntN(3))), hold+2*time.Second)
		}
	}
}

// record notes a fault that started at at.
func (s *soak) record(at time.Time, kind, format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, fault{at: at, kind: kind, what: fmt.Sprintf(format, args...)})
}

// claim marks *busy and reports whether it was free.
func (s *soak) claim(busy *bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if *busy {
		return false
	}
	*busy = true
	return true
}

func (s *soak) release(busy *bool) {
	s.mu.Lock()
	*busy = false
	s.mu.Unlock()
}

// process kills (kill -9, SIGTERM) the instance of slot i and restarts it
// hold later, or freezes it (SIGSTOP) for hold; nothing if a fault is
// under way on it.
func (s *soak) process(i int, how string, hold time.Duration) {
	sl := s.slots[i]
	if !s.claim(&sl.busy) {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.release(&sl.busy)
		pr := sl.pr
		at := time.Now()
		switch how {
		case "SIGSTOP":
			if err := pr.Signal(syscall.SIGSTOP); err != nil {
				s.t.Errorf("SIGSTOP %s: %v", pr.Name, err)
				return
			}
			s.record(at, how, "%s SIGSTOP %s for %s", s.since(at), pr.Name, hold.Round(100*time.Millisecond))
			<-time.After(hold)
			if err := pr.Signal(syscall.SIGCONT); err != nil {
				s.t.Errorf("SIGCONT %s: %v", pr.Name, err)
			}
			return
		case "kill -9":
			pr.Kill()
			s.record(at, how, "%s kill -9 %s", s.since(at), pr.Name)
		case "SIGTERM":
			took, err := pr.Term(s.t)
			if err != nil {
				s.t.Error(err)
			}
			s.record(at, how, "%s SIGTERM %s (exit after %s)", s.since(at), pr.Name, took.Round(10*time.Millisecond))
		}
		<-time.After(hold)
		np := s.p.Restart(pr)
		s.mu.Lock()
		sl.pr = np
		s.mu.Unlock()
		s.ready(np)
	}()
}

// broker kills node n with SIGKILL and starts it again hold later; the
// next broker fault comes only once every replica is in sync again.
func (s *soak) broker(n int32, hold time.Duration) {
	if !s.claim(&s.brokerBusy) {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.release(&s.brokerBusy)
		at := time.Now()
		s.c.kill(s.t, n)
		s.record(at, "broker kill -9", "%s kill -9 broker %d for %s", s.since(at), n, hold.Round(100*time.Millisecond))
		<-time.After(hold)
		s.c.startNode(s.t, n)
		adm := s.c.admin(s.t)
		deadline := time.Now().Add(3 * time.Minute)
		for last := insync(adm); last != ""; last = insync(adm) {
			if time.Now().After(deadline) {
				s.t.Errorf("3 minutes after broker %d restarted the cluster is not whole: %s", n, last)
				return
			}
			<-time.After(200 * time.Millisecond)
		}
	}()
}

// hang makes target hang for hold.
func (s *soak) hang(target string, hold time.Duration) {
	if !s.claim(&s.hangBusy) {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.release(&s.hangBusy)
		at := time.Now()
		s.hangs.Start(target)
		s.record(at, "hang", "%s target %s hangs for %s", s.since(at), target, hold.Round(100*time.Millisecond))
		<-time.After(hold)
		s.hangs.Stop()
	}()
}

func (s *soak) since(at time.Time) string {
	return "+" + at.Sub(s.from).Round(100*time.Millisecond).String()
}

// ready waits until pr answers 200 on /readyz; it fails the test if pr
// exits first or is not ready within 2 minutes.
func (s *soak) ready(pr *proctest.Proc) {
	cl := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if !pr.Running() {
			s.t.Errorf("%s exited before it was ready after its restart", pr.Name)
			return
		}
		if addr := pr.Addr(); addr != "" {
			if resp, err := cl.Get("http://" + addr + "/readyz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			s.t.Errorf("%s not ready within 2 minutes of its restart", pr.Name)
			return
		}
		<-time.After(100 * time.Millisecond)
	}
}

// hung reports whether a call of one of request id's tasks hung.
func (s *soak) hung(id string) bool {
	for _, target := range []string{"a", "b", "c"} {
		if s.hangs.Hung(id + "/" + target) {
			return true
		}
	}
	return false
}

// check reads every aggregate and the dead-letter topic, prints the
// figures and fails the test on a lost, duplicated or wrong aggregate or
// on a dead letter.
func (s *soak) check(seed uint64, duration time.Duration, n int) {
	t, p := s.t, s.p
	sent := p.Sent()
	ids := make([]string, 0, len(sent))
	for id := range sent {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	if err := p.Col.Wait(ctx, ids...); err != nil {
		t.Log(err)
	}
	cancel()
	var lostIDs []string
	for _, id := range ids {
		if _, ok := p.Col.Arrived(id); !ok {
			lostIDs = append(lostIDs, id)
		}
	}

	// Every aggregate on the topic, read_committed, to its stable end.
	recs := processortest.Records(t, p.Topo, p.Flow.Topics.Aggregated, len(ids)-len(lostIDs), 2*time.Minute)
	aggs := map[string]*schemas.Aggregate{}
	dups, stray := 0, 0
	for _, r := range recs {
		var a schemas.Aggregate
		if err := schemas.DecodeInto(r.Value, &a); err != nil {
			t.Errorf("aggregate at %d/%d: %v", r.Partition, r.Offset, err)
			continue
		}
		if _, ok := sent[a.RequestID]; !ok {
			stray++
			continue
		}
		if _, dup := aggs[a.RequestID]; dup {
			if dups++; dups <= 5 {
				t.Errorf("%s has a second aggregate (%s)", a.RequestID, a.Outcome)
			}
			continue
		}
		aggs[a.RequestID] = &a
	}

	wrong, hungN := 0, 0
	hungOutcomes := map[schemas.Outcome]int{}
	for _, id := range ids {
		a := aggs[id]
		if a == nil {
			continue
		}
		want := min(proctest.Price(id+"/a"), proctest.Price(id+"/b"), proctest.Price(id+"/c"))
		var res struct{ Value int }
		_ = json.Unmarshal(a.Result, &res)
		full := a.Outcome == schemas.OutcomeComplete && len(a.Answered) == 3
		if s.hung(id) {
			// Its deadline may end it; if all three answered, the value
			// must still be right.
			hungN++
			hungOutcomes[a.Outcome]++
			if !full || res.Value == want {
				continue
			}
		} else if full && res.Value == want {
			continue
		}
		if wrong++; wrong <= 20 {
			t.Errorf("%s: outcome %s (%s), cheapest %d (want %d), %d answered, failed %s, hung %v", id, a.Outcome, a.Reason, res.Value, want, len(a.Answered), failures(a.Failed), s.hung(id))
		}
	}

	dead := processortest.Records(t, p.Topo, p.Flow.Topics.DeadLetter, 0, time.Minute)
	for i, r := range dead {
		if i < 5 {
			var kind, reason string
			for _, h := range r.Headers {
				switch h.Key {
				case schemas.HeaderReasonKind:
					kind = string(h.Value)
				case schemas.HeaderReason:
					reason = string(h.Value)
				}
			}
			t.Errorf("dead letter at %d/%d: %s: %s", r.Partition, r.Offset, kind, reason)
		}
	}

	// The longest recovery: from a fault until every request sent within
	// half a second around it, and not held by the hanging target, had its
	// aggregate. Calls left hanging hold their worker's slots of that
	// target until the call's timeout (30 s), which delays the tasks behind
	// them: "clear" is the longest of the faults that started more than
	// that after every hang began.
	s.mu.Lock()
	faults := slices.Clone(s.faults)
	s.mu.Unlock()
	slices.SortFunc(faults, func(a, b fault) int { return a.at.Compare(b.at) })
	var longest, clear recovery
	var lastHang time.Time
	counts := map[string]int{}
	var whats []string
	for _, f := range faults {
		whats = append(whats, f.what)
		counts[f.kind]++
		if f.kind == "hang" {
			lastHang = f.at
			continue
		}
		var rec time.Duration
		for id, at := range sent {
			if d := at.Sub(f.at); d <= -500*time.Millisecond || d >= 500*time.Millisecond || s.hung(id) {
				continue
			}
			if r, ok := p.Col.Arrived(id); ok && r.Sub(f.at) > rec {
				rec = r.Sub(f.at)
			}
		}
		longest.max(rec, f.what)
		if lastHang.IsZero() || f.at.Sub(lastHang) > 35*time.Second {
			clear.max(rec, f.what)
		}
	}
	var kinds []string
	for k, v := range counts {
		kinds = append(kinds, fmt.Sprintf("%d %s", v, k))
	}
	slices.Sort(kinds)
	t.Logf("soak faults: %s", strings.Join(whats, "; "))
	t.Logf("soak seed %d, %s of load: %d faults injected (%s); %d requests checked, lost %d, duplicated %d, wrong %d, dead-lettered %d, stray %d; %d met the hanging target (outcomes %v); longest recovery %s, clear of a hang %s",
		seed, duration, len(faults), strings.Join(kinds, ", "), len(ids), len(lostIDs), dups, wrong, len(dead), stray,
		hungN, hungOutcomes, longest, clear)

	if len(ids) != n {
		t.Errorf("%d requests sent, want %d", len(ids), n)
	}
	if len(lostIDs) > 0 {
		t.Errorf("%d requests without an aggregate, e.g. %s", len(lostIDs), strings.Join(lostIDs[:min(5, len(lostIDs))], " "))
	}
	if d := p.Col.Duplicates(); d != 0 || dups != 0 {
		t.Errorf("duplicated aggregates: %d read to the stable end, %d seen by the collector", dups, d)
	}
	if stray != 0 {
		t.Errorf("%d aggregates of requests never sent", stray)
	}
	if wrong > 20 {
		t.Errorf("... %d requests wrong in all", wrong)
	}
	if len(faults) == 0 {
		t.Error("no fault injected: the soak is too short")
	}
	p.UnexpectedExits()
}

// recovery is the longest recovery of a set of faults, and its fault.
type recovery struct {
	d    time.Duration
	what string
}

func (r *recovery) max(d time.Duration, what string) {
	if d > r.d {
		r.d, r.what = d, what
	}
}

func (r recovery) String() string {
	if r.what == "" {
		return "-"
	}
	return fmt.Sprintf("%s (%s)", r.d.Round(10*time.Millisecond), r.what)
}

// failures says which tasks failed and why, as "[target: error, ...]".
func failures(failed []schemas.Answer) string {
	parts := make([]string, 0, len(failed))
	for _, f := range failed {
		parts = append(parts, fmt.Sprintf("%s (attempts %d, %d ms): %s", f.Target, f.Attempts, f.DurationMs, f.Error))
	}
	return "[" + strings.Join(parts, "; ") + "]"
}
